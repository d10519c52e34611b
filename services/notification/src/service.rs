//! Use cases: turning a cause (an event, a Send request) into one logged notification with
//! a delivery per channel, the user's history and preferences, and template management.

use std::collections::BTreeMap;

use commerce_runtime::ApiError;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{self, Channel, Plan, Recipient, Template};
use crate::repository::{self as repo, NewDelivery, NewNotification, NotificationView};

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no template for kind `{0}`")]
    UnknownKind(String),
    #[error("template {kind}/{channel}: {error}")]
    Template {
        kind: String,
        channel: &'static str,
        error: domain::TemplateError,
    },
    #[error("notification not found")]
    NotFound,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<NotificationError> for ApiError {
    fn from(error: NotificationError) -> Self {
        match error {
            NotificationError::Invalid { field, message } => ApiError::invalid(field, message),
            NotificationError::NotFound => ApiError::not_found("notification not found"),
            NotificationError::UnknownKind(_) => ApiError::not_found(error.to_string()),
            NotificationError::Template { .. } => ApiError::invalid("data", error.to_string()),
            NotificationError::Database(_) => ApiError::storage(&error),
        }
    }
}

/// One cause to notify a user of.
#[derive(Debug, Clone)]
pub struct NotifyRequest<'a> {
    /// `event:<id>` or `request:<id>`: a cause makes one notification, however often it
    /// arrives.
    pub source: String,
    pub user_id: Uuid,
    pub kind: &'a str,
    pub data: BTreeMap<String, String>,
    /// Restricts the channels (a Send request may); `None` = every templated channel.
    pub only: Option<&'a [Channel]>,
}

/// What was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    pub id: Uuid,
    /// The channels queued for sending (skipped ones are only logged).
    pub channels: Vec<Channel>,
    /// False when the same cause had already been notified.
    pub created: bool,
}

/// Records the notification and its deliveries in the caller's transaction (an inbox
/// transaction, so a redelivered event changes nothing). Sending happens after commit, in
/// the delivery worker.
pub async fn notify(
    connection: &mut PgConnection,
    request: NotifyRequest<'_>,
) -> Result<Notified, NotificationError> {
    if let Some((id, channels)) = repo::by_source(connection, &request.source).await? {
        return Ok(Notified {
            id,
            channels,
            created: false,
        });
    }
    let (seq, recipient, first_name) = repo::next_seq(connection, request.user_id).await?;
    let candidates = domain::locale_candidates(&recipient.locale);
    let stored = repo::templates_for(connection, request.kind, &candidates).await?;
    // Per channel, the template of the most specific locale.
    let mut chosen: BTreeMap<Channel, &Template> = BTreeMap::new();
    for locale in candidates.iter().rev() {
        for template in stored.iter().filter(|t| &t.locale == locale) {
            chosen.insert(template.channel, template);
        }
    }
    if let Some(only) = request.only {
        chosen.retain(|channel, _| only.contains(channel));
    }
    if chosen.is_empty() {
        return Err(NotificationError::UnknownKind(request.kind.to_owned()));
    }
    let mut data = request.data;
    if !first_name.is_empty() {
        data.entry("first_name".into()).or_insert(first_name);
    }
    let mut rendered = BTreeMap::new();
    for (channel, template) in &chosen {
        let output =
            domain::render(template, &data).map_err(|error| NotificationError::Template {
                kind: request.kind.to_owned(),
                channel: channel.as_str(),
                error,
            })?;
        rendered.insert(*channel, output);
    }
    let plans: BTreeMap<Channel, Plan> = rendered
        .keys()
        .map(|channel| (*channel, domain::plan(request.kind, *channel, &recipient)))
        .collect();
    let in_app = matches!(plans.get(&Channel::Push), Some(Plan::Send { .. }));
    // The history shows the push text; a kind without one is titled by its e-mail subject.
    let (title, body) = rendered
        .get(&Channel::Push)
        .or_else(|| rendered.get(&Channel::Email))
        .or_else(|| rendered.values().next())
        .map(|r| (r.subject.clone(), r.body.clone()))
        .unwrap_or_default();
    let id = Uuid::now_v7();
    let mut public_data = data.clone();
    // Secrets stay in the e-mail; the history and the stream never carry them.
    public_data.retain(|key, _| !SECRET_KEYS.contains(&key.as_str()));
    repo::insert_notification(
        connection,
        &NewNotification {
            id,
            user_id: request.user_id,
            seq,
            kind: request.kind,
            title: &title,
            body: &body,
            data: serde_json::to_value(&public_data).unwrap_or_default(),
            in_app,
            source: &request.source,
        },
    )
    .await?;
    let mut channels = Vec::new();
    for (channel, output) in &rendered {
        let plan = match &plans[channel] {
            Plan::Send { destination } => {
                channels.push(*channel);
                Ok(destination.as_deref())
            }
            Plan::Skip(reason) => Err(*reason),
        };
        repo::insert_delivery(
            connection,
            &NewDelivery {
                notification_id: id,
                channel: *channel,
                plan,
                subject: &output.subject,
                body: &output.body,
                html: output.html.as_deref(),
            },
        )
        .await?;
    }
    metrics::counter!("notifications_created_total", "kind" => request.kind.to_owned())
        .increment(1);
    Ok(Notified {
        id,
        channels,
        created: true,
    })
}

