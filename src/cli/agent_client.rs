//! How a command speaks to the agent running on this machine: its admin endpoints on
//! `SYNC_LISTEN_ADDR` (loopback when it listens on every address), with the admin token of the
//! same `.env`. No answer at all means no agent runs; any answer that is not a success is
//! reported as it came.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::config::Config;

/// Long enough for a status read while SQL Server is slow; the connection itself is local.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentCallError {
    /// Nothing accepted the connection: no agent runs here (or not on this address).
    #[error("no agent answers on {addr}: {why}")]
    NotRunning { addr: SocketAddr, why: String },
    #[error("the agent on {addr} answered HTTP {status}: {reason}")]
    Refused {
        addr: SocketAddr,
        status: u16,
        reason: String,
    },
    #[error("the agent on {addr} did not answer properly: {why}")]
    Broken { addr: SocketAddr, why: String },
}

pub(crate) struct AgentClient {
    http: reqwest::Client,
    addr: SocketAddr,
    admin: SecretString,
}

/// Where to reach an agent that listens on `listen`.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

impl AgentClient {
    pub(crate) fn new(config: &Config) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // The agent is local: a proxy from the environment must not be asked.
            .no_proxy()
            .build()?;
        Ok(Self {
            http,
            addr: reachable(config.listen_addr),
            admin: config.admin_token.clone(),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, AgentCallError> {
        self.send(self.http.get(self.url(path))).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, AgentCallError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, AgentCallError> {
        let addr = self.addr;
        let answer = request
            .bearer_auth(self.admin.expose_secret())
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    AgentCallError::NotRunning {
                        addr,
                        why: "connection refused".to_owned(),
                    }
                } else {
                    AgentCallError::Broken {
                        addr,
                        why: e.without_url().to_string(),
                    }
                }
            })?;
        let status = answer.status();
        let body: Value = answer.json().await.map_err(|e| AgentCallError::Broken {
            addr,
            why: e.without_url().to_string(),
        })?;
        if !status.is_success() {
            let reason = body["reason"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned();
            return Err(AgentCallError::Refused {
                addr,
                status: status.as_u16(),
                reason,
            });
        }
        Ok(body)
    }
}
