//! Runs the testkit's fake Supabase (PostgREST stand-in + Database Webhook relay) for manual
//! runs of the agent, the examples and other clients (such as a replica of the old Node.js
//! processor for benchmarks), and prints the settings to point them at it.
//!
//! ```text
//! fake-supabase [--db-url URL] [--port N] [--jwt-secret S] [--round-trip-ms N]
//!               [--webhook-url URL --webhook-secret S]
//! ```
//! Without `--db-url` it creates a fresh database with the Supabase schema on `PG_TEST_URL`
//! (dropped on exit). `--round-trip-ms` puts a latency proxy in front and prints its URL.
//! Stop it with Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use syncbridge_testkit::{ApiKeys, FakePostgrest, LatencyProxy, TestDb, WebhookRelay};

/// The Supabase CLI's local default, so keys stay the same from run to run.
const DEFAULT_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

struct Options {
    db_url: Option<String>,
    port: u16,
    jwt_secret: String,
    round_trip: Option<Duration>,
    webhook: Option<(String, String)>,
}

const USAGE: &str = "usage: fake-supabase [--db-url URL] [--port N] [--jwt-secret S] \
                     [--round-trip-ms N] [--webhook-url URL --webhook-secret S]";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db_url: None,
        port: 0,
        jwt_secret: DEFAULT_JWT_SECRET.to_owned(),
        round_trip: None,
        webhook: None,
    };
    let (mut webhook_url, mut webhook_secret) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--db-url" => options.db_url = Some(value()?),
            "--port" => options.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--jwt-secret" => options.jwt_secret = value()?,
            "--round-trip-ms" => {
                let ms = value()?
                    .parse()
                    .map_err(|e| format!("--round-trip-ms: {e}"))?;
                options.round_trip = Some(Duration::from_millis(ms));
            }
            "--webhook-url" => webhook_url = Some(value()?),
            "--webhook-secret" => webhook_secret = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    options.webhook = match (webhook_url, webhook_secret) {
        (Some(url), Some(secret)) => Some((url, secret)),
        (None, None) => None,
        _ => return Err("--webhook-url and --webhook-secret go together".to_owned()),
    };
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "syncbridge_testkit=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fake-supabase: {err:?}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> syncbridge_testkit::Result<()> {
    // Keep the fresh database alive for as long as the server runs.
    let (fresh, db_url) = match options.db_url {
        Some(url) => (None, url),
        None => {
            let db = TestDb::create().await?;
            let url = db.url().to_owned();
            (Some(db), url)
        }
    };
    let keys = ApiKeys::from_jwt_secret(&options.jwt_secret);
    let api = FakePostgrest::start_on(
        &db_url,
        keys,
        SocketAddr::from(([127, 0, 0, 1], options.port)),
    )
    .await?;
    let _relay = WebhookRelay::start(&db_url).await?;
    let proxy = match options.round_trip {
        Some(round_trip) => Some(LatencyProxy::start(api.addr(), round_trip).await?),
        None => None,
    };
    if let Some((url, secret)) = &options.webhook {
        let (client, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .execute(
                "SELECT public.syncbridge_install_webhooks($1, $2)",
                &[url, secret],
            )
            .await?;
    }

    let keys = api.keys();
    println!("# fake Supabase over {db_url}");
    match &proxy {
        Some(proxy) => {
            println!("SUPABASE_URL={}", proxy.url());
            println!(
                "# {:?} round trip added; direct: {}",
                proxy.round_trip(),
                api.url()
            );
        }
        None => println!("SUPABASE_URL={}", api.url()),
    }
    println!("SUPABASE_SERVICE_ROLE_KEY={}", keys.service_role_jwt());
    println!(
        "# or the new-style secret key: SUPABASE_SERVICE_ROLE_KEY={}",
        keys.secret_key()
    );
    println!("# anon key: {}", keys.anon_jwt());
    println!("# JWT secret: {}", keys.jwt_secret());
    if let Some((url, secret)) = &options.webhook {
        println!("# webhooks go to {url}");
        println!("SUPABASE_WEBHOOK_SECRET={secret}");
    }
    println!("# Ctrl-C to stop");

    tokio::signal::ctrl_c().await?;
    drop(fresh);
    Ok(())
}
