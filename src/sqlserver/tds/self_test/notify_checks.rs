//! The notification checks: whether `sp_NotifyAppOfSync` can POST from this server at all (OLE
//! Automation on, callable by this login, not SQL Server on Linux), whether it reaches the
//! agent's listener with a token the agent accepts, and that a writer whose transaction calls it
//! is not delayed beyond the stated bound (about one second) when nothing answers.
//!
//! When the agent is not running, the self-test listens on the agent's address itself for the
//! duration of the check and answers as the agent would (202 for a known token, 401 otherwise).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tiberius::Query;
use tokio_util::sync::CancellationToken;
use warp::Filter;

use super::bench::{batch, scalar, Bench};
use super::report::{CheckResult, Failure, Group, Report};
use crate::sqlserver::tds::exec::first_result;

/// The bound a writer may be delayed by a notification nobody answers: the procedure's four
/// 250 ms timeouts, plus a margin for a busy server.
const WRITER_BOUND: Duration = Duration::from_secs(2);
/// Addresses where nothing answers: TEST-NET-1 (RFC 5737, never routed; the connect times out)
/// and port 1 of the server itself (refused at once).
const SILENT_URLS: [&str; 2] = [
    "http://192.0.2.1:9/api/sync/queue-notify",
    "http://127.0.0.1:1/api/sync/queue-notify",
];

/// Where the agent listens and the tokens its queue-notify accepts.
pub struct NotifyTarget {
    pub listen: Option<SocketAddr>,
    pub tokens: Vec<SecretString>,
}

/// Why `sp_NotifyAppOfSync` cannot POST from this server, if it cannot.
async fn unavailable(bench: &Bench) -> Result<Option<String>, Failure> {
    const SQL: &str = "\
SELECT CASE
    WHEN @@VERSION LIKE N'%Linux%' THEN 1
    WHEN NOT EXISTS (SELECT 1 FROM sys.configurations AS c
                     WHERE c.name = N'Ole Automation Procedures' AND CONVERT(int, c.value_in_use) = 1) THEN 2
    WHEN ISNULL(HAS_PERMS_BY_NAME(N'master.sys.sp_OACreate', N'OBJECT', N'EXECUTE'), 0) = 0 THEN 3
    ELSE 0 END;";
    let mut c = bench.clinic().await?;
    Ok(match scalar(&mut c, Query::new(SQL)).await? {
        Some(0) => None,
        Some(1) => Some("SQL Server on Linux has no OLE Automation: nothing wakes the agent; schedule POST /api/sync/trigger or rely on its retry timers and restarts".to_owned()),
        Some(2) => Some("the server option 'Ole Automation Procedures' is off: a sysadmin can enable it with sql/sqlserver/04_notify.sql (or sp_configure)".to_owned()),
        _ => Some("this login may not run sp_OACreate: grant EXECUTE on master.sys.sp_OACreate, sp_OAMethod, sp_OAGetProperty and sp_OADestroy to the clinic's writing logins (see 06_permissions.sql), or they send no notification".to_owned()),
    })
}

pub(crate) async fn run(bench: &Bench, target: &NotifyTarget, report: &mut Report) {
    let g = Group::Notify;
    let why = match unavailable(bench).await {
        Ok(why) => why,
        Err(f) => Some(f.why),
    };
    let usable = "sp_NotifyAppOfSync can POST from this server (OLE Automation)";
    match &why {
        None => report.record(g, usable, super::report::Outcome::Pass(None)),
        Some(why) => report.record(
            g,
            usable,
            super::report::Outcome::Fail(Failure::new(
                why.clone(),
                "without notifications changes reach Supabase only at the agent's next start, retry or POST /api/sync/trigger",
            )),
        ),
    }
    let reaches = "sp_NotifyAppOfSync reaches the agent's listener with an accepted token";
    let bounded = "a writer is not delayed beyond ~1 s when nothing listens";
    if why.is_some() {
        report.skip(
            g,
            reaches,
            "notifications cannot be sent from this server (above)",
        );
        report.skip(
            g,
            bounded,
            "notifications cannot be sent from this server (above)",
        );
        return;
    }
    report.run(g, reaches, reaches_agent(bench, target)).await;
    report.run(g, bounded, writer_not_delayed(bench)).await;
}

/// EXEC @rc = sp_NotifyAppOfSync: the HTTP status, a negative HRESULT, or 0 (nothing sent).
async fn notify(bench: &Bench, url: Option<&str>) -> Result<i64, Failure> {
    let mut query = Query::new(
        "DECLARE @rc int; EXEC @rc = dbo.sp_NotifyAppOfSync @TargetUrl = @P1; SELECT @rc;",
    );
    query.bind(url.map(str::to_owned));
    let mut c = bench.clinic().await?;
    Ok(scalar(&mut c, query).await?.unwrap_or(0))
}

async fn notify_url(bench: &Bench) -> Result<Option<String>, Failure> {
    let mut c = bench.clinic().await?;
    let rows = first_result(
        Query::new("SELECT s.Value FROM dbo.SyncConfig AS s WHERE s.Name = N'NotifyUrl';"),
        &mut c,
    )
    .await?;
    Ok(rows
        .first()
        .and_then(|r| r.try_get::<&str, _>(0).ok().flatten())
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned))
}

