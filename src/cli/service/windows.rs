//! The Windows implementation: registering with the service manager, and the service's own
//! entry point (`service run`, started by the manager through `service_dispatcher`).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::{ServiceCommand, SERVICE_NAME};
use crate::cli::logging::{self, Console};
use crate::cli::{serve, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::Config;

const DISPLAY_NAME: &str = "syncbridge (SQL Server <-> Supabase sync)";
const DESCRIPTION: &str =
    "Keeps the clinic's SQL Server and its Supabase project in sync, both ways.";
/// The agent's own shutdown bound (`run.rs`: 30 s for in-flight work) plus the HTTP server.
const STOP_WAIT: Duration = Duration::from_secs(35);
/// After a crash the manager restarts the service after this delay.
const RESTART_DELAY: Duration = Duration::from_secs(60);

pub(super) fn run(command: ServiceCommand) -> ExitCode {
    let done = match command {
        ServiceCommand::Run => return dispatch(),
        ServiceCommand::Install => install(),
        ServiceCommand::Uninstall => uninstall(),
        ServiceCommand::Start => start(),
        ServiceCommand::Stop => stop(),
    };
    match done {
        Ok(message) => {
            println!("syncbridge service: {message}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("syncbridge service: {message}");
            ExitCode::from(code)
        }
    }
}

type Outcome = Result<String, (u8, String)>;

fn failed(what: &str) -> impl Fn(windows_service::Error) -> (u8, String) + '_ {
    move |e| (EXIT_FAILURE, format!("{what}: {e} (run as administrator?)"))
}

fn binary() -> Result<(PathBuf, PathBuf), (u8, String)> {
    let exe = std::env::current_exe()
        .map_err(|e| (EXIT_FAILURE, format!("cannot find the binary: {e}")))?;
    let dir = exe
        .parent()
        .map(PathBuf::from)
        .ok_or((EXIT_FAILURE, "the binary has no folder".to_owned()))?;
    Ok((exe, dir))
}

/// Registers the service, after checking that the `.env` beside the binary is valid (a service
/// that cannot start is worse than an install that says why).
fn install() -> Outcome {
    let (exe, dir) = binary()?;
    std::env::set_current_dir(&dir)
        .map_err(|e| (EXIT_FAILURE, format!("{}: {e}", dir.display())))?;
    Config::from_env().map_err(|e| (EXIT_CONFIG, format!("{}\\.env: {e}", dir.display())))?;
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(failed("cannot open the service manager"))?;
    let info = ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from(DISPLAY_NAME),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments: vec![OsString::from("service"), OsString::from("run")],
        dependencies: vec![],
        // LocalSystem. For Integrated Security use a Windows account: sc.exe config syncbridge obj= ...
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(failed("cannot register the service"))?;
    service
        .set_description(DESCRIPTION)
        .map_err(failed("cannot describe the service"))?;
    // Restart after a crash; a clean exit or exit code 78 (a bad .env) is not restarted.
    let restart = ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: RESTART_DELAY,
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart.clone(), restart.clone(), restart]),
        })
        .map_err(failed("cannot set the restart policy"))?;
    Ok(format!("installed \"{SERVICE_NAME}\" (starts at boot, runs in {}); start it with: syncbridge service start", dir.display()))
}

fn open(access: ServiceAccess) -> Result<windows_service::service::Service, (u8, String)> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(failed("cannot open the service manager"))?;
    manager
        .open_service(SERVICE_NAME, access)
        .map_err(failed("cannot open the service (is it installed?)"))
}

