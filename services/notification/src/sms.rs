//! SMS through providers with failover: each provider in order gets the message until one
//! accepts it; a provider that errs or does not answer within the timeout hands over to
//! the next. Clients for Twilio's Messages API and Vonage's SMS API, and a `log` provider
//! for a laptop (the message is written to the service log).

use commerce_runtime::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Trying again later may work (timeouts, 5xx, 429, connection errors).
    #[error("{0}")]
    Transient(String),
    /// It never will (a refused number, bad credentials).
    #[error("{0}")]
    Permanent(String),
}

#[async_trait::async_trait]
pub trait SmsProvider: Send + Sync {
    fn name(&self) -> &str;
    /// Sends `body` to `to` (E.164); answers the provider's message id.
    async fn send(&self, to: &str, body: &str) -> Result<String, SendError>;
}

/// `services.notification.sms`: the providers in failover order.
#[derive(Debug, Clone, Deserialize)]
pub struct SmsSettings {
    pub providers: Vec<ProviderSettings>,
    /// How long one provider may take before the next is tried.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            providers: vec![ProviderSettings::Log],
            timeout: default_timeout(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ProviderSettings {
    Log,
    Twilio {
        account_sid: String,
        auth_token: SecretString,
        from: String,
        #[serde(default = "twilio_base")]
        base_url: String,
    },
    Vonage {
        api_key: String,
        api_secret: SecretString,
        from: String,
        #[serde(default = "vonage_base")]
        base_url: String,
    },
}

fn twilio_base() -> String {
    "https://api.twilio.com".into()
}
fn vonage_base() -> String {
    "https://rest.nexmo.com".into()
}

/// Builds the failover chain from configuration.
pub fn from_settings(settings: &SmsSettings) -> Result<FailoverSms, String> {
    if settings.providers.is_empty() {
        return Err("services.notification.sms.providers: list at least one provider".into());
    }
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let providers = settings
        .providers
        .iter()
        .map(|provider| -> Arc<dyn SmsProvider> {
            match provider.clone() {
                ProviderSettings::Log => Arc::new(LogSms),
                ProviderSettings::Twilio {
                    account_sid,
                    auth_token,
                    from,
                    base_url,
                } => Arc::new(TwilioSms {
                    http: http.clone(),
                    base_url,
                    account_sid,
                    auth_token,
                    from,
                }),
                ProviderSettings::Vonage {
                    api_key,
                    api_secret,
                    from,
                    base_url,
                } => Arc::new(VonageSms {
                    http: http.clone(),
                    base_url,
                    api_key,
                    api_secret,
                    from,
                }),
            }
        })
        .collect();
    Ok(FailoverSms::new(providers, settings.timeout))
}

/// Tries each provider in order.
#[derive(Clone)]
pub struct FailoverSms {
    providers: Vec<Arc<dyn SmsProvider>>,
    timeout: Duration,
}

/// Who sent it and the provider's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsReceipt {
    pub provider: String,
    pub message_id: String,
}

impl FailoverSms {
    pub fn new(providers: Vec<Arc<dyn SmsProvider>>, timeout: Duration) -> Self {
        Self { providers, timeout }
    }

    /// The first provider to accept the message. When all refuse, the error lists each
    /// provider's answer; it is permanent only if every answer was.
    pub async fn send(&self, to: &str, body: &str) -> Result<SmsReceipt, SendError> {
        let mut failures = Vec::new();
        let mut all_permanent = true;
        for provider in &self.providers {
            let outcome = tokio::time::timeout(self.timeout, provider.send(to, body)).await;
            let error = match outcome {
                Ok(Ok(message_id)) => {
                    metrics::counter!("notification_sms_sent_total", "provider" => provider.name().to_owned())
                        .increment(1);
                    return Ok(SmsReceipt {
                        provider: provider.name().to_owned(),
                        message_id,
                    });
                }
                Ok(Err(error)) => error,
                Err(_) => SendError::Transient(format!("no answer within {:?}", self.timeout)),
            };
            metrics::counter!("notification_sms_failovers_total", "provider" => provider.name().to_owned())
                .increment(1);
            tracing::warn!(provider = provider.name(), %error, "SMS provider failed; trying the next");
            all_permanent &= matches!(error, SendError::Permanent(_));
            failures.push(format!("{}: {error}", provider.name()));
        }
        let message = failures.join("; ");
        Err(if all_permanent {
            SendError::Permanent(message)
        } else {
            SendError::Transient(message)
        })
    }
}

/// Writes the message to the log (for a laptop, where no provider is configured).
pub struct LogSms;

#[async_trait::async_trait]
impl SmsProvider for LogSms {
    fn name(&self) -> &str {
        "log"
    }

    /// Logs are kept and shipped further than messages: the number shows only its last
    /// four digits and the text only its length.
    async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        tracing::info!(
            to = %masked_phone(to),
            body_chars = body.chars().count(),
            "SMS (log provider)"
        );
        Ok(format!("log-{}", uuid::Uuid::now_v7()))
    }
}

