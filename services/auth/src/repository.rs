//! PostgreSQL access for identities, sessions and addresses.

use chrono::{DateTime, Utc};
use commerce_access::Role;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{Address, Session, User, UserStatus};

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    password_hash: String,
    first_name: String,
    last_name: String,
    role: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let decode =
            |what: &str, value: &str| sqlx::Error::Decode(format!("{what} `{value}`").into());
        Ok(Self {
            id: row.id,
            role: row
                .role
                .parse::<Role>()
                .map_err(|_| decode("role", &row.role))?,
            status: UserStatus::parse(&row.status).ok_or_else(|| decode("status", &row.status))?,
            email: row.email,
            password_hash: row.password_hash,
            first_name: row.first_name,
            last_name: row.last_name,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const USER_COLUMNS: &str =
    "id, email, password_hash, first_name, last_name, role, status, created_at, updated_at";

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub role: Role,
    pub status: UserStatus,
}

/// `None` when the e-mail is taken.
pub async fn insert_user(
    connection: &mut PgConnection,
    user: NewUser<'_>,
) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "INSERT INTO users (id, email, password_hash, first_name, last_name, role, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (email) DO NOTHING RETURNING {USER_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(user.email)
    .bind(user.password_hash)
    .bind(user.first_name)
    .bind(user.last_name)
    .bind(user.role.as_str())
    .bind(user.status.as_str())
    .fetch_optional(connection)
    .await?;
    row.map(User::try_from).transpose()
}

pub async fn user_by_email(
    executor: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(executor)
    .await?;
    row.map(User::try_from).transpose()
}

pub async fn user_by_id(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(executor)
            .await?;
    row.map(User::try_from).transpose()
}

pub async fn list_users(
    executor: impl PgExecutor<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<User>, sqlx::Error> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(User::try_from).collect()
}

pub async fn set_status(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    status: UserStatus,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query("UPDATE users SET status = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(status.as_str())
        .execute(executor)
        .await?;
    Ok(updated.rows_affected() == 1)
}

pub async fn set_password_hash(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .execute(executor)
        .await?;
    Ok(())
}

pub async fn update_names(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    first_name: Option<&str>,
    last_name: Option<&str>,
) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "UPDATE users SET first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name),
         updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(first_name)
    .bind(last_name)
    .fetch_optional(executor)
    .await?;
    row.map(User::try_from).transpose()
}

// --- one-time tokens: e-mail verification, password reset ---------------------------

/// A single-use token e-mailed to the user, stored as its hash.
#[derive(Debug, Clone, Copy)]
pub enum OneTimeToken {
    EmailVerification,
    PasswordReset,
}

impl OneTimeToken {
    /// Its table: both have the same columns.
    fn table(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verifications",
            Self::PasswordReset => "password_resets",
        }
    }
}

/// Stores a new token and revokes the user's earlier unused ones of the same kind.
pub async fn replace_one_time_token(
    connection: &mut PgConnection,
    kind: OneTimeToken,
    user_id: Uuid,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let table = kind.table();
    sqlx::query(&format!(
        "UPDATE {table} SET revoked_at = now()
         WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL"
    ))
    .bind(user_id)
    .execute(&mut *connection)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {table} (token_hash, user_id, expires_at) VALUES ($1, $2, $3)"
    ))
    .bind(token_hash)
    .bind(user_id)
    .bind(expires_at)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

pub enum TokenState {
    Unknown,
    Used,
    Revoked,
    Expired,
    Valid { user_id: Uuid },
}

#[derive(sqlx::FromRow)]
struct OneTimeTokenRow {
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Locks the token's row for the rest of the transaction.
pub async fn lock_one_time_token(
    connection: &mut PgConnection,
    kind: OneTimeToken,
    token_hash: &[u8],
) -> Result<TokenState, sqlx::Error> {
    let row: Option<OneTimeTokenRow> = sqlx::query_as(&format!(
        "SELECT user_id, expires_at, used_at, revoked_at FROM {}
         WHERE token_hash = $1 FOR UPDATE",
        kind.table()
    ))
    .bind(token_hash)
    .fetch_optional(connection)
    .await?;
    Ok(match row {
        None => TokenState::Unknown,
        Some(row) if row.used_at.is_some() => TokenState::Used,
        Some(row) if row.revoked_at.is_some() => TokenState::Revoked,
        Some(row) if row.expires_at <= Utc::now() => TokenState::Expired,
        Some(row) => TokenState::Valid {
            user_id: row.user_id,
        },
    })
}

pub async fn mark_one_time_token_used(
    executor: impl PgExecutor<'_>,
    kind: OneTimeToken,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {} SET used_at = now() WHERE token_hash = $1",
        kind.table()
    ))
    .bind(token_hash)
    .execute(executor)
    .await?;
    Ok(())
}

// --- sessions and refresh tokens ------------------------------------------------------

pub async fn insert_session(
    connection: &mut PgConnection,
    user_id: Uuid,
    user_agent: &str,
    ip: &str,
    expires_at: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO sessions (id, user_id, user_agent, ip, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(user_id)
        .bind(user_agent)
        .bind(ip)
        .bind(expires_at)
        .execute(connection)
        .await?;
    Ok(id)
}

pub async fn insert_refresh_token(
    connection: &mut PgConnection,
    token_hash: &[u8],
    session_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(session_id)
    .bind(expires_at)
    .execute(connection)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
pub struct RefreshTokenRow {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub token_expires_at: DateTime<Utc>,
    pub rotated: bool,
    pub session_revoked: bool,
    pub session_expires_at: DateTime<Utc>,
}

/// Locks the token and its session for the rest of the transaction.
pub async fn lock_refresh_token(
    connection: &mut PgConnection,
    token_hash: &[u8],
) -> Result<Option<RefreshTokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.session_id, s.user_id, t.expires_at AS token_expires_at,
                t.rotated_at IS NOT NULL AS rotated, s.revoked_at IS NOT NULL AS session_revoked,
                s.expires_at AS session_expires_at
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
         WHERE t.token_hash = $1 FOR UPDATE OF t, s",
    )
    .bind(token_hash)
    .fetch_optional(connection)
    .await
}

