//! E-mail over SMTP (lettre): one pooled asynchronous transport, plain, STARTTLS or TLS.

use commerce_runtime::{ExposeSecret, SecretString};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, SinglePart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::sms::SendError;

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP: a local sink only.
    #[default]
    None,
    /// Upgrade with STARTTLS (port 587), refusing servers that do not offer it.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `services.notification.smtp`.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// `Commerce <no-reply@shop.example>`.
    pub from: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct OutgoingEmail<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// Becomes `X-Notification-Id`, so a message can be traced back to its log row.
    pub notification_id: &'a str,
}

#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[derive(Debug, thiserror::Error)]
pub enum MailerConfigError {
    #[error("services.notification.smtp.from: {0}")]
    From(#[source] lettre::address::AddressError),
    #[error("services.notification.smtp: {0}")]
    Transport(#[source] lettre::transport::smtp::Error),
}

impl SmtpMailer {
    pub fn new(settings: &SmtpSettings) -> Result<Self, MailerConfigError> {
        let from: Mailbox = settings.from.parse().map_err(MailerConfigError::From)?;
        let tls =
            |host: &str| TlsParameters::new(host.to_owned()).map_err(MailerConfigError::Transport);
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
                .port(settings.port)
                .timeout(Some(settings.timeout));
        builder = match settings.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(&settings.host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&settings.host)?)),
        };
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one message; answers the SMTP server's reply. 5xx replies and bad addresses
    /// are permanent, everything else may succeed later.
    pub async fn send(&self, email: &OutgoingEmail<'_>) -> Result<String, SendError> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| SendError::Permanent(format!("recipient `{}`: {e}", email.to)))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            .header(NotificationIdHeader(email.notification_id.to_owned()));
        let text = SinglePart::builder()
            .header(header::ContentType::TEXT_PLAIN)
            .body(email.text.to_owned());
        let message = match email.html {
            Some(html) => builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(header::ContentType::TEXT_HTML)
                        .body(html.to_owned()),
                ),
            ),
            None => builder.singlepart(text),
        }
        .map_err(|e| SendError::Permanent(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(response) => Ok(response
                .message()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(200)
                .collect()),
            Err(error) if error.is_permanent() => Err(SendError::Permanent(error.to_string())),
            Err(error) => Err(SendError::Transient(error.to_string())),
        }
    }
}

#[derive(Clone)]
struct NotificationIdHeader(String);

impl header::Header for NotificationIdHeader {
    fn name() -> header::HeaderName {
        header::HeaderName::new_from_ascii_str("X-Notification-Id")
    }

    fn parse(raw: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(raw.to_owned()))
    }

    fn display(&self) -> header::HeaderValue {
        header::HeaderValue::new(Self::name(), self.0.clone())
    }
}
