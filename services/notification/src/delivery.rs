//! The delivery worker: claims pending deliveries (woken at commit by PostgreSQL NOTIFY,
//! with a poll as backstop), sends each on its channel and records the outcome; failures
//! are retried with growing pauses up to a limit, then marked failed.

use std::sync::Arc;
use std::time::Duration;

use commerce_access::ServiceTokenSource;
use commerce_proto::auth::v1 as auth_pb;
use commerce_redis::{Fanout, RedisClient, hash_tagged};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel as GrpcChannel, Endpoint};
use uuid::Uuid;

use crate::domain::{self, Channel};
use crate::email::{OutgoingEmail, SmtpMailer};
use crate::repository::{self as repo, Contact, DueDelivery, NotificationView};
use crate::sms::{FailoverSms, SendError};

/// Where pushes for a user are published: one channel per user, hash-tagged by the user.
pub fn push_channel(prefix: &str, user_id: Uuid) -> String {
    hash_tagged(prefix, &user_id.to_string(), "push")
}

/// Asks auth for a user's e-mail address when no event told us (users who registered
/// before this service existed).
#[derive(Clone)]
pub struct UserDirectory {
    client: auth_pb::auth_service_client::AuthServiceClient<GrpcChannel>,
    tokens: Arc<ServiceTokenSource>,
}

