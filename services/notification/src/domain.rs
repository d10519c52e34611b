//! Notification rules without I/O: channels, kinds, locales, template rendering, which
//! channels a notification goes out on, and retry pauses.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == raw)
    }
}

/// Kinds the user cannot turn off: without them an account cannot be used safely.
pub fn is_mandatory(kind: &str) -> bool {
    matches!(
        kind,
        "email_verification" | "account_exists" | "password_reset" | "password_changed"
    )
}

/// `order_confirmed`: lowercase letters, digits and `_`, starting with a letter.
pub fn valid_kind(kind: &str) -> bool {
    let mut chars = kind.chars();
    matches!(chars.next(), Some('a'..='z'))
        && kind.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// `en` or `pt-BR`.
pub fn valid_locale(locale: &str) -> bool {
    let bytes = locale.as_bytes();
    let language = |b: &[u8]| b.len() == 2 && b.iter().all(u8::is_ascii_lowercase);
    match bytes.len() {
        2 => language(bytes),
        5 => {
            language(&bytes[..2])
                && bytes[2] == b'-'
                && bytes[3..].iter().all(u8::is_ascii_uppercase)
        }
        _ => false,
    }
}

/// Which templates to try for a locale, best first: `pt-BR` → `pt-BR`, `pt`, `en`.
pub fn locale_candidates(locale: &str) -> Vec<String> {
    let mut candidates = vec![locale.to_owned()];
    if let Some((language, _)) = locale.split_once('-') {
        candidates.push(language.to_owned());
    }
    if !candidates
        .iter()
        .any(|candidate| candidate == DEFAULT_LOCALE)
    {
        candidates.push(DEFAULT_LOCALE.to_owned());
    }
    candidates
}

pub const DEFAULT_LOCALE: &str = "en";

/// E.164: `+` then 7 to 15 digits, not starting with 0.
pub fn valid_phone(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub kind: String,
    pub channel: Channel,
    pub locale: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

/// What a template produced for one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct TemplateError {
    /// `subject`, `body` or `html`.
    pub field: &'static str,
    pub message: String,
}

/// Rendering may not run away: an admin-written loop is stopped after this much work.
const RENDER_FUEL: u64 = 50_000;
/// Nor may it produce an unbounded message.
pub const MAX_RENDERED_BYTES: usize = 100_000;

fn environment() -> minijinja::Environment<'static> {
    let mut environment = minijinja::Environment::new();
    environment.set_fuel(Some(RENDER_FUEL));
    // Names ending in `.html` are auto-escaped: a customer's name cannot inject markup.
    environment.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    environment
}