/// Data keys that must not reach the history or the stream.
const SECRET_KEYS: &[&str] = &["verification_url", "verification_token"];

/// The user-facing reads and writes.
#[derive(Clone)]
pub struct NotificationService {
    pool: PgPool,
}

/// A user's preferences as the API shows them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    pub email: bool,
    pub sms: bool,
    pub push: bool,
    pub phone: Option<String>,
    pub locale: String,
}

impl NotificationService {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn history(
        &self,
        user_id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<NotificationView>, NotificationError> {
        if !(1..=100).contains(&limit) {
            return Err(NotificationError::Invalid {
                field: "limit",
                message: "must be between 1 and 100".into(),
            });
        }
        Ok(repo::history(&self.pool, user_id, before, limit).await?)
    }

    pub async fn unread(&self, user_id: Uuid) -> Result<i64, NotificationError> {
        Ok(repo::unread_count(&self.pool, user_id).await?)
    }

    pub async fn mark_read(&self, user_id: Uuid, id: Uuid) -> Result<(), NotificationError> {
        if repo::mark_read(&self.pool, user_id, id).await? {
            Ok(())
        } else {
            Err(NotificationError::NotFound)
        }
    }

    pub async fn mark_all_read(&self, user_id: Uuid) -> Result<u64, NotificationError> {
        Ok(repo::mark_all_read(&self.pool, user_id).await?)
    }

    pub async fn preferences(&self, user_id: Uuid) -> Result<Preferences, NotificationError> {
        let recipient = repo::preferences(&self.pool, user_id)
            .await?
            .unwrap_or(Recipient {
                email: None,
                phone: None,
                locale: domain::DEFAULT_LOCALE.into(),
                email_enabled: true,
                sms_enabled: true,
                push_enabled: true,
            });
        Ok(Preferences {
            email: recipient.email_enabled,
            sms: recipient.sms_enabled,
            push: recipient.push_enabled,
            phone: recipient.phone,
            locale: recipient.locale,
        })
    }

    pub async fn set_preferences(
        &self,
        user_id: Uuid,
        preferences: Preferences,
    ) -> Result<Preferences, NotificationError> {
        if let Some(phone) = &preferences.phone
            && !domain::valid_phone(phone)
        {
            return Err(NotificationError::Invalid {
                field: "phone",
                message: "must be an E.164 number such as +628123456789".into(),
            });
        }
        if !domain::valid_locale(&preferences.locale) {
            return Err(NotificationError::Invalid {
                field: "locale",
                message: "must be a language code such as `en` or `pt-BR`".into(),
            });
        }
        repo::put_preferences(
            &self.pool,
            user_id,
            &Recipient {
                email: None,
                phone: preferences.phone.clone(),
                locale: preferences.locale.clone(),
                email_enabled: preferences.email,
                sms_enabled: preferences.sms,
                push_enabled: preferences.push,
            },
        )
        .await?;
        Ok(preferences)
    }

    pub async fn templates(&self) -> Result<Vec<(Template, i32)>, NotificationError> {
        Ok(repo::all_templates(&self.pool).await?)
    }

    /// Checks and stores a template; answers its version.
    pub async fn put_template(&self, template: Template) -> Result<i32, NotificationError> {
        if !domain::valid_kind(&template.kind) {
            return Err(NotificationError::Invalid {
                field: "kind",
                message: "lowercase letters, digits and `_`, starting with a letter".into(),
            });
        }
        if !domain::valid_locale(&template.locale) {
            return Err(NotificationError::Invalid {
                field: "locale",
                message: "must be a language code such as `en` or `pt-BR`".into(),
            });
        }
        domain::check(&template).map_err(|error| NotificationError::Invalid {
            field: error.field,
            message: error.message,
        })?;
        Ok(repo::put_template(&self.pool, &template).await?)
    }

    pub async fn log(
        &self,
        user_id: Uuid,
        limit: i64,
    ) -> Result<Vec<repo::NotificationLog>, NotificationError> {
        if !(1..=100).contains(&limit) {
            return Err(NotificationError::Invalid {
                field: "limit",
                message: "must be between 1 and 100".into(),
            });
        }
        Ok(repo::log_for_user(&self.pool, user_id, limit).await?)
    }

    /// A Send request: its own transaction; a concurrent twin with the same id finds the
    /// first one's answer.
    pub async fn send(&self, request: NotifyRequest<'_>) -> Result<Notified, NotificationError> {
        let source = request.source.clone();
        let mut tx = self.pool.begin().await?;
        match notify(&mut tx, request).await {
            Ok(notified) => {
                tx.commit().await?;
                Ok(notified)
            }
            Err(NotificationError::Database(sqlx::Error::Database(error)))
                if error.is_unique_violation() =>
            {
                drop(tx);
                let mut connection = self.pool.acquire().await?;
                let (id, channels) = repo::by_source(&mut connection, &source)
                    .await?
                    .ok_or(NotificationError::NotFound)?;
                Ok(Notified {
                    id,
                    channels,
                    created: false,
                })
            }
            Err(error) => Err(error),
        }
    }
}