impl UserDirectory {
    pub fn new(
        auth_grpc: &str,
        tokens: ServiceTokenSource,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(auth_grpc.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(Self {
            client: auth_pb::auth_service_client::AuthServiceClient::new(channel),
            tokens: Arc::new(tokens),
        })
    }

    async fn email(&self, user_id: Uuid) -> Result<(String, String), SendError> {
        // The trace context goes along, so auth's span joins the delivery's trace.
        let request = self
            .tokens
            .authorize(commerce_runtime::telemetry::traced_request(
                auth_pb::GetUserRequest {
                    user_id: user_id.to_string(),
                },
            ))
            .await
            .map_err(|error| SendError::Transient(format!("service token: {error}")))?;
        match self.client.clone().get_user(request).await {
            Ok(answer) => {
                let user = answer.into_inner().user.unwrap_or_default();
                Ok((user.email, user.first_name))
            }
            Err(status) if status.code() == tonic::Code::NotFound => Err(SendError::Permanent(
                format!("auth knows no user {user_id}"),
            )),
            Err(status) => Err(SendError::Transient(format!(
                "auth GetUser: {}",
                status.message()
            ))),
        }
    }
}

#[derive(Clone)]
pub struct DeliveryWorker {
    pub pool: PgPool,
    pub mailer: Option<SmtpMailer>,
    pub sms: FailoverSms,
    pub redis: RedisClient,
    pub push_prefix: String,
    pub directory: Option<UserDirectory>,
    pub max_attempts: i32,
    pub poll_interval: Duration,
    /// How many sends run at once.
    pub concurrency: usize,
}

const BATCH: i64 = 64;
const LEASE: Duration = Duration::from_secs(60);
const WAKE_CHANNEL: &str = "notification_deliveries";

impl DeliveryWorker {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        loop {
            // Drain what is due, then wait for a commit, the poll, or shutdown.
            loop {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                match self.run_once().await {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "claiming deliveries failed");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.poll_interval) => {}
                notification = listener.recv() => {
                    if let Err(error) = notification {
                        tracing::warn!(%error, "delivery wake-up listener failed; polling");
                    }
                }
            }
        }
    }

    /// Claims and sends one batch; answers how many deliveries it handled.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let due = repo::claim_due(&self.pool, BATCH, LEASE).await?;
        let count = due.len();
        // Pushes first and one at a time, in sequence order; the rest concurrently.
        let (pushes, others): (Vec<_>, Vec<_>) =
            due.into_iter().partition(|d| d.channel == Channel::Push);
        for delivery in pushes {
            self.deliver(delivery).await;
        }
        futures::stream::iter(others)
            .for_each_concurrent(self.concurrency.max(1), |delivery| self.deliver(delivery))
            .await;
        Ok(count)
    }

    #[tracing::instrument(skip_all, fields(notification = %delivery.notification_id, channel = delivery.channel.as_str(), attempt = delivery.attempts))]
    async fn deliver(&self, delivery: DueDelivery) {
        let started = std::time::Instant::now();
        let outcome = self.send(&delivery).await;
        let channel = delivery.channel.as_str();
        let recorded = match &outcome {
            Ok((destination, provider, provider_id)) => {
                repo::mark_sent(
                    &self.pool,
                    delivery.notification_id,
                    delivery.channel,
                    destination.as_deref(),
                    provider,
                    provider_id,
                )
                .await
            }
            Err(error) => {
                let retry = match error {
                    SendError::Transient(_) if delivery.attempts < self.max_attempts => {
                        Some(domain::retry_pause(delivery.attempts as u32))
                    }
                    _ => None,
                };
                if retry.is_some() {
                    tracing::warn!(%error, "delivery failed; will retry");
                } else {
                    tracing::error!(%error, "delivery failed for good");
                }
                repo::mark_failed_attempt(
                    &self.pool,
                    delivery.notification_id,
                    delivery.channel,
                    &error.to_string(),
                    retry,
                )
                .await
            }
        };
        let result = match (&outcome, &recorded) {
            (_, Err(_)) => "unrecorded",
            (Ok(_), _) => "sent",
            (Err(_), _) => "failed",
        };
        if let Err(error) = recorded {
            // The lease runs out and the delivery is claimed again.
            tracing::warn!(%error, "recording a delivery outcome failed");
        }
        metrics::counter!("notification_deliveries_total", "channel" => channel, "outcome" => result)
            .increment(1);
        metrics::histogram!("notification_delivery_duration_seconds", "channel" => channel)
            .record(started.elapsed().as_secs_f64());
    }

    /// Sends; answers (destination, provider, provider's id).
    async fn send(
        &self,
        delivery: &DueDelivery,
    ) -> Result<(Option<String>, String, String), SendError> {
        match delivery.channel {
            Channel::Push => {
                let view = NotificationView {
                    id: delivery.notification_id,
                    seq: delivery.seq,
                    kind: delivery.kind.clone(),
                    title: delivery.subject.clone(),
                    body: delivery.body.clone(),
                    data: delivery.data.clone(),
                    created_at: delivery.created_at,
                    read_at: None,
                };
                let payload =
                    serde_json::to_vec(&view).map_err(|e| SendError::Permanent(e.to_string()))?;
                let channel = push_channel(&self.push_prefix, delivery.user_id);
                let listeners = Fanout::publish(&self.redis, &channel, &payload)
                    .await
                    .map_err(|e| SendError::Transient(e.to_string()))?;
                Ok((None, "redis".into(), format!("{listeners} subscriber(s)")))
            }
            Channel::Email => {
                let mailer = self
                    .mailer
                    .as_ref()
                    .ok_or_else(|| SendError::Permanent("no SMTP server is configured".into()))?;
                let to = self.email_address(delivery).await?;
                let reply = mailer
                    .send(&OutgoingEmail {
                        to: &to,
                        subject: &delivery.subject,
                        text: &delivery.body,
                        html: delivery.html.as_deref(),
                        notification_id: &delivery.notification_id.to_string(),
                    })
                    .await?;
                Ok((Some(to), "smtp".into(), reply))
            }
            Channel::Sms => {
                let to = delivery
                    .destination
                    .clone()
                    .ok_or_else(|| SendError::Permanent("no phone number".into()))?;
                let receipt = self.sms.send(&to, &delivery.body).await?;
                Ok((Some(to), receipt.provider, receipt.message_id))
            }
        }
    }

    async fn email_address(&self, delivery: &DueDelivery) -> Result<String, SendError> {
        if let Some(address) = &delivery.destination {
            return Ok(address.clone());
        }
        let transient = |e: sqlx::Error| SendError::Transient(e.to_string());
        if let Some(address) = repo::recipient_email(&self.pool, delivery.user_id)
            .await
            .map_err(transient)?
        {
            return Ok(address);
        }
        let directory = self.directory.as_ref().ok_or_else(|| {
            SendError::Permanent("no e-mail address known and no auth peer configured".into())
        })?;
        let (email, first_name) = directory.email(delivery.user_id).await?;
        let mut connection = self.pool.acquire().await.map_err(transient)?;
        repo::learn_contact(
            &mut connection,
            delivery.user_id,
            &Contact {
                email: Some(&email),
                first_name: Some(&first_name),
                fallback_phone: None,
            },
        )
        .await
        .map_err(transient)?;
        Ok(email)
    }
}
