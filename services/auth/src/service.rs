//! Auth use cases: registration, verification, login, refresh rotation with reuse
//! detection, sessions, profile, addresses, administration and service tokens.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::Utc;
use commerce_access::{
    AccessError, Claims, RevokedSessions, Role, SERVICE_SUBJECT_PREFIX, TokenVerifier,
};
use commerce_messaging::NewEvent;
use commerce_proto::auth::v1 as pb;
use commerce_redis::{RateDecision, RedisClient};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use axum::http::StatusCode;
use commerce_runtime::ApiError;

use crate::domain::{self, Address, SERVICES, Session, User, UserStatus};
use crate::keys::KeyRing;
use crate::repository::{self as repo, NewUser, OneTimeToken, TokenState};
use crate::settings::{AuthSettings, LimitSetting};

pub const TOPIC: &str = "commerce.auth.events";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    #[error("verify your e-mail address before logging in")]
    EmailNotVerified,
    #[error("this account is disabled")]
    Disabled,
    #[error("too many attempts")]
    RateLimited(Duration),
    #[error("the link's token {0}")]
    Verification(&'static str),
    #[error("refresh token is invalid or expired")]
    RefreshInvalid,
    #[error("refresh token was already used; the session has been revoked")]
    RefreshReused,
    #[error("invalid client credentials")]
    ClientCredentials,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("client `{client}` may not call `{audience}`")]
    AudienceNotAllowed { client: String, audience: String },
    #[error("cannot record the sign-out right now; try again")]
    RevocationUnavailable(#[source] commerce_redis::RedisError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] commerce_messaging::MessagingError),
    #[error("redis: {0}")]
    Redis(#[from] commerce_redis::RedisError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("token verifier: {0}")]
    Verifier(#[source] AccessError),
    #[error("password hashing: {0}")]
    PasswordHash(#[source] argon2::password_hash::Error),
    #[error("password hashing task: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    #[error("inconsistent data: {0}")]
    Inconsistent(&'static str),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Invalid { field, message } => ApiError::invalid(field, message),
            AuthError::InvalidCredentials
            | AuthError::RefreshInvalid
            | AuthError::RefreshReused
            | AuthError::ClientCredentials
            | AuthError::Unauthenticated(_) => ApiError::unauthenticated(error.to_string()),
            AuthError::EmailNotVerified
            | AuthError::Disabled
            | AuthError::AudienceNotAllowed { .. } => ApiError::forbidden(error.to_string()),
            AuthError::RateLimited(retry_after) => {
                ApiError::too_many_requests(retry_after.as_secs_f64().ceil() as u64)
            }
            AuthError::Verification(reason) if reason.starts_with("has expired") => ApiError {
                field: Some("token".to_owned()),
                ..ApiError::new(StatusCode::GONE, "expired", error.to_string())
            },
            AuthError::Verification(_) => ApiError::invalid("token", error.to_string()),
            AuthError::NotFound(_) => ApiError::not_found(error.to_string()),
            AuthError::RevocationUnavailable(_) => ApiError::unavailable(1, error.to_string()),
            AuthError::Database(_)
            | AuthError::Outbox(_)
            | AuthError::Redis(_)
            | AuthError::Keys(_)
            | AuthError::Verifier(_)
            | AuthError::PasswordHash(_)
            | AuthError::Blocking(_)
            | AuthError::Inconsistent(_) => ApiError::storage(&error),
        }
    }
}

/// Tokens handed out at login and refresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
}

pub struct Registration<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

/// Who is calling, for sessions and rate limits.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    redis: RedisClient,
    keys: KeyRing,
    settings: AuthSettings,
    user_tokens: TokenVerifier,
    revoked: RevokedSessions,
    /// A hash of a random password: unknown e-mails cost as much as wrong passwords.
    decoy_hash: String,
}