async fn reaches_agent(bench: &Bench, target: &NotifyTarget) -> CheckResult {
    let Some(url) = notify_url(bench).await? else {
        return Err(Failure::new(
            "dbo.SyncConfig's NotifyUrl is empty: notifications are off",
            "UPDATE dbo.SyncConfig SET Value = N'http://<agent host>:<port>/api/sync/queue-notify' WHERE Name = N'NotifyUrl';",
        ));
    };
    let stand_in = match target.listen {
        Some(addr) => StandIn::start(addr, &target.tokens).await,
        None => None,
    };
    let status = notify(bench, None).await;
    let hits = stand_in.as_ref().map(StandIn::hits);
    drop(stand_in);
    let status = status?;
    let answered_by = match hits {
        Some(n) if n > 0 => "the self-test listening on the agent's address",
        Some(_) => "something other than this machine's agent address",
        None => "the running agent",
    };
    match status {
        200 | 202 => Ok(Some(format!("{url} answered {status}, by {answered_by}"))),
        401 => Err(Failure::new(
            format!("{url} answered 401: SyncConfig's NotifyToken is not the agent's token"),
            "UPDATE dbo.SyncConfig SET Value = N'<SYNC_NOTIFY_TOKEN>' WHERE Name = N'NotifyToken'; (or SYNC_ADMIN_TOKEN when no notify token is set)",
        )),
        s if s < 0 => Err(Failure::new(
            format!("SQL Server could not reach {url} (HRESULT 0x{:08X})", s as u32),
            "check NotifyUrl's host and port from the SQL Server machine (firewall, SYNC_LISTEN_ADDR); the agent must be reachable from SQL Server",
        )),
        s => Err(Failure::new(
            format!("{url} answered {s}"),
            "NotifyUrl must point at the agent's /api/sync/queue-notify",
        )),
    }
}

async fn writer_not_delayed(bench: &Bench) -> CheckResult {
    let mut took = Vec::new();
    for url in SILENT_URLS {
        let sql = format!(
            "SET NOCOUNT ON;
BEGIN TRANSACTION;
UPDATE [{s}].[Sets] SET Flag = Flag WHERE SetID = 1;
EXEC dbo.sp_NotifyAppOfSync @TargetUrl = N'{url}';
COMMIT TRANSACTION;",
            s = bench.schema
        );
        let mut c = bench.clinic().await?;
        let started = Instant::now();
        batch(&mut c, &sql).await?;
        let elapsed = started.elapsed();
        if elapsed > WRITER_BOUND {
            return Err(Failure::new(
                format!(
                    "a writer's transaction took {} ms with nothing listening at {url}",
                    elapsed.as_millis()
                ),
                "re-run sql/sqlserver/04_notify.sql: the procedure's timeouts must be 250 ms each",
            ));
        }
        took.push(format!("{} ms", elapsed.as_millis()));
    }
    Ok(Some(took.join(", ")))
}

/// A listener on the agent's address standing in for the agent while it is not running.
struct StandIn {
    hits: Arc<AtomicU32>,
    stop: CancellationToken,
}

impl StandIn {
    /// `None` when the address is taken (the agent is running and answers itself) or cannot
    /// be bound.
    async fn start(addr: SocketAddr, tokens: &[SecretString]) -> Option<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        let hits = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let tokens: Arc<Vec<SecretString>> = Arc::new(tokens.to_vec());
        let counter = Arc::clone(&hits);
        let route = warp::post()
            .and(warp::path!("api" / "sync" / "queue-notify"))
            .and(warp::header::optional::<String>("authorization"))
            .map(move |auth: Option<String>| {
                let presented = auth.as_deref().and_then(|h| h.strip_prefix("Bearer "));
                let known = presented.is_some_and(|p| {
                    tokens
                        .iter()
                        .any(|t| bool::from(t.expose_secret().as_bytes().ct_eq(p.as_bytes())))
                });
                counter.fetch_add(1, Ordering::SeqCst);
                let status = if known {
                    warp::http::StatusCode::ACCEPTED
                } else {
                    warp::http::StatusCode::UNAUTHORIZED
                };
                warp::reply::with_status(warp::reply(), status)
            });
        let server = warp::serve(route)
            .incoming(listener)
            .graceful(stop.clone().cancelled_owned());
        tokio::spawn(server.run());
        Some(Self { hits, stop })
    }

    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stand_in_answers_as_the_agent_would() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let stand_in = StandIn::start(addr, &[SecretString::from("right-token")])
            .await
            .expect("bound");
        // While it listens the address is taken: a second start (the agent's case) yields None.
        assert!(StandIn::start(addr, &[]).await.is_none());
        let url = format!("http://{addr}/api/sync/queue-notify");
        let http = reqwest::Client::new();
        let post = |token: &'static str| {
            http.post(&url)
                .bearer_auth(token)
                .body("{\"source\":\"sqlserver\"}")
                .send()
        };
        assert_eq!(post("right-token").await.unwrap().status(), 202);
        assert_eq!(post("wrong-token").await.unwrap().status(), 401);
        assert_eq!(stand_in.hits(), 2);
    }

    #[test]
    fn silent_urls_are_never_routed_or_refused() {
        assert!(SILENT_URLS[0].contains("192.0.2."));
        assert!(SILENT_URLS[1].contains("127.0.0.1:1/"));
    }
}
