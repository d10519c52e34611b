//! Payment use cases: intents, refunds, webhooks, and what the admin analytics read.

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use commerce_messaging::outbox::{self, NewEvent};
use commerce_proto::common::v1::Money;
use commerce_proto::payment::v1 as pb;
use commerce_runtime::ApiError;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{self, Charge, Invalid, PaymentStatus, WebhookKind};
use crate::gateway::{
    GatewayError, Gateways, OFFLINE_SIGNATURE_HEADER, OfflineEvent, WebhookError,
};
use crate::repository::{self as repo, Payment, Refund, StatsRow};

pub const TOPIC: &str = "commerce.payment.events";

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] commerce_messaging::MessagingError),
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            PaymentError::NotFound(_) => ApiError::not_found(error.to_string()),
            PaymentError::Forbidden(_) => ApiError::forbidden(error.to_string()),
            PaymentError::Conflict(_) => ApiError::conflict(error.to_string()),
            PaymentError::Gateway(GatewayError::NotConfigured(_)) => {
                ApiError::not_found(error.to_string())
            }
            PaymentError::Webhook(WebhookError::Payload(_)) => {
                ApiError::invalid("body", error.to_string())
            }
            PaymentError::Webhook(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                error.to_string(),
            ),
            PaymentError::Gateway(_) => ApiError::unavailable(2, error.to_string()),
            PaymentError::Storage(_) | PaymentError::Outbox(_) => ApiError::storage(&error),
        }
    }
}

/// Counts and amounts of analytics rows grouped by `key`, per currency:
/// `{key: {currency: {"count": n, "amount": "…", "refunded": "…"}}}`.
pub fn totals_by(rows: &[StatsRow], key: impl Fn(&StatsRow) -> String) -> serde_json::Value {
    use std::collections::BTreeMap;
    let mut totals: BTreeMap<String, BTreeMap<String, (i64, Decimal, Decimal)>> = BTreeMap::new();
    for row in rows {
        let entry = totals
            .entry(key(row))
            .or_default()
            .entry(row.currency.clone())
            .or_default();
        entry.0 += row.count;
        entry.1 += row.amount;
        entry.2 += row.refunded;
    }
    serde_json::to_value(
        totals
            .into_iter()
            .map(|(group, currencies)| {
                let currencies: BTreeMap<String, serde_json::Value> = currencies
                    .into_iter()
                    .map(|(currency, (count, amount, refunded))| {
                        (
                            currency,
                            serde_json::json!({
                                "count": count,
                                "amount": commerce_runtime::api::money_scale(amount).to_string(),
                                "refunded": commerce_runtime::api::money_scale(refunded).to_string(),
                            }),
                        )
                    })
                    .collect();
                (group, currencies)
            })
            .collect::<BTreeMap<_, _>>(),
    )
    .unwrap_or_default()
}

/// What a webhook delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    Applied,
    /// Seen before: nothing changed.
    Duplicate,
    /// Authentic, but about nothing we act on (an unknown payment, an event type we ignore,
    /// a transition that already happened).
    Ignored,
    /// Authentic, but reports a success for other money than the intent asked for: logged,
    /// counted, kept in the payment's history, and not applied.
    Refused,
}

#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub user_id: Uuid,
    /// Admin or support: sees every payment.
    pub staff: bool,
    /// Admin: may also act on any payment (support staff only read).
    pub admin: bool,
}

/// A payment with what happened to it, for its owner and staff.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Uuid,
    pub gateway: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub status: &'static str,
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded_amount: Decimal,
    pub created_at: DateTime<Utc>,
    pub history: Vec<HistoryEntry>,
    pub refunds: Vec<Refund>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub status: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundAnswer {
    pub refund_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub status: String,
    pub payment_status: String,
}

#[derive(Clone)]
pub struct PaymentService {
    pool: PgPool,
    gateways: Arc<Gateways>,
}

