//! Leader election on a `coordination.k8s.io/v1` Lease, so several operator replicas can
//! run and only one reconciles. Writes carry the Lease's resourceVersion: two candidates
//! racing for an expired lease cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

pub struct LeaderLease {
    api: Api<Lease>,
    settings: LeaseSettings,
}

/// Whether `holder` may take the lease at `now`.
pub fn can_take(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return true;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    match &spec.renew_time {
        Some(MicroTime(renewed)) => *renewed + SignedDuration::from_secs(seconds) < now,
        None => true,
    }
}

impl LeaderLease {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let same_holder = previous.and_then(|spec| spec.holder_identity.as_deref())
            == Some(self.settings.identity.as_str());
        let transitions = previous
            .and_then(|spec| spec.lease_transitions)
            .unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.duration.as_secs() as i32),
            acquire_time: if same_holder {
                previous.and_then(|spec| spec.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if same_holder {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to take or renew the lease. `Ok(true)`: this process leads.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        match self.api.get_opt(&self.settings.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
                    Err(error) => Err(error),
                }
            }
            Some(lease) => {
                if !can_take(&lease, &self.settings.identity, now) {
                    return Ok(false);
                }
                let mut next = lease.clone();
                next.spec = Some(self.spec(lease.spec.as_ref(), now));
                match self
                    .api
                    .replace(&self.settings.name, &PostParams::default(), &next)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) {
        let retry = self.settings.duration / 3;
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(identity = self.settings.identity, "leading");
                    return;
                }
                Ok(false) => tracing::debug!("another replica leads; waiting"),
                Err(error) => tracing::warn!(%error, "leader election"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the lease until it cannot; returns when leadership is lost, so the caller
    /// stops reconciling (and the process exits, to start again as a candidate).
    pub async fn hold(&self) {
        let renew = self.settings.duration / 3;
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew).await;
            match self.try_acquire().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::warn!("the lease was taken by another replica");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not renew the lease");
                    if last_renewed.elapsed() >= self.settings.duration {
                        return;
                    }
                }
            }
        }
    }
}