/// `+15551234567` → `+•••••••4567`: enough to tell numbers apart, not to call one.
pub fn masked_phone(phone: &str) -> String {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    phone
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + 4 > digits { c } else { '•' }
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn provider_credentials_never_print() {
        let (twilio, vonage) = ("twilio-auth-token-0123456789abcdef", "vonage-api-secret-76");
        let settings: SmsSettings = serde_json::from_value(serde_json::json!({
            "providers": [
                { "provider": "twilio", "account_sid": "AC123", "auth_token": twilio, "from": "+15550001111" },
                { "provider": "vonage", "api_key": "key-1", "api_secret": vonage, "from": "Shop" },
            ],
        }))
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(printed.contains("AC123"), "{printed}");
        assert!(
            !printed.contains(twilio) && !printed.contains(vonage),
            "{printed}"
        );
    }
}

#[cfg(test)]
mod log_provider_tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn numbers_keep_only_their_last_four_digits() {
        assert_eq!(masked_phone("+15551234567"), "+•••••••4567");
        assert_eq!(masked_phone("+1 (555) 123-4567"), "+• (•••) •••-4567");
        assert_eq!(masked_phone("123"), "123");
    }

    #[tokio::test]
    async fn the_log_provider_writes_neither_the_number_nor_the_text() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        LogSms
            .send("+15551234567", "Your code is 482913")
            .await
            .unwrap();
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("SMS (log provider)"), "{logged}");
        assert!(
            logged.contains("4567") && logged.contains("body_chars=19"),
            "{logged}"
        );
        assert!(!logged.contains("5551234567"), "{logged}");
        assert!(!logged.contains("482913"), "{logged}");
    }
}

fn classify(status: reqwest::StatusCode, detail: String) -> SendError {
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        SendError::Transient(format!("{status}: {detail}"))
    } else {
        SendError::Permanent(format!("{status}: {detail}"))
    }
}

fn transport(error: reqwest::Error) -> SendError {
    SendError::Transient(error.to_string())
}

/// Twilio's Messages API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
/// form-encoded `To`, `From`, `Body`, HTTP Basic auth with the account SID and auth token;
/// 201 answers the message resource (`sid`), errors answer `{code, message}`.
pub struct TwilioSms {
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
}

#[derive(Deserialize)]
struct TwilioMessage {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

#[async_trait::async_trait]
impl SmsProvider for TwilioSms {
    fn name(&self) -> &str {
        "twilio"
    }

    async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url.trim_end_matches('/'),
            self.account_sid
        );
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&[("To", to), ("From", self.from.as_str()), ("Body", body)])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            let message: TwilioMessage = response
                .json()
                .await
                .map_err(|e| SendError::Transient(format!("unreadable answer: {e}")))?;
            return Ok(message.sid);
        }
        let detail = match response.json::<TwilioError>().await {
            Ok(error) => format!(
                "{} (code {})",
                error.message.unwrap_or_default(),
                error.code.unwrap_or_default()
            ),
            Err(_) => "no error body".into(),
        };
        Err(classify(status, detail))
    }
}

/// Vonage's SMS API: `POST /sms/json`, form-encoded `api_key`, `api_secret`, `from`, `to`
/// (digits without `+`), `text`; always 200, with `messages[0].status` "0" for accepted and
/// an error text otherwise (status 1 "Throttled" may succeed later).
pub struct VonageSms {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    api_secret: SecretString,
    from: String,
}

#[derive(Deserialize)]
struct VonageAnswer {
    messages: Vec<VonageMessage>,
}

#[derive(Deserialize)]
struct VonageMessage {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

#[async_trait::async_trait]
impl SmsProvider for VonageSms {
    fn name(&self) -> &str {
        "vonage"
    }

    async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        let url = format!("{}/sms/json", self.base_url.trim_end_matches('/'));
        let response = self
            .http
            .post(url)
            .form(&[
                ("api_key", self.api_key.as_str()),
                ("api_secret", self.api_secret.expose_secret()),
                ("from", self.from.as_str()),
                ("to", to.trim_start_matches('+')),
                ("text", body),
            ])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(classify(status, "HTTP error".into()));
        }
        let answer: VonageAnswer = response
            .json()
            .await
            .map_err(|e| SendError::Transient(format!("unreadable answer: {e}")))?;
        let message = answer
            .messages
            .into_iter()
            .next()
            .ok_or_else(|| SendError::Transient("no message in the answer".into()))?;
        match (message.status.as_str(), message.message_id) {
            ("0", Some(id)) => Ok(id),
            (code, _) => {
                let detail = format!("status {code}: {}", message.error_text.unwrap_or_default());
                // 1 = throttled, 5 = internal error: worth another try.
                Err(if code == "1" || code == "5" {
                    SendError::Transient(detail)
                } else {
                    SendError::Permanent(detail)
                })
            }
        }
    }
}