fn money(amount: Decimal, currency: &str) -> Money {
    Money {
        amount: commerce_runtime::api::money_scale(amount).to_string(),
        currency: currency.to_owned(),
    }
}

async fn publish<M: prost::Message + prost::Name>(
    connection: &mut PgConnection,
    order_id: Uuid,
    message: &M,
) -> Result<(), PaymentError> {
    outbox::enqueue(
        connection,
        NewEvent::of(TOPIC, order_id.to_string(), message),
    )
    .await?;
    Ok(())
}

impl PaymentService {
    pub fn new(pool: PgPool, gateways: Gateways) -> Self {
        Self {
            pool,
            gateways: Arc::new(gateways),
        }
    }

    /// The gateways a shopper can choose at checkout, with what the browser needs.
    pub fn offered_gateways(&self) -> Vec<(&'static str, crate::gateway::BrowserFlow)> {
        self.gateways.offered()
    }

    /// One intent per order: a repeated call with the same charge and gateway returns it.
    #[tracing::instrument(skip_all, fields(order = %order_id, gateway))]
    pub async fn create_intent(
        &self,
        order_id: Uuid,
        user_id: Uuid,
        charge: Charge,
        gateway: &str,
    ) -> Result<Payment, PaymentError> {
        let gateway_name = gateway.trim().to_lowercase();
        let mut tx = self.pool.begin().await?;
        if let Some(existing) = repo::lock_order(&mut tx, order_id).await? {
            if existing.amount == charge.amount
                && existing.currency == charge.currency
                && existing.gateway == gateway_name
            {
                return Ok(existing);
            }
            return Err(PaymentError::Conflict(format!(
                "order {order_id} already has a payment of {} {} with {}",
                existing.amount, existing.currency, existing.gateway
            )));
        }
        let gateway = self.gateways.get(&gateway_name)?;
        // The order id is the provider-side idempotency key: a crash after the provider
        // answered but before this commit gets the same intent on retry.
        let intent = gateway
            .create_intent(&charge, &order_id.to_string())
            .await?;
        let payment = Payment {
            id: Uuid::now_v7(),
            order_id,
            user_id,
            gateway: gateway_name,
            amount: charge.amount,
            currency: charge.currency,
            status: PaymentStatus::RequiresPayment,
            provider_reference: intent.reference,
            client_secret: intent.client_secret,
            refunded_amount: Decimal::ZERO,
            revision: 0,
            created_at: Utc::now(),
        };
        repo::insert(&mut tx, &payment).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Re-prices an unpaid payment: the current intent is cancelled at the gateway and a
    /// new one opened for `charge` under `revision`. Idempotent per revision; a paid or
    /// cancelled payment is a conflict (the caller's change comes too late).
    #[tracing::instrument(skip_all, fields(order = %order_id, revision))]
    pub async fn replace_intent(
        &self,
        order_id: Uuid,
        charge: Charge,
        revision: i32,
    ) -> Result<Payment, PaymentError> {
        if revision < 1 {
            return Err(PaymentError::Invalid(Invalid {
                field: "revision",
                message: "must be 1 or more".to_owned(),
            }));
        }
        let mut tx = self.pool.begin().await?;
        let payment = repo::lock_order(&mut tx, order_id)
            .await?
            .ok_or_else(|| PaymentError::NotFound(format!("payment of order {order_id}")))?;
        if payment.revision >= revision {
            if payment.revision == revision && payment.amount == charge.amount {
                return Ok(payment);
            }
            return Err(PaymentError::Conflict(format!(
                "order {order_id} is already at revision {} ({} {})",
                payment.revision, payment.amount, payment.currency
            )));
        }
        if !matches!(
            payment.status,
            PaymentStatus::RequiresPayment | PaymentStatus::Failed
        ) {
            return Err(PaymentError::Conflict(format!(
                "the payment of order {order_id} is {}; it can no longer be re-priced",
                payment.status.as_str()
            )));
        }
        if payment.currency != charge.currency {
            return Err(PaymentError::Invalid(Invalid {
                field: "amount.currency",
                message: format!("must stay {}", payment.currency),
            }));
        }
        let gateway = self.gateways.get(&payment.gateway)?;
        // Cancelled first: once it is, the old intent cannot be paid any more, so the
        // customer never pays the old and the new price.
        gateway.cancel_intent(&payment.provider_reference).await?;
        let intent = gateway
            .create_intent(&charge, &format!("{order_id}:r{revision}"))
            .await?;
        repo::replace_intent(
            &mut tx,
            &payment,
            charge.amount,
            revision,
            &intent.reference,
            &intent.client_secret,
        )
        .await?;
        tx.commit().await?;
        Ok(Payment {
            amount: charge.amount,
            revision,
            status: PaymentStatus::RequiresPayment,
            provider_reference: intent.reference,
            client_secret: intent.client_secret,
            ..payment
        })
    }

    /// Cancels an unpaid intent; `None` when the order never had one.
    #[tracing::instrument(skip_all, fields(order = %order_id))]
    pub async fn cancel_intent(
        &self,
        order_id: Uuid,
    ) -> Result<Option<PaymentStatus>, PaymentError> {
        let mut tx = self.pool.begin().await?;
        let Some(payment) = repo::lock_order(&mut tx, order_id).await? else {
            return Ok(None);
        };
        match payment.status {
            PaymentStatus::Canceled => return Ok(Some(PaymentStatus::Canceled)),
            status if !status.cancellable() => {
                return Err(PaymentError::Conflict(format!(
                    "the payment of order {order_id} is {}; refund it instead",
                    status.as_str()
                )));
            }
            _ => {}
        }
        self.gateways
            .get(&payment.gateway)?
            .cancel_intent(&payment.provider_reference)
            .await?;
        repo::set_status(
            &mut tx,
            payment.id,
            PaymentStatus::Canceled,
            "canceled by the order",
        )
        .await?;
        tx.commit().await?;
        Ok(Some(PaymentStatus::Canceled))
    }

    /// Refunds all (`requested` = None) or part of an order's paid payment. The same `key`
    /// always gets the first answer; the provider gets the key too, so a refund retried
    /// after a crash is made once there as well.
    #[tracing::instrument(skip_all, fields(order = %order_id))]
    pub async fn refund(
        &self,
        order_id: Uuid,
        requested: Option<Charge>,
        reason: &str,
        key: &str,
    ) -> Result<RefundAnswer, PaymentError> {
        let key = key.trim();
        if key.is_empty() || key.len() > 255 {
            return Err(Invalid {
                field: "idempotency_key",
                message: "must be 1 to 255 characters".to_owned(),
            }
            .into());
        }
        let mut tx = self.pool.begin().await?;
        let payment = repo::lock_order(&mut tx, order_id)
            .await?
            .ok_or_else(|| PaymentError::NotFound(format!("a payment for order {order_id}")))?;
        if let Some((_, response)) = repo::idempotent_response(&mut *tx, key).await? {
            return serde_json::from_value(response)
                .map_err(|error| PaymentError::Conflict(format!("stored answer: {error}")));
        }
        if !matches!(
            payment.status,
            PaymentStatus::Succeeded | PaymentStatus::Refunded
        ) {
            return Err(PaymentError::Conflict(format!(
                "the payment of order {order_id} is {}; only paid payments are refunded",
                payment.status.as_str()
            )));
        }
        if let Some(charge) = &requested
            && charge.currency != payment.currency
        {
            return Err(Invalid {
                field: "amount.currency",
                message: format!("the payment is in {}", payment.currency),
            }
            .into());
        }
        let requested_amount = requested.map(|charge| charge.amount);
        let amount =
            domain::refund_amount(payment.amount, payment.refunded_amount, requested_amount)
                .map_err(|invalid| {
                    // An amount the caller chose is its input; nothing left at all is the state.
                    if requested_amount.is_some() && payment.refunded_amount < payment.amount {
                        PaymentError::Invalid(invalid)
                    } else {
                        PaymentError::Conflict(invalid.message)
                    }
                })?;
        let receipt = self
            .gateways
            .get(&payment.gateway)?
            .refund(
                &payment.provider_reference,
                &Charge {
                    amount,
                    currency: payment.currency.clone(),
                },
                key,
            )
            .await?;
        let refund = Refund {
            id: Uuid::now_v7(),
            payment_id: payment.id,
            amount,
            currency: payment.currency.clone(),
            status: receipt.status.clone(),
            reason: reason.to_owned(),
            provider_reference: receipt.reference,
        };
        repo::insert_refund(&mut tx, &refund).await?;
        let mut payment_status = payment.status;
        if refund.status != "failed" {
            repo::add_refunded(&mut tx, payment.id, amount).await?;
            if payment.refunded_amount + amount >= payment.amount {
                payment_status = PaymentStatus::Refunded;
                repo::set_status(&mut tx, payment.id, payment_status, reason).await?;
            }
        }
        if refund.status == "succeeded" {
            self.announce_refund(&mut tx, &payment, &refund, payment.refunded_amount + amount)
                .await?;
        }
        let answer = RefundAnswer {
            refund_id: refund.id,
            amount,
            currency: payment.currency.clone(),
            status: refund.status,
            payment_status: payment_status.as_str().to_owned(),
        };
        let stored = serde_json::to_value(&answer)
            .map_err(|error| PaymentError::Conflict(error.to_string()))?;
        repo::remember_response(&mut tx, key, "refund", &stored).await?;
        tx.commit().await?;
        tracing::info!(refund = %answer.refund_id, %amount, "refund made");
        Ok(answer)
    }

    async fn announce_refund(
        &self,
        connection: &mut PgConnection,
        payment: &Payment,
        refund: &Refund,
        refunded_total: Decimal,
    ) -> Result<(), PaymentError> {
        let event = pb::PaymentRefunded {
            payment_id: payment.id.to_string(),
            order_id: payment.order_id.to_string(),
            user_id: payment.user_id.to_string(),
            refund_id: refund.id.to_string(),
            amount: Some(money(refund.amount, &refund.currency)),
            full: refunded_total >= payment.amount,
            reason: refund.reason.clone(),
        };
        publish(connection, payment.order_id, &event).await
    }

    /// A provider's webhook delivery: authenticated before anything in it is read, applied
    /// once however often it is delivered.
    #[tracing::instrument(skip_all, fields(gateway = gateway_name))]
    pub async fn webhook(
        &self,
        gateway_name: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookOutcome, PaymentError> {
        let gateway = self.gateways.get(gateway_name)?;
        let event = gateway.verify_webhook(headers, body)?;
        let mut tx = self.pool.begin().await?;
        if !repo::record_webhook(&mut tx, gateway_name, &event.id, &event.event_type).await? {
            tracing::info!(event_id = %event.id, "webhook replayed; ignored");
            return Ok(WebhookOutcome::Duplicate);
        }
        let reference = match &event.kind {
            WebhookKind::PaymentSucceeded { reference, .. }
            | WebhookKind::PaymentFailed { reference, .. } => reference,
            WebhookKind::RefundSucceeded {
                payment_reference, ..
            }
            | WebhookKind::RefundFailed {
                payment_reference, ..
            }
            | WebhookKind::Dispute {
                payment_reference, ..
            } => payment_reference,
            WebhookKind::Other => {
                tx.commit().await?;
                return Ok(WebhookOutcome::Ignored);
            }
        };
        let Some((order_id, asked)) =
            repo::intent_of_reference(&mut *tx, gateway_name, reference).await?
        else {
            tracing::warn!(event_id = %event.id, %reference, "webhook for an unknown payment");
            tx.commit().await?;
            return Ok(WebhookOutcome::Ignored);
        };
        let payment = repo::lock_order(&mut tx, order_id)
            .await?
            .ok_or_else(|| PaymentError::NotFound(format!("payment {reference}")))?;
        repo::link_webhook(&mut tx, gateway_name, &event.id, payment.id).await?;
        let reason = format!("{} {}", event.event_type, event.id);
        let outcome = match event.kind {
            WebhookKind::PaymentSucceeded {
                paid: Some(paid), ..
            } if !paid.same_as(asked, &payment.currency) => {
                let asked = format!("{asked} {}", payment.currency);
                let reported = format!("{} {}", paid.amount, paid.currency);
                tracing::error!(
                    event_id = %event.id,
                    payment = %payment.id,
                    %asked,
                    %reported,
                    "a provider reported success for other money than the intent asked for; not applied"
                );
                metrics::counter!("payment_webhooks_refused_total",
                    "gateway" => gateway_name.to_owned(), "reason" => "amount_mismatch")
                .increment(1);
                repo::record_status(
                    &mut tx,
                    payment.id,
                    payment.status,
                    &format!("refused {reason}: reported {reported}, the intent asked {asked}"),
                )
                .await?;
                WebhookOutcome::Refused
            }
            WebhookKind::PaymentSucceeded { .. } => match payment.status {
                // A success after a cancel is money taken all the same: it is recorded
                // and announced, and the order decides (it refunds an expired order).
                PaymentStatus::RequiresPayment
                | PaymentStatus::Failed
                | PaymentStatus::Canceled => {
                    repo::set_status(&mut tx, payment.id, PaymentStatus::Succeeded, &reason)
                        .await?;
                    let message = pb::PaymentSucceeded {
                        payment_id: payment.id.to_string(),
                        order_id: order_id.to_string(),
                        user_id: payment.user_id.to_string(),
                        amount: Some(money(payment.amount, &payment.currency)),
                        gateway: payment.gateway.clone(),
                    };
                    publish(&mut tx, order_id, &message).await?;
                    WebhookOutcome::Applied
                }
                PaymentStatus::Succeeded | PaymentStatus::Refunded => WebhookOutcome::Ignored,
            },
            WebhookKind::PaymentFailed { reason: why, .. } => match payment.status {
                PaymentStatus::RequiresPayment => {
                    repo::set_status(&mut tx, payment.id, PaymentStatus::Failed, &reason).await?;
                    let message = pb::PaymentFailed {
                        payment_id: payment.id.to_string(),
                        order_id: order_id.to_string(),
                        user_id: payment.user_id.to_string(),
                        reason: why,
                    };
                    publish(&mut tx, order_id, &message).await?;
                    WebhookOutcome::Applied
                }
                _ => WebhookOutcome::Ignored,
            },
            WebhookKind::RefundSucceeded {
                refund_reference, ..
            } => match repo::settle_refund(&mut tx, &refund_reference, "succeeded").await? {
                Some(refund) => {
                    self.announce_refund(&mut tx, &payment, &refund, payment.refunded_amount)
                        .await?;
                    WebhookOutcome::Applied
                }
                None => WebhookOutcome::Ignored,
            },
            WebhookKind::RefundFailed {
                refund_reference, ..
            } => match repo::settle_refund(&mut tx, &refund_reference, "failed").await? {
                Some(refund) => {
                    // The promised money did not go back: it counts as paid again.
                    repo::add_refunded(&mut tx, payment.id, -refund.amount).await?;
                    if payment.status == PaymentStatus::Refunded {
                        repo::set_status(&mut tx, payment.id, PaymentStatus::Succeeded, &reason)
                            .await?;
                    }
                    WebhookOutcome::Applied
                }
                None => WebhookOutcome::Ignored,
            },
            WebhookKind::Dispute {
                dispute_reference,
                reason: why,
                amount,
                status,
                ..
            } => {
                repo::record_dispute(
                    &mut tx,
                    payment.id,
                    &dispute_reference,
                    &why,
                    amount,
                    &status,
                )
                .await?;
                tracing::warn!(payment = %payment.id, dispute = %dispute_reference, "payment disputed");
                WebhookOutcome::Applied
            }
            WebhookKind::Other => WebhookOutcome::Ignored,
        };
        tx.commit().await?;
        tracing::info!(event_id = %event.id, event_type = %event.event_type, ?outcome, "webhook handled");
        Ok(outcome)
    }

    async fn visible_payment(&self, viewer: Viewer, id: Uuid) -> Result<Payment, PaymentError> {
        match repo::payment(&self.pool, id).await? {
            Some(payment) if viewer.staff || payment.user_id == viewer.user_id => Ok(payment),
            _ => Err(PaymentError::NotFound(format!("payment {id}"))),
        }
    }

    /// The offline gateway's "customer pays" (or fails to): a signed delivery through the
    /// same webhook path a real provider uses.
    pub async fn pay_offline(
        &self,
        viewer: Viewer,
        id: Uuid,
        succeed: bool,
    ) -> Result<WebhookOutcome, PaymentError> {
        let offline = self
            .gateways
            .offline()
            .ok_or_else(|| GatewayError::NotConfigured("offline".to_owned()))?;
        let payment = self.visible_payment(viewer, id).await?;
        if payment.user_id != viewer.user_id && !viewer.admin {
            return Err(PaymentError::Forbidden(format!(
                "only the customer who owes payment {id}, or an admin, may settle it; support staff may only read it"
            )));
        }
        if payment.gateway != "offline" {
            return Err(PaymentError::Conflict(format!(
                "payment {id} goes through {}, not the offline gateway",
                payment.gateway
            )));
        }
        if !matches!(
            payment.status,
            PaymentStatus::RequiresPayment | PaymentStatus::Failed
        ) {
            return Err(PaymentError::Conflict(format!(
                "payment {id} is {}; there is nothing to pay",
                payment.status.as_str()
            )));
        }
        let event = OfflineEvent {
            id: format!("evt_{}", Uuid::now_v7().simple()),
            event_type: if succeed {
                "payment.succeeded"
            } else {
                "payment.failed"
            }
            .to_owned(),
            reference: payment.provider_reference,
            reason: if succeed {
                String::new()
            } else {
                "card declined (offline gateway)".to_owned()
            },
        };
        let (signature, body) = offline.signed_event(&event);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            OFFLINE_SIGNATURE_HEADER,
            signature
                .parse()
                .map_err(|_| PaymentError::Conflict("unsignable event".to_owned()))?,
        );
        self.webhook("offline", &headers, &body).await
    }

    pub async fn view(&self, viewer: Viewer, id: Uuid) -> Result<PaymentView, PaymentError> {
        let payment = self.visible_payment(viewer, id).await?;
        let history = repo::status_history(&self.pool, id)
            .await?
            .into_iter()
            .map(|(status, reason, at)| HistoryEntry { status, reason, at })
            .collect();
        // Money shows with its two decimals, as everywhere else in the API.
        let scale = commerce_runtime::api::money_scale;
        let refunds = repo::refunds(&self.pool, id)
            .await?
            .into_iter()
            .map(|refund| Refund {
                amount: scale(refund.amount),
                ..refund
            })
            .collect();
        Ok(PaymentView {
            id: payment.id,
            order_id: payment.order_id,
            gateway: payment.gateway,
            amount: scale(payment.amount),
            currency: payment.currency,
            status: payment.status.as_str(),
            refunded_amount: scale(payment.refunded_amount),
            created_at: payment.created_at,
            history,
            refunds,
        })
    }

    pub async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StatsRow>, PaymentError> {
        if to <= from {
            return Err(Invalid {
                field: "to",
                message: "must be after from".to_owned(),
            }
            .into());
        }
        Ok(repo::stats(&self.pool, from, to).await?)
    }

    /// Money taken, refunded and kept per day, gateway and currency in `[from, to)`.
    pub async fn report(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::report::ReportRow>, PaymentError> {
        Ok(repo::report_rows(&self.pool, from, to)
            .await?
            .into_iter()
            .map(crate::report::ReportRow::from)
            .collect())
    }
}
