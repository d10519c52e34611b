//! The notification service's tables: recipients, templates, notifications, deliveries.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::domain::{Channel, Recipient, Template};

/// Contact details learnt from an event. `None` leaves what is stored.
#[derive(Debug, Default)]
pub struct Contact<'a> {
    pub email: Option<&'a str>,
    pub first_name: Option<&'a str>,
    /// Only fills an empty phone number: a number the user set wins over one on an order.
    pub fallback_phone: Option<&'a str>,
}

pub async fn learn_contact(
    connection: &mut PgConnection,
    user_id: Uuid,
    contact: &Contact<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recipients (user_id, email, first_name, phone) VALUES ($1, $2, COALESCE($3, ''), $4)
         ON CONFLICT (user_id) DO UPDATE SET
             email = COALESCE($2, recipients.email),
             first_name = COALESCE($3, recipients.first_name),
             phone = COALESCE(recipients.phone, $4),
             updated_at = now()",
    )
    .bind(user_id)
    .bind(contact.email)
    .bind(contact.first_name)
    .bind(contact.fallback_phone)
    .execute(connection)
    .await?;
    Ok(())
}

/// Takes the user's next sequence number under their row lock (held to commit) and
/// answers it with their current preferences and first name.
pub async fn next_seq(
    connection: &mut PgConnection,
    user_id: Uuid,
) -> Result<(i64, Recipient, String), sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO recipients (user_id, last_seq) VALUES ($1, 1)
         ON CONFLICT (user_id) DO UPDATE SET last_seq = recipients.last_seq + 1
         RETURNING last_seq, email, phone, locale, email_enabled, sms_enabled, push_enabled, first_name",
    )
    .bind(user_id)
    .fetch_one(connection)
    .await?;
    Ok((
        row.get("last_seq"),
        recipient_from(&row),
        row.get("first_name"),
    ))
}

fn recipient_from(row: &sqlx::postgres::PgRow) -> Recipient {
    Recipient {
        email: row.get("email"),
        phone: row.get("phone"),
        locale: row.get("locale"),
        email_enabled: row.get("email_enabled"),
        sms_enabled: row.get("sms_enabled"),
        push_enabled: row.get("push_enabled"),
    }
}

fn template_from(row: &sqlx::postgres::PgRow) -> Template {
    Template {
        kind: row.get("kind"),
        channel: Channel::parse(row.get::<&str, _>("channel")).unwrap_or(Channel::Push),
        locale: row.get("locale"),
        subject: row.get("subject"),
        body: row.get("body"),
        html: row.get("html"),
    }
}

/// The kind's templates in any of `locales`.
pub async fn templates_for(
    connection: &mut PgConnection,
    kind: &str,
    locales: &[String],
) -> Result<Vec<Template>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, channel, locale, subject, body, html FROM templates
         WHERE kind = $1 AND locale = ANY($2)",
    )
    .bind(kind)
    .bind(locales)
    .fetch_all(connection)
    .await?;
    Ok(rows.iter().map(template_from).collect())
}

pub async fn all_templates(pool: &PgPool) -> Result<Vec<(Template, i32)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, channel, locale, subject, body, html, version FROM templates
         ORDER BY kind, channel, locale",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| (template_from(row), row.get("version")))
        .collect())
}

/// Inserts or replaces a template; answers its new version.
pub async fn put_template(pool: &PgPool, template: &Template) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO templates (kind, channel, locale, subject, body, html) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (kind, channel, locale) DO UPDATE SET
             subject = $4, body = $5, html = $6, version = templates.version + 1, updated_at = now()
         RETURNING version",
    )
    .bind(&template.kind)
    .bind(template.channel.as_str())
    .bind(&template.locale)
    .bind(&template.subject)
    .bind(&template.body)
    .bind(&template.html)
    .fetch_one(pool)
    .await
}

pub struct NewNotification<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub seq: i64,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub data: serde_json::Value,
    pub in_app: bool,
    pub source: &'a str,
}