/// Waits until the service reaches `wanted` (or stopped), within `within`. The service manager
/// offers no notification to wait on here, so its state is read every half second.
fn wait_for(
    service: &windows_service::service::Service,
    wanted: ServiceState,
    within: Duration,
) -> Result<ServiceState, (u8, String)> {
    let deadline = Instant::now() + within;
    loop {
        let state = service
            .query_status()
            .map_err(failed("cannot read the service's state"))?
            .current_state;
        if state == wanted || state == ServiceState::Stopped || Instant::now() >= deadline {
            return Ok(state);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stop_running(service: &windows_service::service::Service) -> Result<(), (u8, String)> {
    if service
        .query_status()
        .map_err(failed("cannot read the service's state"))?
        .current_state
        != ServiceState::Stopped
    {
        service.stop().map_err(failed("cannot stop the service"))?;
        let state = wait_for(
            service,
            ServiceState::Stopped,
            STOP_WAIT + Duration::from_secs(10),
        )?;
        if state != ServiceState::Stopped {
            return Err((
                EXIT_FAILURE,
                format!(
                    "the service did not stop within {:?} (state {state:?})",
                    STOP_WAIT
                ),
            ));
        }
    }
    Ok(())
}

fn uninstall() -> Outcome {
    let service = open(ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE)?;
    stop_running(&service)?;
    service
        .delete()
        .map_err(failed("cannot remove the service"))?;
    Ok(format!("removed \"{SERVICE_NAME}\""))
}

fn start() -> Outcome {
    let service = open(ServiceAccess::QUERY_STATUS | ServiceAccess::START)?;
    service
        .start::<&OsStr>(&[])
        .map_err(failed("cannot start the service"))?;
    match wait_for(&service, ServiceState::Running, Duration::from_secs(30))? {
        ServiceState::Running => Ok("running (logs in the logs folder beside the binary)".to_owned()),
        state => Err((EXIT_FAILURE, format!("the service is {state:?}: see the newest file in the logs folder, or its exit code with sc.exe query {SERVICE_NAME} (78: a bad .env)"))),
    }
}

fn stop() -> Outcome {
    let service = open(ServiceAccess::QUERY_STATUS | ServiceAccess::STOP)?;
    stop_running(&service)?;
    Ok("stopped".to_owned())
}

define_windows_service!(ffi_service_main, service_main);

/// `service run`: hands this thread to the service manager, which calls `service_main`.
fn dispatch() -> ExitCode {
    match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syncbridge service run: only the service manager starts this ({e}); use `syncbridge run`");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn status(state: ServiceState, exit: u32, wait_hint: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: if exit == 0 {
            ServiceExitCode::Win32(0)
        } else {
            ServiceExitCode::ServiceSpecific(exit)
        },
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            stop.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(handle) = service_control_handler::register(SERVICE_NAME, handler) else {
        return;
    };
    let _ = handle.set_service_status(status(
        ServiceState::StartPending,
        0,
        Duration::from_secs(10),
    ));
    let code = serve_as_service(handle, shutdown);
    let _ = handle.set_service_status(status(ServiceState::Stopped, code, Duration::ZERO));
}

/// The agent, from the `.env` beside the binary, until the manager asks it to stop.
fn serve_as_service(handle: ServiceStatusHandle, shutdown: CancellationToken) -> u32 {
    let Ok((_, dir)) = binary() else {
        return u32::from(EXIT_FAILURE);
    };
    // The manager starts services in System32; .env, data\ and logs\ live beside the binary.
    if std::env::set_current_dir(&dir).is_err() {
        return u32::from(EXIT_FAILURE);
    }
    let Ok(config) = Config::from_env() else {
        return u32::from(EXIT_CONFIG);
    };
    if logging::init(&config, Console::Stdout, true).is_err() {
        return u32::from(EXIT_CONFIG);
    }
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return u32::from(EXIT_FAILURE);
    };
    let _ = handle.set_service_status(status(ServiceState::Running, 0, Duration::ZERO));
    let code = runtime.block_on(async move {
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            tracing::info!("stop requested by the service manager");
            let _ = handle.set_service_status(status(ServiceState::StopPending, 0, STOP_WAIT));
        });
        serve::run(config, shutdown).await
    });
    u32::from(code)
}