fn render_one(
    environment: &minijinja::Environment<'_>,
    field: &'static str,
    source: &str,
    data: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let name = if field == "html" {
        "part.html"
    } else {
        "part.txt"
    };
    let error = |message: String| TemplateError { field, message };
    let template = environment
        .template_from_named_str(name, source)
        .map_err(|e| error(e.to_string()))?;
    let text = template.render(data).map_err(|e| error(e.to_string()))?;
    if text.len() > MAX_RENDERED_BYTES {
        return Err(error(format!(
            "renders to more than {MAX_RENDERED_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// Renders every part of `template` with `data` (missing variables render empty).
pub fn render(
    template: &Template,
    data: &BTreeMap<String, String>,
) -> Result<Rendered, TemplateError> {
    let environment = environment();
    Ok(Rendered {
        subject: render_one(&environment, "subject", &template.subject, data)?
            .trim()
            .to_owned(),
        body: render_one(&environment, "body", &template.body, data)?,
        html: template
            .html
            .as_deref()
            .map(|html| render_one(&environment, "html", html, data))
            .transpose()?,
    })
}

/// Checks a template an admin submits: it parses, and renders without data.
pub fn check(template: &Template) -> Result<(), TemplateError> {
    if template.body.trim().is_empty() {
        return Err(TemplateError {
            field: "body",
            message: "must not be empty".into(),
        });
    }
    if template.channel == Channel::Email && template.subject.trim().is_empty() {
        return Err(TemplateError {
            field: "subject",
            message: "an e-mail needs a subject".into(),
        });
    }
    if template.channel != Channel::Email && template.html.is_some() {
        return Err(TemplateError {
            field: "html",
            message: "only e-mail templates have an HTML part".into(),
        });
    }
    render(template, &BTreeMap::new()).map(|_| ())
}

/// The user's choices and contact details that decide where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub locale: String,
    pub email_enabled: bool,
    pub sms_enabled: bool,
    pub push_enabled: bool,
}

/// What becomes of one channel of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send; the destination may still be unknown (an e-mail address asked of auth later).
    Send { destination: Option<String> },
    /// Logged, not sent, with the reason.
    Skip(&'static str),
}

/// Decides a channel: the user's opt-out is honoured unless the kind is mandatory; SMS
/// needs a phone number; push needs nothing more.
pub fn plan(kind: &str, channel: Channel, recipient: &Recipient) -> Plan {
    let enabled = match channel {
        Channel::Email => recipient.email_enabled,
        Channel::Sms => recipient.sms_enabled,
        Channel::Push => recipient.push_enabled,
    };
    if !enabled && !is_mandatory(kind) {
        return Plan::Skip("turned off by the user");
    }
    match channel {
        Channel::Email => Plan::Send {
            destination: recipient.email.clone(),
        },
        Channel::Sms => match &recipient.phone {
            Some(phone) => Plan::Send {
                destination: Some(phone.clone()),
            },
            None => Plan::Skip("no phone number"),
        },
        Channel::Push => Plan::Send { destination: None },
    }
}

/// The pause before attempt `attempts + 1`: 2 s doubling, at most 10 minutes.
pub fn retry_pause(attempts: u32) -> Duration {
    let seconds = 2u64.saturating_pow(attempts.clamp(1, 20));
    Duration::from_secs(seconds.min(600))
}

/// `12.50 EUR`.
pub fn money(amount: &str, currency: &str) -> String {
    format!("{amount} {currency}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn template(channel: Channel, subject: &str, body: &str, html: Option<&str>) -> Template {
        Template {
            kind: "order_confirmed".into(),
            channel,
            locale: "en".into(),
            subject: subject.into(),
            body: body.into(),
            html: html.map(str::to_owned),
        }
    }

    #[test]
    fn renders_variables_slices_and_conditions() {
        let rendered = render(
            &template(
                Channel::Email,
                "Order {{ order_id[:8] }}",
                "Hi {{ first_name or 'there' }}{% if reason %} ({{ reason }}){% endif %}",
                Some("<p>{{ first_name }}</p>"),
            ),
            &data(&[
                ("order_id", "0123456789abcdef"),
                ("first_name", "<b>Ann</b>"),
            ]),
        )
        .unwrap();
        assert_eq!(rendered.subject, "Order 01234567");
        assert_eq!(rendered.body, "Hi <b>Ann</b>");
        assert_eq!(
            rendered.html.as_deref(),
            Some("<p>&lt;b&gt;Ann&lt;&#x2f;b&gt;</p>"),
            "the HTML part escapes what it inserts"
        );
    }

    #[test]
    fn a_broken_or_runaway_template_is_refused_naming_its_part() {
        let broken = template(Channel::Email, "Hi", "{% if %}", None);
        assert_eq!(check(&broken).unwrap_err().field, "body");
        let runaway = template(
            Channel::Push,
            "t",
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
            None,
        );
        let error = check(&runaway).unwrap_err();
        assert_eq!(error.field, "body");
        assert!(error.message.contains("fuel"), "{error}");
        let html_on_sms = template(Channel::Sms, "", "hi", Some("<p>hi</p>"));
        assert_eq!(check(&html_on_sms).unwrap_err().field, "html");
        let no_subject = template(Channel::Email, " ", "hi", None);
        assert_eq!(check(&no_subject).unwrap_err().field, "subject");
    }

    #[test]
    fn opt_outs_are_honoured_except_for_mandatory_kinds() {
        let recipient = Recipient {
            email: Some("a@example.com".into()),
            phone: None,
            locale: "en".into(),
            email_enabled: false,
            sms_enabled: true,
            push_enabled: true,
        };
        assert_eq!(
            plan("order_confirmed", Channel::Email, &recipient),
            Plan::Skip("turned off by the user")
        );
        assert_eq!(
            plan("email_verification", Channel::Email, &recipient),
            Plan::Send {
                destination: Some("a@example.com".into())
            }
        );
        assert_eq!(
            plan("order_confirmed", Channel::Sms, &recipient),
            Plan::Skip("no phone number")
        );
        assert_eq!(
            plan("order_confirmed", Channel::Push, &recipient),
            Plan::Send { destination: None }
        );
    }

    #[test]
    fn locales_fall_back_to_language_then_english() {
        assert_eq!(locale_candidates("pt-BR"), ["pt-BR", "pt", "en"]);
        assert_eq!(locale_candidates("en"), ["en"]);
        assert!(valid_locale("pt-BR") && valid_locale("id"));
        assert!(!valid_locale("PT") && !valid_locale("pt_br") && !valid_locale("english"));
    }

    #[test]
    fn names_and_numbers_are_checked() {
        assert!(valid_kind("order_confirmed") && valid_kind("a1"));
        assert!(!valid_kind("1a") && !valid_kind("Order") && !valid_kind(""));
        assert!(valid_phone("+628123456789"));
        assert!(
            !valid_phone("08123456") && !valid_phone("+0123456789") && !valid_phone("+12a4567")
        );
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(retry_pause(1), Duration::from_secs(2));
        assert_eq!(retry_pause(3), Duration::from_secs(8));
        assert_eq!(retry_pause(30), Duration::from_secs(600));
    }
}
