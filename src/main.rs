//! The syncbridge binary: command line → configuration → logging → the command → exit code.
//! Each command lives in the library (`syncbridge::cli`); this only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use syncbridge::cli::backfill::BackfillArgs;
use syncbridge::cli::logging::{self, Console};
use syncbridge::cli::retry_failed::RetryFailedArgs;
use syncbridge::cli::service::ServiceCommand;
use syncbridge::cli::status::StatusArgs;
use syncbridge::cli::verify::VerifyArgs;
use syncbridge::cli::{init, EXIT_CONFIG};
use syncbridge::{Agent, Config};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "Two-way SQL Server ↔ Supabase sync agent")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Configured(Configured),
    /// Write .env with fresh secrets and print the SQL Server and Supabase set-up lines.
    Init(init::InitArgs),
    /// Run syncbridge as a Windows service: install, uninstall, start, stop.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
}

/// The commands that read `.env` first.
#[derive(Subcommand)]
enum Configured {
    /// Run the agent (the default).
    Run,
    /// Validate .env, connect to both sides, compare the table map with both schemas.
    Check {
        /// Also prove on this SQL Server every behaviour the agent relies on, in scratch
        /// objects it creates and always removes (run once at install; see README).
        #[arg(long)]
        self_test: bool,
    },
    /// What the running agent knows, or what SQL Server and the inbox say when none runs.
    Status(StatusArgs),
    /// Put Failed queue items and dead inbox events back to work, and wake the agent.
    RetryFailed(RetryFailedArgs),
    /// The initial load: queue every existing row of the mapped tables (resumable).
    Backfill(BackfillArgs),
    /// Compare both sides (counts, key-range hashes, rows); --fix queues the repairs.
    Verify(VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Configured(Configured::Run)) {
        Command::Init(args) => init::run(&args),
        Command::Service { command } => syncbridge::cli::service::run(command),
        Command::Configured(command) => configured(command),
    }
}

fn configured(command: Configured) -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("syncbridge: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Only the agent writes log files and logs to stdout; the other commands print their
    // answer on stdout and log to stderr.
    let running = matches!(command, Configured::Run);
    let console = if running {
        Console::Stdout
    } else {
        Console::Stderr
    };
    if let Err(e) = logging::init(&config, console, running) {
        eprintln!("syncbridge: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("syncbridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match command {
            Configured::Run => run(config).await,
            Configured::Check { self_test } => check(config, self_test).await,
            Configured::Status(args) => match agent(config) {
                Ok(agent) => syncbridge::cli::status::run(agent, &args).await,
                Err(code) => code,
            },
            Configured::RetryFailed(args) => match agent(config) {
                Ok(agent) => syncbridge::cli::retry_failed::run(agent, &args).await,
                Err(code) => code,
            },
            Configured::Backfill(args) => match agent(config) {
                Ok(agent) => syncbridge::cli::backfill::run(agent, &args).await,
                Err(code) => code,
            },
            Configured::Verify(args) => match agent(config) {
                Ok(agent) => syncbridge::cli::verify::run(agent, &args).await,
                Err(code) => code,
            },
        }
    })
}

/// The agent `config` describes, or exit code 78 naming what is wrong (the table map).
fn agent(config: Config) -> Result<Agent, ExitCode> {
    Agent::from_config(config).map_err(|e| {
        eprintln!("syncbridge: {e:#}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn run(config: Config) -> ExitCode {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    ExitCode::from(syncbridge::cli::serve::run(config, shutdown).await)
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
    let agent = match agent(config) {
        Ok(a) => a,
        Err(code) => return code,
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