pub async fn mark_rotated(
    connection: &mut PgConnection,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

pub async fn touch_session(
    connection: &mut PgConnection,
    session_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET last_used_at = now() WHERE id = $1")
        .bind(session_id)
        .execute(connection)
        .await?;
    Ok(())
}

/// Revokes one session (and so every refresh token of its family).
pub async fn revoke_session(
    executor: impl PgExecutor<'_>,
    session_id: Uuid,
    user_id: Option<Uuid>,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
         WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(reason)
    .execute(executor)
    .await?;
    Ok(revoked.rows_affected() == 1)
}

/// Every session of the user but `keep` (the one changing the password).
pub async fn revoke_other_sessions(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    keep: Uuid,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
         WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(keep)
    .bind(reason)
    .execute(executor)
    .await?;
    Ok(revoked.rows_affected())
}

pub async fn revoke_all_sessions(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(reason)
    .execute(executor)
    .await?;
    Ok(revoked.rows_affected())
}

/// Sessions of the user revoked within `within` (their access tokens may still be alive).
pub async fn recently_revoked_sessions(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    within: std::time::Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at > now() - make_interval(secs => $2)",
    )
    .bind(user_id)
    .bind(within.as_secs_f64())
    .fetch_all(executor)
    .await
}

pub async fn session_is_active(
    executor: impl PgExecutor<'_>,
    session_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let active: Option<bool> = sqlx::query_scalar(
        "SELECT revoked_at IS NULL AND expires_at > now() FROM sessions WHERE id = $1",
    )
    .bind(session_id)
    .fetch_optional(executor)
    .await?;
    Ok(active.unwrap_or(false))
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    user_agent: String,
    ip: String,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

pub async fn active_sessions(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<Session>, sqlx::Error> {
    let rows: Vec<SessionRow> = sqlx::query_as(
        "SELECT id, user_agent, ip, created_at, last_used_at, expires_at FROM sessions
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() ORDER BY created_at DESC",
    )
    .bind(user_id)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Session {
            id: row.id,
            user_agent: row.user_agent,
            ip: row.ip,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
        })
        .collect())
}

// --- addresses --------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct AddressRow {
    id: Uuid,
    user_id: Uuid,
    label: String,
    recipient: String,
    line1: String,
    line2: String,
    city: String,
    region: String,
    postal_code: String,
    country: String,
    phone: String,
    is_default: bool,
}

impl From<AddressRow> for Address {
    fn from(row: AddressRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            label: row.label,
            recipient: row.recipient,
            line1: row.line1,
            line2: row.line2,
            city: row.city,
            region: row.region,
            postal_code: row.postal_code,
            country: row.country,
            phone: row.phone,
            is_default: row.is_default,
        }
    }
}

const ADDRESS_COLUMNS: &str = "id, user_id, label, recipient, line1, line2, city, region, postal_code, country, phone, is_default";

pub async fn addresses(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<Address>, sqlx::Error> {
    let rows: Vec<AddressRow> = sqlx::query_as(&format!(
        "SELECT {ADDRESS_COLUMNS} FROM addresses WHERE user_id = $1 ORDER BY is_default DESC, created_at"
    ))
    .bind(user_id)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Only the owner's address: another user's id finds nothing.
pub async fn address(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Address>, sqlx::Error> {
    let row: Option<AddressRow> = sqlx::query_as(&format!(
        "SELECT {ADDRESS_COLUMNS} FROM addresses WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn clear_default(
    connection: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE addresses SET is_default = false WHERE user_id = $1 AND is_default")
        .bind(user_id)
        .execute(connection)
        .await?;
    Ok(())
}

/// Creates or replaces one of the user's addresses; `None` when `address.id` belongs to
/// another user (the row is left alone).
pub async fn save_address(
    connection: &mut PgConnection,
    address: &Address,
) -> Result<Option<Address>, sqlx::Error> {
    let row: Option<AddressRow> = sqlx::query_as(&format!(
        "INSERT INTO addresses ({ADDRESS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET label = EXCLUDED.label, recipient = EXCLUDED.recipient,
             line1 = EXCLUDED.line1, line2 = EXCLUDED.line2, city = EXCLUDED.city, region = EXCLUDED.region,
             postal_code = EXCLUDED.postal_code, country = EXCLUDED.country, phone = EXCLUDED.phone,
             is_default = EXCLUDED.is_default, updated_at = now()
         WHERE addresses.user_id = EXCLUDED.user_id
         RETURNING {ADDRESS_COLUMNS}"
    ))
    .bind(address.id)
    .bind(address.user_id)
    .bind(&address.label)
    .bind(&address.recipient)
    .bind(&address.line1)
    .bind(&address.line2)
    .bind(&address.city)
    .bind(&address.region)
    .bind(&address.postal_code)
    .bind(&address.country)
    .bind(&address.phone)
    .bind(address.is_default)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn delete_address(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM addresses WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(executor)
        .await?;
    Ok(deleted.rows_affected() == 1)
}