impl AuthService {
    pub fn new(
        pool: PgPool,
        redis: RedisClient,
        keys: KeyRing,
        settings: AuthSettings,
    ) -> Result<Self, AuthError> {
        let revoked = RevokedSessions::new(redis.clone());
        let user_tokens = TokenVerifier::with_keys(
            keys.jwks(),
            commerce_access::VerifierSettings::new(&settings.issuer, &[&settings.audience]),
        )
        .map_err(AuthError::Verifier)?
        .checking_revocations(revoked.clone());
        let decoy_hash = hash_password_now(&domain::new_secret())?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                redis,
                keys,
                settings,
                user_tokens,
                revoked,
                decoy_hash,
            }),
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// Verifies user access tokens signed by this service.
    pub fn user_token_verifier(&self) -> TokenVerifier {
        self.inner.user_tokens.clone()
    }

    /// Verifies service tokens addressed to `audience`.
    pub fn service_token_verifier(&self, audience: &str) -> Result<TokenVerifier, AuthError> {
        TokenVerifier::with_keys(
            self.inner.keys.jwks(),
            commerce_access::VerifierSettings::new(&self.inner.settings.issuer, &[audience]),
        )
        .map_err(AuthError::Verifier)
    }

    fn scope(&self, scope: &str) -> String {
        format!("{}:{scope}", self.inner.settings.redis_prefix)
    }

    async fn limit(
        &self,
        scope: &str,
        subject: &str,
        limit: LimitSetting,
    ) -> Result<(), AuthError> {
        match self
            .inner
            .redis
            .hit(&self.scope(scope), subject, limit.into())
            .await?
        {
            RateDecision::Allowed { .. } => Ok(()),
            RateDecision::Limited { retry_after } => Err(AuthError::RateLimited(retry_after)),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        registration: Registration<'_>,
        client: &ClientInfo,
    ) -> Result<String, AuthError> {
        self.limit(
            "register-ip",
            &client.ip,
            self.inner.settings.limits.register_per_ip,
        )
        .await?;
        let email = domain::normalize_email(registration.email);
        domain::check_password(registration.password).map_err(|message| AuthError::Invalid {
            field: "password",
            message: message.to_owned(),
        })?;
        let password_hash = hash_password(registration.password).await?;
        let mut tx = self.inner.pool.begin().await?;
        let inserted = repo::insert_user(
            &mut tx,
            NewUser {
                email: &email,
                password_hash: &password_hash,
                first_name: registration.first_name.trim(),
                last_name: registration.last_name.trim(),
                role: Role::Customer,
                status: UserStatus::Unverified,
            },
        )
        .await?;
        let Some(user) = inserted else {
            // Answered like a new sign-up, so the answer does not tell who has an
            // account; the owner hears of it by e-mail.
            let owner = repo::user_by_email(&mut *tx, &email)
                .await?
                .ok_or_else(|| AuthError::Inconsistent("an e-mail taken by nobody"))?;
            let event = pb::RegistrationAttempted {
                user_id: owner.id.to_string(),
                email: owner.email.clone(),
                first_name: owner.first_name.clone(),
            };
            commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, owner.id.to_string(), &event))
                .await?;
            tx.commit().await?;
            metrics::counter!("auth_registrations_of_existing_accounts_total").increment(1);
            return Ok(email);
        };
        let (token, expires_at) = self.new_verification(&mut tx, user.id).await?;
        let event = pb::UserRegistered {
            user_id: user.id.to_string(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            verification_token: token,
            verification_expires_at: Some(timestamp(expires_at)),
        };
        commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, user.id.to_string(), &event))
            .await?;
        tx.commit().await?;
        metrics::counter!("auth_registrations_total").increment(1);
        Ok(user.email)
    }

    async fn new_verification(
        &self,
        connection: &mut sqlx::PgConnection,
        user_id: Uuid,
    ) -> Result<(String, chrono::DateTime<Utc>), AuthError> {
        self.new_one_time_token(
            connection,
            OneTimeToken::EmailVerification,
            user_id,
            self.inner.settings.verification_ttl,
        )
        .await
    }

    async fn new_one_time_token(
        &self,
        connection: &mut sqlx::PgConnection,
        kind: OneTimeToken,
        user_id: Uuid,
        ttl: Duration,
    ) -> Result<(String, chrono::DateTime<Utc>), AuthError> {
        let token = domain::new_secret();
        let expires_at = Utc::now() + ttl;
        repo::replace_one_time_token(
            connection,
            kind,
            user_id,
            &domain::secret_hash(&token),
            expires_at,
        )
        .await?;
        Ok((token, expires_at))
    }

    /// Locks a presented one-time token and says whose it is, or why it does not work.
    async fn redeem_one_time_token(
        connection: &mut sqlx::PgConnection,
        kind: OneTimeToken,
        token: &str,
    ) -> Result<Uuid, AuthError> {
        let hash = domain::secret_hash(token.trim());
        let user_id = match repo::lock_one_time_token(connection, kind, &hash).await? {
            TokenState::Unknown => return Err(AuthError::Verification("is invalid")),
            TokenState::Used => {
                return Err(AuthError::Verification("has already been used"));
            }
            TokenState::Revoked => {
                return Err(AuthError::Verification(
                    "was replaced by a newer one; use the latest link",
                ));
            }
            TokenState::Expired => {
                return Err(AuthError::Verification("has expired; request a new one"));
            }
            TokenState::Valid { user_id } => user_id,
        };
        repo::mark_one_time_token_used(&mut *connection, kind, &hash).await?;
        Ok(user_id)
    }

    #[tracing::instrument(skip_all)]
    pub async fn verify_email(&self, token: &str) -> Result<User, AuthError> {
        let mut tx = self.inner.pool.begin().await?;
        let user_id =
            Self::redeem_one_time_token(&mut tx, OneTimeToken::EmailVerification, token).await?;
        let user = repo::user_by_id(&mut *tx, user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        if user.status == UserStatus::Unverified {
            self.confirm_email(&mut tx, &user).await?;
        }
        tx.commit().await?;
        repo::user_by_id(&self.inner.pool, user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))
    }

    /// "Forgot password": e-mails a single-use reset link. Answers the same for an unknown
    /// address, so it tells nobody which exist; a disabled account gets no link.
    #[tracing::instrument(skip_all)]
    pub async fn request_password_reset(
        &self,
        email: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let email = self.limit_mail_request("reset", email, client).await?;
        let mut tx = self.inner.pool.begin().await?;
        let Some(user) = repo::user_by_email(&mut *tx, &email).await? else {
            return Ok(());
        };
        if user.status == UserStatus::Disabled {
            return Ok(());
        }
        let (token, expires_at) = self
            .new_one_time_token(
                &mut tx,
                OneTimeToken::PasswordReset,
                user.id,
                self.inner.settings.password_reset_ttl,
            )
            .await?;
        let event = pb::PasswordResetRequested {
            user_id: user.id.to_string(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            reset_token: token,
            reset_expires_at: Some(timestamp(expires_at)),
        };
        commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, user.id.to_string(), &event))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password with an e-mailed reset token. Every session ends (whoever had
    /// the old password is out), and an unconfirmed address counts as confirmed: the
    /// link proved it.
    #[tracing::instrument(skip_all)]
    pub async fn reset_password(&self, token: &str, new_password: &str) -> Result<(), AuthError> {
        domain::check_password(new_password).map_err(|message| AuthError::Invalid {
            field: "password",
            message: message.to_owned(),
        })?;
        let password_hash = hash_password(new_password).await?;
        let mut tx = self.inner.pool.begin().await?;
        let user_id =
            Self::redeem_one_time_token(&mut tx, OneTimeToken::PasswordReset, token).await?;
        let user = repo::user_by_id(&mut *tx, user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        match user.status {
            UserStatus::Disabled => return Err(AuthError::Disabled),
            UserStatus::Unverified => self.confirm_email(&mut tx, &user).await?,
            UserStatus::Active => {}
        }
        repo::set_password_hash(&mut *tx, user_id, &password_hash).await?;
        repo::revoke_all_sessions(&mut *tx, user_id, "password reset").await?;
        self.enqueue_password_changed(&mut tx, &user).await?;
        tx.commit().await?;
        metrics::counter!("auth_password_resets_total").increment(1);
        self.announce_recently_revoked(user_id).await
    }

    /// Changes the password of a signed-in user who knows the current one; every other
    /// session ends. Wrong guesses count like failed logins.
    #[tracing::instrument(skip_all)]
    pub async fn change_password(
        &self,
        claims: &Claims,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), AuthError> {
        let (Some(session_id), Some(user_id)) = (claims.sid, claims.user_id()) else {
            return Err(AuthError::Unauthenticated(
                "not a user session token".to_owned(),
            ));
        };
        let attempts = user_id.to_string();
        self.limit(
            "password-change",
            &attempts,
            self.inner.settings.limits.login_per_email,
        )
        .await?;
        let user = repo::user_by_id(&self.inner.pool, user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        if !verify_password(current_password, &user.password_hash).await? {
            return Err(AuthError::Invalid {
                field: "currentPassword",
                message: "is not your current password".to_owned(),
            });
        }
        domain::check_password(new_password).map_err(|message| AuthError::Invalid {
            field: "newPassword",
            message: message.to_owned(),
        })?;
        let password_hash = hash_password(new_password).await?;
        self.inner
            .redis
            .reset_hits(&self.scope("password-change"), &attempts)
            .await?;
        let mut tx = self.inner.pool.begin().await?;
        repo::set_password_hash(&mut *tx, user_id, &password_hash).await?;
        repo::revoke_other_sessions(&mut *tx, user_id, session_id, "password changed").await?;
        self.enqueue_password_changed(&mut tx, &user).await?;
        tx.commit().await?;
        metrics::counter!("auth_password_changes_total").increment(1);
        self.announce_recently_revoked(user_id).await
    }

    /// Tells the owner, so a change they did not make does not go unnoticed.
    async fn enqueue_password_changed(
        &self,
        connection: &mut sqlx::PgConnection,
        user: &User,
    ) -> Result<(), AuthError> {
        let event = pb::PasswordChanged {
            user_id: user.id.to_string(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
        };
        commerce_messaging::enqueue(connection, NewEvent::of(TOPIC, user.id.to_string(), &event))
            .await?;
        Ok(())
    }

    /// E-mails sent on request (verification, password reset) are limited per source and
    /// per address; the address, normalised.
    async fn limit_mail_request(
        &self,
        scope: &str,
        email: &str,
        client: &ClientInfo,
    ) -> Result<String, AuthError> {
        let limits = &self.inner.settings.limits;
        let email = domain::normalize_email(email);
        self.limit(&format!("{scope}-ip"), &client.ip, limits.resend_per_ip)
            .await?;
        self.limit(&format!("{scope}-user"), &email, limits.resend_per_user)
            .await?;
        Ok(email)
    }

    /// An unconfirmed account becomes active: its owner proved the address.
    async fn confirm_email(
        &self,
        connection: &mut sqlx::PgConnection,
        user: &User,
    ) -> Result<(), AuthError> {
        repo::set_status(&mut *connection, user.id, UserStatus::Active).await?;
        let event = pb::EmailVerified {
            user_id: user.id.to_string(),
            email: user.email.clone(),
        };
        commerce_messaging::enqueue(connection, NewEvent::of(TOPIC, user.id.to_string(), &event))
            .await?;
        Ok(())
    }

    /// Always succeeds for an unknown or verified e-mail, so it tells nobody which exist.
    #[tracing::instrument(skip_all)]
    pub async fn resend_verification(
        &self,
        email: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let email = self.limit_mail_request("resend", email, client).await?;
        let mut tx = self.inner.pool.begin().await?;
        let Some(user) = repo::user_by_email(&mut *tx, &email).await? else {
            return Ok(());
        };
        if user.status != UserStatus::Unverified {
            return Ok(());
        }
        let (token, expires_at) = self.new_verification(&mut tx, user.id).await?;
        let event = pb::EmailVerificationRequested {
            user_id: user.id.to_string(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            verification_token: token,
            verification_expires_at: Some(timestamp(expires_at)),
        };
        commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, user.id.to_string(), &event))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, AuthError> {
        let limits = &self.inner.settings.limits;
        let email = domain::normalize_email(email);
        self.limit("login-ip", &client.ip, limits.login_per_ip)
            .await?;
        // Every attempt counts against the account from this source; a success clears the
        // count. Keyed by source too, so a stranger's guesses lock only the stranger out.
        let account_from_source = format!("{email} {}", client.ip);
        self.limit("login-email", &account_from_source, limits.login_per_email)
            .await?;
        let user = repo::user_by_email(&self.inner.pool, &email).await?;
        let hash = user.as_ref().map_or(self.inner.decoy_hash.clone(), |user| {
            user.password_hash.clone()
        });
        let password_ok = verify_password(password, &hash).await?;
        let user = match user {
            Some(user) if password_ok => user,
            _ => {
                metrics::counter!("auth_login_failures_total").increment(1);
                return Err(AuthError::InvalidCredentials);
            }
        };
        match user.status {
            UserStatus::Unverified => return Err(AuthError::EmailNotVerified),
            UserStatus::Disabled => return Err(AuthError::Disabled),
            UserStatus::Active => {}
        }
        self.inner
            .redis
            .reset_hits(&self.scope("login-email"), &account_from_source)
            .await?;
        let mut tx = self.inner.pool.begin().await?;
        let settings = &self.inner.settings;
        let session_id = repo::insert_session(
            &mut tx,
            user.id,
            &client.user_agent,
            &client.ip,
            Utc::now() + settings.refresh_ttl,
        )
        .await?;
        let refresh_token = domain::new_secret();
        repo::insert_refresh_token(
            &mut tx,
            &domain::secret_hash(&refresh_token),
            session_id,
            Utc::now() + settings.refresh_ttl,
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("auth_logins_total").increment(1);
        self.token_pair(&user, session_id, refresh_token)
    }

    fn token_pair(
        &self,
        user: &User,
        session_id: Uuid,
        refresh_token: String,
    ) -> Result<TokenPair, AuthError> {
        let settings = &self.inner.settings;
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: settings.issuer.clone(),
            sub: user.id.to_string(),
            aud: settings.audience.clone(),
            exp: now + settings.access_ttl.as_secs() as i64,
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            role: user.role,
            sid: Some(session_id),
            email: Some(user.email.clone()),
        };
        Ok(TokenPair {
            access_token: self.inner.keys.sign(&claims)?,
            token_type: "Bearer".to_owned(),
            expires_in: settings.access_ttl.as_secs(),
            refresh_token,
            refresh_expires_in: settings.refresh_ttl.as_secs(),
            session_id,
        })
    }

    /// Rotates a refresh token. Presenting one that was already rotated means it leaked:
    /// the whole session (every token of its family) is revoked.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AuthError> {
        let hash = domain::secret_hash(refresh_token.trim());
        let mut tx = self.inner.pool.begin().await?;
        let Some(row) = repo::lock_refresh_token(&mut tx, &hash).await? else {
            return Err(AuthError::RefreshInvalid);
        };
        if row.rotated {
            repo::revoke_session(&mut *tx, row.session_id, None, "refresh token reuse").await?;
            tx.commit().await?;
            metrics::counter!("auth_refresh_reuse_total").increment(1);
            tracing::warn!(session = %row.session_id, "refresh token reuse; session revoked");
            self.announce_revoked_or_log(row.session_id).await;
            return Err(AuthError::RefreshReused);
        }
        let now = Utc::now();
        if row.session_revoked || row.session_expires_at <= now || row.token_expires_at <= now {
            return Err(AuthError::RefreshInvalid);
        }
        let user = repo::user_by_id(&mut *tx, row.user_id)
            .await?
            .ok_or(AuthError::RefreshInvalid)?;
        if user.status != UserStatus::Active {
            repo::revoke_session(&mut *tx, row.session_id, None, "account not active").await?;
            tx.commit().await?;
            self.announce_revoked_or_log(row.session_id).await;
            return Err(AuthError::Disabled);
        }
        repo::mark_rotated(&mut tx, &hash).await?;
        let next = domain::new_secret();
        // The family keeps the session's expiry: rotation does not extend a session.
        repo::insert_refresh_token(
            &mut tx,
            &domain::secret_hash(&next),
            row.session_id,
            row.session_expires_at,
        )
        .await?;
        repo::touch_session(&mut tx, row.session_id).await?;
        tx.commit().await?;
        let mut pair = self.token_pair(&user, row.session_id, next)?;
        pair.refresh_expires_in = (row.session_expires_at - now).num_seconds().max(0) as u64;
        Ok(pair)
    }

    pub async fn logout(&self, claims: &Claims) -> Result<(), AuthError> {
        let (Some(session_id), Some(user_id)) = (claims.sid, claims.user_id()) else {
            return Err(AuthError::Unauthenticated(
                "not a user session token".to_owned(),
            ));
        };
        repo::revoke_session(&self.inner.pool, session_id, Some(user_id), "logout").await?;
        self.announce_revoked(&[session_id]).await
    }

    /// "Sign out everywhere": every session of the user ends, this one included, and
    /// their access tokens stop working at once.
    pub async fn sign_out_everywhere(&self, user_id: Uuid) -> Result<(), AuthError> {
        repo::revoke_all_sessions(&self.inner.pool, user_id, "signed out everywhere").await?;
        self.announce_recently_revoked(user_id).await
    }

    /// Tells every verifier (`commerce_access::RevokedSessions`) that these sessions'
    /// access tokens are no longer good. Safe to repeat, so a failed call can be retried.
    async fn announce_revoked(&self, sessions: &[Uuid]) -> Result<(), AuthError> {
        self.inner
            .revoked
            .revoke(sessions, self.inner.settings.access_ttl)
            .await
            .map_err(AuthError::RevocationUnavailable)
    }

    /// Every session of the user revoked within an access token's lifetime: a retry after
    /// a failed announcement covers the sessions the first attempt revoked.
    async fn announce_recently_revoked(&self, user_id: Uuid) -> Result<(), AuthError> {
        let sessions = repo::recently_revoked_sessions(
            &self.inner.pool,
            user_id,
            self.inner.settings.access_ttl,
        )
        .await?;
        self.announce_revoked(&sessions).await
    }

    /// Where the caller's answer is already decided (a refused refresh).
    async fn announce_revoked_or_log(&self, session: Uuid) {
        let announced = self
            .inner
            .revoked
            .revoke(&[session], self.inner.settings.access_ttl)
            .await;
        if let Err(cause) = announced {
            tracing::error!(%session, %cause, "session revoked, but not announced to verifiers");
        }
    }

    pub async fn sessions(&self, user_id: Uuid) -> Result<Vec<Session>, AuthError> {
        Ok(repo::active_sessions(&self.inner.pool, user_id).await?)
    }

    pub async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> Result<(), AuthError> {
        if repo::revoke_session(
            &self.inner.pool,
            session_id,
            Some(user_id),
            "revoked by user",
        )
        .await?
            || repo::recently_revoked_sessions(
                &self.inner.pool,
                user_id,
                self.inner.settings.access_ttl,
            )
            .await?
            .contains(&session_id)
        {
            self.announce_revoked(&[session_id]).await
        } else {
            Err(AuthError::NotFound("session"))
        }
    }

    pub async fn user(&self, user_id: Uuid) -> Result<User, AuthError> {
        repo::user_by_id(&self.inner.pool, user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))
    }

    pub async fn update_profile(
        &self,
        user_id: Uuid,
        first_name: Option<&str>,
        last_name: Option<&str>,
    ) -> Result<User, AuthError> {
        repo::update_names(
            &self.inner.pool,
            user_id,
            first_name.map(str::trim),
            last_name.map(str::trim),
        )
        .await?
        .ok_or(AuthError::NotFound("user"))
    }

    pub async fn addresses(&self, user_id: Uuid) -> Result<Vec<Address>, AuthError> {
        Ok(repo::addresses(&self.inner.pool, user_id).await?)
    }

    pub async fn address(&self, user_id: Uuid, id: Uuid) -> Result<Address, AuthError> {
        repo::address(&self.inner.pool, user_id, id)
            .await?
            .ok_or(AuthError::NotFound("address"))
    }

    /// Adds an address; the first one, or one marked default, becomes the default.
    pub async fn add_address(&self, mut address: Address) -> Result<Address, AuthError> {
        domain::check_country(&address.country).map_err(|message| AuthError::Invalid {
            field: "country",
            message: message.to_owned(),
        })?;
        let mut tx = self.inner.pool.begin().await?;
        // Serialise a user's address changes so "one default" holds under concurrency.
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(address.user_id)
            .execute(&mut *tx)
            .await?;
        let existing = repo::addresses(&mut *tx, address.user_id).await?;
        if existing.len() >= 20 {
            return Err(AuthError::Invalid {
                field: "addresses",
                message: "at most 20 addresses per account".to_owned(),
            });
        }
        address.is_default |= existing.is_empty();
        if address.is_default {
            repo::clear_default(&mut tx, address.user_id).await?;
        }
        address.id = Uuid::now_v7();
        let created = repo::save_address(&mut tx, &address)
            .await?
            .ok_or(AuthError::NotFound("address"))?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn replace_address(&self, address: Address) -> Result<Address, AuthError> {
        domain::check_country(&address.country).map_err(|message| AuthError::Invalid {
            field: "country",
            message: message.to_owned(),
        })?;
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(address.user_id)
            .execute(&mut *tx)
            .await?;
        let current = repo::address(&mut *tx, address.user_id, address.id)
            .await?
            .ok_or(AuthError::NotFound("address"))?;
        if address.is_default && !current.is_default {
            repo::clear_default(&mut tx, address.user_id).await?;
        }
        let updated = repo::save_address(&mut tx, &address)
            .await?
            .ok_or(AuthError::NotFound("address"))?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn delete_address(&self, user_id: Uuid, id: Uuid) -> Result<(), AuthError> {
        if repo::delete_address(&self.inner.pool, user_id, id).await? {
            Ok(())
        } else {
            Err(AuthError::NotFound("address"))
        }
    }

    pub async fn list_users(&self, page: u32, page_size: u32) -> Result<Vec<User>, AuthError> {
        let offset = i64::from(page.saturating_sub(1)) * i64::from(page_size);
        Ok(repo::list_users(&self.inner.pool, i64::from(page_size), offset).await?)
    }

    /// Disables an account and ends all its sessions.
    pub async fn disable_user(&self, user_id: Uuid) -> Result<(), AuthError> {
        let mut tx = self.inner.pool.begin().await?;
        if !repo::set_status(&mut *tx, user_id, UserStatus::Disabled).await? {
            return Err(AuthError::NotFound("user"));
        }
        repo::revoke_all_sessions(&mut *tx, user_id, "account disabled").await?;
        tx.commit().await?;
        self.announce_recently_revoked(user_id).await
    }

    /// Client credentials → a short-lived token whose audience is the callee.
    pub fn service_token(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
    ) -> Result<(String, u64), AuthError> {
        let known = self.inner.settings.service_clients.get(client_id);
        // Compare against something even for unknown ids, so timing does not tell them apart.
        let expected = known.map_or("\u{0}".repeat(secret.len().max(1)), |known| {
            known.expose().to_owned()
        });
        let matches: bool = expected.as_bytes().ct_eq(secret.as_bytes()).into();
        if known.is_none() || !matches {
            return Err(AuthError::ClientCredentials);
        }
        if !SERVICES.contains(&audience) {
            return Err(AuthError::Invalid {
                field: "audience",
                message: format!("must be one of: {}", SERVICES.join(", ")),
            });
        }
        let settings = &self.inner.settings;
        let allowed = settings
            .client_audiences
            .get(client_id)
            .is_some_and(|audiences| audiences.iter().any(|allowed| allowed == audience));
        if !allowed {
            metrics::counter!("auth_service_token_refused_total", "client" => client_id.to_owned())
                .increment(1);
            tracing::warn!(
                client = client_id,
                audience,
                "service token for an audience not allowed"
            );
            return Err(AuthError::AudienceNotAllowed {
                client: client_id.to_owned(),
                audience: audience.to_owned(),
            });
        }
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: settings.issuer.clone(),
            sub: format!("{SERVICE_SUBJECT_PREFIX}{client_id}"),
            aud: audience.to_owned(),
            exp: now + settings.service_token_ttl.as_secs() as i64,
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            role: Role::Service,
            sid: None,
            email: None,
        };
        Ok((
            self.inner.keys.sign(&claims)?,
            settings.service_token_ttl.as_secs(),
        ))
    }

    /// Full validation for other services: signature, claims, and a still-active session.
    pub async fn validate_user_token(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = self
            .inner
            .user_tokens
            .verify(token)
            .await
            .map_err(|error: AccessError| AuthError::Unauthenticated(error.to_string()))?;
        let session = claims
            .sid
            .ok_or_else(|| AuthError::Unauthenticated("token has no session".to_owned()))?;
        if !repo::session_is_active(&self.inner.pool, session).await? {
            return Err(AuthError::Unauthenticated("session has ended".to_owned()));
        }
        Ok(claims)
    }

    /// Creates or keeps a verified account with the given role (demo data, first admin).
    pub async fn ensure_account(
        &self,
        email: &str,
        password: &str,
        first_name: &str,
        last_name: &str,
        role: Role,
    ) -> Result<bool, AuthError> {
        let email = domain::normalize_email(email);
        let password_hash = hash_password(password).await?;
        let mut tx = self.inner.pool.begin().await?;
        let created = repo::insert_user(
            &mut tx,
            NewUser {
                email: &email,
                password_hash: &password_hash,
                first_name,
                last_name,
                role,
                status: UserStatus::Active,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(created.is_some())
    }
}

fn hash_password_now(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(AuthError::PasswordHash)
}

/// argon2id is deliberately slow: it runs off the async workers.
async fn hash_password(password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password_now(&password)).await?
}

async fn verify_password(password: &str, hash: &str) -> Result<bool, AuthError> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(AuthError::PasswordHash)?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

pub fn timestamp(at: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}