pub async fn insert_notification(
    connection: &mut PgConnection,
    notification: &NewNotification<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifications (id, user_id, seq, kind, title, body, data, in_app, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(notification.id)
    .bind(notification.user_id)
    .bind(notification.seq)
    .bind(notification.kind)
    .bind(notification.title)
    .bind(notification.body)
    .bind(&notification.data)
    .bind(notification.in_app)
    .bind(notification.source)
    .execute(connection)
    .await?;
    Ok(())
}

/// The notification already made for `source`, with the channels it queued.
pub async fn by_source(
    connection: &mut PgConnection,
    source: &str,
) -> Result<Option<(Uuid, Vec<Channel>)>, sqlx::Error> {
    let Some(id): Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM notifications WHERE source = $1")
            .bind(source)
            .fetch_optional(&mut *connection)
            .await?
    else {
        return Ok(None);
    };
    let channels: Vec<String> = sqlx::query_scalar(
        "SELECT channel FROM deliveries WHERE notification_id = $1 AND status <> 'skipped' ORDER BY channel",
    )
    .bind(id)
    .fetch_all(connection)
    .await?;
    Ok(Some((
        id,
        channels.iter().filter_map(|c| Channel::parse(c)).collect(),
    )))
}

pub struct NewDelivery<'a> {
    pub notification_id: Uuid,
    pub channel: Channel,
    /// `Err(reason)`: logged as skipped.
    pub plan: Result<Option<&'a str>, &'a str>,
    pub subject: &'a str,
    pub body: &'a str,
    pub html: Option<&'a str>,
}

pub async fn insert_delivery(
    connection: &mut PgConnection,
    delivery: &NewDelivery<'_>,
) -> Result<(), sqlx::Error> {
    let (status, destination, reason) = match delivery.plan {
        Ok(destination) => ("pending", destination, None),
        Err(reason) => ("skipped", None, Some(reason)),
    };
    sqlx::query(
        "INSERT INTO deliveries (notification_id, channel, status, destination, subject, body, html, last_error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(delivery.notification_id)
    .bind(delivery.channel.as_str())
    .bind(status)
    .bind(destination)
    .bind(delivery.subject)
    .bind(delivery.body)
    .bind(delivery.html)
    .bind(reason)
    .execute(connection)
    .await?;
    Ok(())
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub notification_id: Uuid,
    pub channel: Channel,
    pub destination: Option<String>,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    pub attempts: i32,
    pub user_id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due deliveries: each one's next attempt moves `lease` ahead, so a
/// worker that dies mid-send leaves it to be claimed again, and no two workers send it
/// at once. Push deliveries come first and in sequence order.
pub async fn claim_due(
    pool: &PgPool,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<DueDelivery>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH due AS (
             SELECT d.notification_id, d.channel FROM deliveries d
             JOIN notifications n ON n.id = d.notification_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()
             ORDER BY (d.channel = 'push') DESC, n.seq
             LIMIT $1
             FOR UPDATE OF d SKIP LOCKED
         )
         UPDATE deliveries d SET attempts = d.attempts + 1,
                next_attempt_at = now() + make_interval(secs => $2)
         FROM due, notifications n
         WHERE d.notification_id = due.notification_id AND d.channel = due.channel
           AND n.id = d.notification_id
         RETURNING d.notification_id, d.channel, d.destination, d.subject, d.body, d.html,
                   d.attempts, n.user_id, n.seq, n.kind, n.data, n.created_at",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut claimed: Vec<DueDelivery> = rows
        .iter()
        .map(|row| DueDelivery {
            notification_id: row.get("notification_id"),
            channel: Channel::parse(row.get::<&str, _>("channel")).unwrap_or(Channel::Push),
            destination: row.get("destination"),
            subject: row.get("subject"),
            body: row.get("body"),
            html: row.get("html"),
            attempts: row.get("attempts"),
            user_id: row.get("user_id"),
            seq: row.get("seq"),
            kind: row.get("kind"),
            data: row.get("data"),
            created_at: row.get("created_at"),
        })
        .collect();
    claimed.sort_by_key(|due| (due.channel != Channel::Push, due.seq));
    Ok(claimed)
}

pub async fn mark_sent(
    pool: &PgPool,
    notification_id: Uuid,
    channel: Channel,
    destination: Option<&str>,
    provider: &str,
    provider_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET status = 'sent', sent_at = now(), provider = $3, provider_id = $4,
                destination = COALESCE($5, destination), last_error = NULL
         WHERE notification_id = $1 AND channel = $2",
    )
    .bind(notification_id)
    .bind(channel.as_str())
    .bind(provider)
    .bind(provider_id)
    .bind(destination)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt: retried after `retry_in`, or failed for good when `None`.
pub async fn mark_failed_attempt(
    pool: &PgPool,
    notification_id: Uuid,
    channel: Channel,
    error: &str,
    retry_in: Option<std::time::Duration>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET last_error = $3,
                status = CASE WHEN $4::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                next_attempt_at = now() + make_interval(secs => COALESCE($4, 0))
         WHERE notification_id = $1 AND channel = $2",
    )
    .bind(notification_id)
    .bind(channel.as_str())
    .bind(error)
    .bind(retry_in.map(|pause| pause.as_secs_f64()))
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn recipient_email(pool: &PgPool, user_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT email FROM recipients WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

/// A notification as its owner sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

const VIEW_COLUMNS: &str = "id, seq, kind, title, body, data, created_at, read_at";

fn view_from(row: &sqlx::postgres::PgRow) -> NotificationView {
    NotificationView {
        id: row.get("id"),
        seq: row.get("seq"),
        kind: row.get("kind"),
        title: row.get("title"),
        body: row.get("body"),
        data: row.get("data"),
        created_at: row.get("created_at"),
        read_at: row.get("read_at"),
    }
}

/// The user's in-app notifications, newest first, before sequence `before`.
pub async fn history(
    pool: &PgPool,
    user_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<NotificationView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {VIEW_COLUMNS} FROM notifications
         WHERE user_id = $1 AND in_app AND seq < COALESCE($2, 9223372036854775807)
         ORDER BY seq DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(view_from).collect())
}

/// In-app notifications after sequence `after`, oldest first (a stream catching up).
pub async fn after(
    pool: &PgPool,
    user_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<NotificationView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {VIEW_COLUMNS} FROM notifications
         WHERE user_id = $1 AND in_app AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(view_from).collect())
}

pub async fn latest_seq(pool: &PgPool, user_id: Uuid) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT last_seq FROM recipients WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .unwrap_or(0),
    )
}

