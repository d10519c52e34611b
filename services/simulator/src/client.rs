//! Requests to the shop, each timed and recorded under the step it belongs to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::stats::{Outcome, Recorder};

/// Why a step did not give what the person wanted.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{step}: {status} {body}")]
    Status {
        step: &'static str,
        status: u16,
        body: String,
    },
    #[error("{step}: no answer")]
    Transport {
        step: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{step}: the answer lacks {what}")]
    Answer {
        step: &'static str,
        what: &'static str,
    },
}

impl Failure {
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth trying again with the same idempotency key: the shop was briefly away.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::Transport { .. }
                | Failure::Status {
                    status: 502..=504,
                    ..
                }
        )
    }
}

/// The shop as one person reaches it: the gateway, their token, their address.
#[derive(Clone)]
pub struct Shop {
    http: reqwest::Client,
    gateway: Arc<str>,
    recorder: Arc<Recorder>,
}

/// The longest a person waits for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Shop {
    pub fn new(gateway: &str, recorder: Arc<Recorder>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            gateway: gateway.trim_end_matches('/').into(),
            recorder,
        })
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to `path` on the gateway, as `who`.
    pub fn request(&self, method: Method, path: &str, who: &Caller) -> RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.gateway));
        if let Some(token) = &who.token {
            request = request.bearer_auth(token);
        }
        if let Some(address) = &who.address {
            request = request.header("x-forwarded-for", address.as_str());
        }
        request
    }

    /// Sends `request` as `step`, due at `due` (the latency counts from then), and
    /// returns the JSON answer (`null` when there is none).
    pub async fn call(
        &self,
        step: &'static str,
        due: Instant,
        request: RequestBuilder,
    ) -> Result<Value, Failure> {
        let answer = request.send().await;
        let response = match answer {
            Ok(response) => response,
            Err(source) => {
                self.recorder
                    .request(step, due.elapsed(), Outcome::Transport);
                return Err(Failure::Transport { step, source });
            }
        };
        let status = response.status().as_u16();
        let body = response.bytes().await;
        let latency = due.elapsed();
        let body = match body {
            Ok(body) => body,
            Err(source) => {
                self.recorder.request(step, latency, Outcome::Transport);
                return Err(Failure::Transport { step, source });
            }
        };
        self.recorder
            .request(step, latency, Outcome::Status(status));
        if (200..300).contains(&status) {
            Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
        } else {
            Err(Failure::Status {
                step,
                status,
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            })
        }
    }

    /// [`Shop::call`] now.
    pub async fn call_now(
        &self,
        step: &'static str,
        request: RequestBuilder,
    ) -> Result<Value, Failure> {
        self.call(step, Instant::now(), request).await
    }
}

/// Who is asking: a signed-in person's token and the client address they come from.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub token: Option<String>,
    pub address: Option<String>,
}

/// `field` of `value` as a string, or the failure naming it.
pub fn text<'a>(
    value: &'a Value,
    step: &'static str,
    field: &'static str,
) -> Result<&'a str, Failure> {
    value[field]
        .as_str()
        .ok_or(Failure::Answer { step, what: field })
}
