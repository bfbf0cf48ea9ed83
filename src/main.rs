//! The syncbridge binary: command line → logging → configuration → run or check → exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use syncbridge::{Agent, Config};
use tokio_util::sync::CancellationToken;

/// Exit code for a bad configuration (sysexits' EX_CONFIG), distinct from a crash, so a service
/// manager can tell "misconfigured" from "failed".
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(version, about = "Two-way SQL Server ↔ Supabase sync agent")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone, Copy)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate .env, connect to both sides, compare the table map with both schemas.
    Check {
        /// Also prove on this SQL Server every behaviour the agent relies on, in scratch
        /// objects it creates and always removes (run once at install; see README).
        #[arg(long)]
        self_test: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("syncbridge: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("syncbridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(config).await,
            Command::Check { self_test } => check(config, self_test).await,
        }
    })
}

async fn run(config: Config) -> ExitCode {
    let addr = config.listen_addr;
    let agent = match Agent::from_config(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("syncbridge: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("syncbridge: cannot listen on {addr} (SYNC_LISTEN_ADDR): {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    match syncbridge::run(agent, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<syncbridge::config::ConfigError>()
                .is_some() =>
        {
            tracing::error!("{e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn check(config: Config, self_test: bool) -> ExitCode {
    let supabase = match syncbridge::supabase::PostgrestClient::new(
        &config.supabase_url,
        &config.service_key,
        config.service_key_kind,
        config.supabase_timeout,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("syncbridge: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let agent = match Agent::from_config(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("syncbridge: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!("syncbridge check");
    let report = syncbridge::check::run_checks(agent.store.as_ref(), &supabase, &agent.map).await;
    print!("{}", report.render());
    let mut passed = report.problems == 0;
    if self_test {
        let lookup = |key: &str| std::env::var(key).ok();
        let settings = match syncbridge::check::self_test_config(&agent.config, &agent.map, &lookup)
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("syncbridge: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        println!("syncbridge check --self-test");
        let tested = syncbridge::sqlserver::tds::self_test::run(&settings).await;
        print!("{}", tested.render());
        passed &= tested.passed();
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            shutdown.cancel();
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}