pub async fn unread_count(pool: &PgPool, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND in_app AND read_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await
}

/// Marks one of the user's notifications read; false when it is not theirs.
pub async fn mark_read(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let found = sqlx::query(
        "UPDATE notifications SET read_at = COALESCE(read_at, now())
         WHERE id = $1 AND user_id = $2 AND in_app",
    )
    .bind(id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(found.rows_affected() == 1)
}

pub async fn mark_all_read(pool: &PgPool, user_id: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE notifications SET read_at = now() WHERE user_id = $1 AND in_app AND read_at IS NULL",
    )
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub async fn preferences(pool: &PgPool, user_id: Uuid) -> Result<Option<Recipient>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT email, phone, locale, email_enabled, sms_enabled, push_enabled FROM recipients WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(recipient_from))
}

pub async fn put_preferences(
    pool: &PgPool,
    user_id: Uuid,
    preferences: &Recipient,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recipients (user_id, phone, locale, email_enabled, sms_enabled, push_enabled)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id) DO UPDATE SET phone = $2, locale = $3, email_enabled = $4,
             sms_enabled = $5, push_enabled = $6, updated_at = now()",
    )
    .bind(user_id)
    .bind(&preferences.phone)
    .bind(&preferences.locale)
    .bind(preferences.email_enabled)
    .bind(preferences.sms_enabled)
    .bind(preferences.push_enabled)
    .execute(pool)
    .await?;
    Ok(())
}

/// One channel of a notification, for staff.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryLog {
    pub channel: String,
    pub status: String,
    pub destination: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub provider: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationLog {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub deliveries: Vec<DeliveryLog>,
}

/// A user's notifications with every channel's outcome, newest first.
pub async fn log_for_user(
    pool: &PgPool,
    user_id: Uuid,
    limit: i64,
) -> Result<Vec<NotificationLog>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT n.id, n.user_id, n.kind, n.title, n.created_at,
                COALESCE(json_agg(json_build_object(
                    'channel', d.channel, 'status', d.status, 'destination', d.destination,
                    'attempts', d.attempts, 'lastError', d.last_error, 'provider', d.provider,
                    'sentAt', d.sent_at) ORDER BY d.channel) FILTER (WHERE d.channel IS NOT NULL), '[]') AS deliveries
         FROM notifications n LEFT JOIN deliveries d ON d.notification_id = n.id
         WHERE n.user_id = $1
         GROUP BY n.id ORDER BY n.seq DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let deliveries: serde_json::Value = row.get("deliveries");
            NotificationLog {
                id: row.get("id"),
                user_id: row.get("user_id"),
                kind: row.get("kind"),
                title: row.get("title"),
                created_at: row.get("created_at"),
                deliveries: deliveries
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| DeliveryLog {
                        channel: d["channel"].as_str().unwrap_or_default().to_owned(),
                        status: d["status"].as_str().unwrap_or_default().to_owned(),
                        destination: d["destination"].as_str().map(str::to_owned),
                        attempts: d["attempts"].as_i64().unwrap_or_default() as i32,
                        last_error: d["lastError"].as_str().map(str::to_owned),
                        provider: d["provider"].as_str().map(str::to_owned),
                        sent_at: d["sentAt"]
                            .as_str()
                            .and_then(|t| t.parse::<DateTime<Utc>>().ok()),
                    })
                    .collect(),
            }
        })
        .collect())
}
