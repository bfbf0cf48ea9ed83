//! `syncbridge init`: writes a `.env` from the user's answers (flags, or prompts on a terminal)
//! with freshly generated secrets, after validating it exactly as `check` and `run` will, and
//! prints the SQL Server and Supabase lines that carry those secrets to the other sides. Never
//! replaces an existing `.env` without `--force`.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use url::Url;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config::Config;

/// Random bytes per generated secret (43 URL-safe characters).
const SECRET_BYTES: usize = 32;
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
const WEBHOOK_PATH: &str = "/api/sync/webhook";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct InitArgs {
    /// Folder to write .env in [default: the folder of the syncbridge binary].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Replace an existing .env (its secrets change: update SQL Server and Supabase again).
    #[arg(long)]
    pub force: bool,
    /// MSSQL_CONNECTION_STRING, e.g. 'Server=localhost\SQLEXPRESS;Database=Clinic;User Id=syncbridge;Password=...;TrustServerCertificate=true'.
    #[arg(
        long,
        value_name = "ADO",
        env = "MSSQL_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub mssql: Option<String>,
    /// SUPABASE_URL, e.g. https://abcdefghijklmnop.supabase.co.
    #[arg(long, value_name = "URL", env = "SUPABASE_URL")]
    pub supabase_url: Option<String>,
    /// SUPABASE_SERVICE_ROLE_KEY: the service_role JWT or an sb_secret_... key.
    #[arg(
        long,
        value_name = "KEY",
        env = "SUPABASE_SERVICE_ROLE_KEY",
        hide_env_values = true
    )]
    pub service_key: Option<String>,
    /// SYNC_LISTEN_ADDR, where the agent listens [default: 127.0.0.1:3000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The public webhook URL (your Cloudflare Tunnel host), for the Supabase line printed at
    /// the end; not stored in .env.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
}

/// One setting the user answers.
struct Question {
    key: &'static str,
    flag: &'static str,
    prompt: &'static str,
}

const QUESTIONS: [Question; 3] = [
    Question {
        key: "MSSQL_CONNECTION_STRING",
        flag: "--mssql",
        prompt: "SQL Server connection string (ADO), e.g. Server=localhost\\SQLEXPRESS;Database=Clinic;User Id=syncbridge;Password=...;TrustServerCertificate=true",
    },
    Question {
        key: "SUPABASE_URL",
        flag: "--supabase-url",
        prompt: "Supabase project URL (Project Settings → API), e.g. https://abcdefghijklmnop.supabase.co",
    },
    Question {
        key: "SUPABASE_SERVICE_ROLE_KEY",
        flag: "--service-key",
        prompt: "Supabase service key (service_role JWT or sb_secret_...)",
    },
];

/// `syncbridge init`.
pub fn run(args: &InitArgs) -> ExitCode {
    match init(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("syncbridge init: {message}");
            ExitCode::from(code)
        }
    }
}

type Refusal = (u8, String);

fn init(args: &InitArgs) -> Result<String, Refusal> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => binary_dir().map_err(|e| (EXIT_FAILURE, e))?,
    };
    let path = dir.join(".env");
    if path.exists() && !args.force {
        return Err((
            EXIT_FAILURE,
            format!(
                "{} already exists; nothing was changed. Use --force to replace it (its secrets change: update SQL Server and Supabase again)",
                path.display()
            ),
        ));
    }
    let answers = answers(args)?;
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let webhook_url = args
        .webhook_url
        .as_deref()
        .map(webhook_url)
        .transpose()
        .map_err(|e| (EXIT_CONFIG, e))?;
    let mut pairs: Vec<(&'static str, String)> = QUESTIONS
        .iter()
        .zip(answers)
        .map(|(q, a)| (q.key, a))
        .collect();
    for key in [
        "SUPABASE_WEBHOOK_SECRET",
        "SYNC_ADMIN_TOKEN",
        "SYNC_NOTIFY_TOKEN",
    ] {
        pairs.push((key, secret().map_err(|e| (EXIT_FAILURE, e))?));
    }
    pairs.push(("SYNC_LISTEN_ADDR", listen));
    // Validated exactly as check and run read it: a file that would be refused is not written.
    let config =
        Config::from_lookup(&|k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .map_err(|e| (EXIT_CONFIG, format!("{e}nothing was written")))?;
    let text = env_file(&pairs).map_err(|e| (EXIT_CONFIG, e))?;
    write_env(&path, &text, args.force).map_err(|e| {
        (
            EXIT_FAILURE,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    Ok(next_steps(
        &path,
        &pairs,
        config.listen_addr,
        webhook_url.as_ref(),
    ))
}

fn binary_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the binary's folder ({e}); use --dir"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "cannot find the binary's folder; use --dir".to_owned())
}

/// The three answers, from flags or (on a terminal only) prompts; what is missing is named.
fn answers(args: &InitArgs) -> Result<Vec<String>, Refusal> {
    let given = [&args.mssql, &args.supabase_url, &args.service_key];
    let interactive = std::io::stdin().is_terminal();
    let mut answers = Vec::new();
    let mut missing = Vec::new();
    for (q, given) in QUESTIONS.iter().zip(given) {
        let answer = match given.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Some(v.to_owned()),
            None if interactive => ask(q.prompt).map_err(|e| (EXIT_FAILURE, e))?,
            None => None,
        };
        match answer {
            Some(a) => answers.push(a),
            None => missing.push(format!("{} ({})", q.key, q.flag)),
        }
    }
    if missing.is_empty() {
        Ok(answers)
    } else {
        Err((
            EXIT_CONFIG,
            format!("missing {}; nothing was written", missing.join(", ")),
        ))
    }
}

fn ask(prompt: &str) -> Result<Option<String>, String> {
    print!("{prompt}\n> ");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let line = line.trim();
    Ok((!line.is_empty()).then(|| line.to_owned()))
}

/// A fresh secret from the operating system's CSPRNG, URL-safe base64.
fn secret() -> Result<String, String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers from the OS: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The webhook URL: a bare tunnel address gets the agent's webhook path.
fn webhook_url(given: &str) -> Result<Url, String> {
    let mut url = Url::parse(given.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            "--webhook-url must be an http(s) URL such as https://local.your-clinic.com".to_owned()
        })?;
    if url.path() == "/" {
        url.set_path(WEBHOOK_PATH);
    }
    Ok(url)
}

/// A value in single quotes, as dotenvy reads it: nothing inside is special (no `$`
/// substitution, no escapes); a single quote is closed, escaped and reopened, as in a shell.
fn quoted(key: &str, value: &str) -> Result<String, String> {
    if value.contains(['\n', '\r']) {
        return Err(format!("{key} must be one line"));
    }
    Ok(format!("'{}'", value.replace('\'', r"'\''")))
}

fn env_file(pairs: &[(&'static str, String)]) -> Result<String, String> {
    let mut text = String::from(
        "# syncbridge configuration, written by `syncbridge init`.\n\
         # Keep this file private: it holds the SQL Server password, the Supabase service key and\n\
         # the agent's secrets. Every setting is described in .env.example and the README.\n\n",
    );
    for (key, value) in pairs {
        let _ = writeln!(text, "{key}={}", quoted(key, value)?);
    }
    Ok(text)
}

/// Creates `.env` (never replacing one, unless `force`: then a temporary file is renamed over
/// it, so a failure leaves the old one intact). Readable by its owner only on Unix; on Windows
/// the folder's permissions apply.
fn write_env(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    let target = if force {
        path.with_extension("init-tmp")
    } else {
        path.to_path_buf()
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&target)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if force {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}

/// T-SQL and SQL string literals: quotes doubled.
fn literal(value: &str) -> String {
    value.replace('\'', "''")
}

fn next_steps(
    path: &Path,
    pairs: &[(&'static str, String)],
    listen: SocketAddr,
    webhook: Option<&Url>,
) -> String {
    let value = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| literal(v))
            .unwrap_or_default()
    };
    let notify_host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let notify_url = format!(
        "http://{notify_host}:{}/api/sync/queue-notify",
        listen.port()
    );
    let hook = webhook.map_or_else(
        || format!("https://<your-tunnel-host>{WEBHOOK_PATH}"),
        |u| literal(u.as_str()),
    );
    let mut out = String::new();
    let _ = writeln!(out, "wrote {} with new secrets (SUPABASE_WEBHOOK_SECRET, SYNC_ADMIN_TOKEN, SYNC_NOTIFY_TOKEN)\n", path.display());
    let _ = writeln!(
        out,
        "1. SQL Server: run sql/sqlserver/*.sql in file-name order (SSMS or sqlcmd), then:"
    );
    let _ = writeln!(
        out,
        "UPDATE dbo.SyncConfig SET Value = N'{}' WHERE Name = N'NotifyToken';",
        value("SYNC_NOTIFY_TOKEN")
    );
    let _ = writeln!(
        out,
        "UPDATE dbo.SyncConfig SET Value = N'{}' WHERE Name = N'NotifyUrl';\n",
        literal(&notify_url)
    );
    let _ = writeln!(
        out,
        "2. Supabase SQL editor: run sql/supabase/*.sql (enable Database Webhooks first), then:"
    );
    let _ = writeln!(
        out,
        "select public.syncbridge_install_webhooks('{hook}', '{}');",
        value("SUPABASE_WEBHOOK_SECRET")
    );
    if webhook.is_none() {
        let _ = writeln!(out, "   (replace <your-tunnel-host> with your Cloudflare Tunnel's host name, or run init with --webhook-url)");
    }
    let _ = writeln!(out, "\n3. From the folder of .env: syncbridge check, then the README's \"First day\" (backfill, verify, run).");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_read_back_unchanged_by_dotenvy() {
        let awkward = r#"Server=a\b;Password=it's $HOME "x" \n;"#;
        let line = format!("K={}\n", quoted("K", awkward).expect("one line"));
        let read: Vec<(String, String)> = dotenvy::from_read_iter(line.as_bytes())
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(read, [("K".to_owned(), awkward.to_owned())]);
        assert!(quoted("K", "two\nlines").is_err());
    }

    #[test]
    fn secrets_are_long_url_safe_and_fresh() {
        let (a, b) = (secret().expect("a"), secret().expect("b"));
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn a_bare_tunnel_address_gets_the_webhook_path() {
        let u = webhook_url("https://local.clinic.example").expect("url");
        assert_eq!(u.as_str(), "https://local.clinic.example/api/sync/webhook");
        let u = webhook_url("https://h.example/custom/hook").expect("url");
        assert_eq!(u.path(), "/custom/hook");
        assert!(webhook_url("local.clinic.example").is_err());
    }
}
