//! The saga policy: how the engines run steps (timeouts, attempts, backoff, leases). A
//! service's policy section or file carries this part and its own fields beside it (the
//! order service's payment window and reminders); [`ServicePolicy`] joins the two.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Postgres,
    Temporal,
}

/// How one step is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepPolicy {
    /// One attempt's limit.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts before the step counts as failed (and the saga compensates).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Pause after the first failed attempt; doubles each time up to `max_backoff`.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for StepPolicy {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl StepPolicy {
    /// The pause after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaPolicy {
    #[serde(default)]
    pub engine: Engine,
    /// The policy of every step without its own entry in `steps`.
    #[serde(default)]
    pub step: StepPolicy,
    /// Per-step policies, by step name.
    #[serde(default)]
    pub steps: HashMap<String, StepPolicy>,
    /// How long a process owns a saga it drives; a crashed owner's sagas are resumed by
    /// another process (or the restarted one) after this.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// How often unfinished sagas whose owner is gone are looked for.
    #[serde(default = "default_recovery_interval", with = "humantime_serde")]
    pub recovery_interval: Duration,
}

/// The keys of [`SagaPolicy`], for services that read it beside fields of their own.
pub const SAGA_POLICY_KEYS: &[&str] = &["engine", "step", "steps", "lease", "recovery_interval"];

impl Default for SagaPolicy {
    fn default() -> Self {
        Self {
            engine: Engine::default(),
            step: StepPolicy::default(),
            steps: HashMap::new(),
            lease: default_lease(),
            recovery_interval: default_recovery_interval(),
        }
    }
}

fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_recovery_interval() -> Duration {
    Duration::from_secs(5)
}
/// A service's whole saga policy: the engines' part and the service's own fields.
pub trait ServicePolicy:
    DeserializeOwned + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// The part the engines read.
    fn saga(&self) -> Arc<SagaPolicy>;
    /// The first inconsistency, the engines' part included, as (key, message).
    fn validate(&self, step_names: &[&str]) -> Result<(), (String, String)>;
}

impl ServicePolicy for SagaPolicy {
    fn saga(&self) -> Arc<SagaPolicy> {
        Arc::new(self.clone())
    }

    fn validate(&self, step_names: &[&str]) -> Result<(), (String, String)> {
        SagaPolicy::validate(self, step_names)
    }
}

/// The policy in force, shared by every saga of the process. A reload (the `saga_file`
/// a SagaPolicy resource renders) replaces it; each step reads it when it starts, so
/// running sagas take the new timeouts and retries from their next step on.
#[derive(Debug)]
pub struct SharedPolicy<P = SagaPolicy>(Arc<RwLock<Arc<P>>>);

impl<P> Clone for SharedPolicy<P> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<P> SharedPolicy<P> {
    pub fn new(policy: P) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policy))))
    }

    pub fn current(&self) -> Arc<P> {
        self.0.read().expect("policy lock poisoned").clone()
    }

    pub fn replace(&self, policy: P) {
        *self.0.write().expect("policy lock poisoned") = Arc::new(policy);
    }
}

/// What an engine reads of the policy in force: the engines' part, whatever the service's
/// whole policy is.
pub trait PolicyView: Send + Sync + 'static {
    fn saga(&self) -> Arc<SagaPolicy>;
}

impl<P: ServicePolicy> PolicyView for SharedPolicy<P> {
    fn saga(&self) -> Arc<SagaPolicy> {
        self.current().saga()
    }
}

/// A policy that never changes.
impl PolicyView for Arc<SagaPolicy> {
    fn saga(&self) -> Arc<SagaPolicy> {
        self.clone()
    }
}

impl SagaPolicy {
    pub fn for_step(&self, name: &str) -> StepPolicy {
        self.steps.get(name).copied().unwrap_or(self.step)
    }

    /// The first inconsistency, as (key, message).
    pub fn validate(&self, step_names: &[&str]) -> Result<(), (String, String)> {
        let check_step = |key: String, policy: &StepPolicy| {
            if policy.attempts == 0 {
                return Err((format!("{key}.attempts"), "must be at least 1".to_owned()));
            }
            if policy.timeout.is_zero() {
                return Err((format!("{key}.timeout"), "must be more than 0".to_owned()));
            }
            if policy.max_backoff < policy.backoff {
                return Err((
                    format!("{key}.max_backoff"),
                    "must not be less than backoff".to_owned(),
                ));
            }
            Ok(())
        };
        check_step("step".to_owned(), &self.step)?;
        for (name, policy) in &self.steps {
            if !step_names.contains(&name.as_str()) {
                return Err((
                    format!("steps.{name}"),
                    format!("is not a step; the steps are {}", step_names.join(", ")),
                ));
            }
            check_step(format!("steps.{name}"), policy)?;
        }
        let longest_step = std::iter::once(&self.step)
            .chain(self.steps.values())
            .map(|policy| policy.timeout)
            .max()
            .unwrap_or_default();
        if self.lease <= longest_step {
            return Err((
                "lease".to_owned(),
                format!("must be longer than the longest step timeout ({longest_step:?})"),
            ));
        }
        if self.recovery_interval.is_zero() {
            return Err((
                "recovery_interval".to_owned(),
                "must be more than 0".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> SagaPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let policy = SagaPolicy::default();
        assert_eq!(policy.engine, Engine::Postgres);
        assert_eq!(policy.lease, Duration::from_secs(60));
        assert!(policy.validate(&["reserve_stock"]).is_ok());
    }

    #[test]
    fn per_step_policies_override_the_default() {
        let policy = parse(
            r#"{"step": {"attempts": 5}, "steps": {"reserve_stock": {"timeout": "2s", "attempts": 1}}}"#,
        );
        assert_eq!(policy.for_step("reserve_stock").attempts, 1);
        assert_eq!(
            policy.for_step("reserve_stock").timeout,
            Duration::from_secs(2)
        );
        assert_eq!(policy.for_step("quote_shipping").attempts, 5);
        assert!(policy.validate(&["reserve_stock"]).is_ok());
    }

    #[test]
    fn inconsistent_policies_name_the_key() {
        let unknown = parse(r#"{"steps": {"reserve": {}}}"#);
        assert_eq!(
            unknown.validate(&["reserve_stock"]).unwrap_err().0,
            "steps.reserve"
        );
        let zero = parse(r#"{"step": {"attempts": 0}}"#);
        assert_eq!(zero.validate(&[]).unwrap_err().0, "step.attempts");
        let short_lease = parse(r#"{"lease": "5s"}"#);
        assert_eq!(short_lease.validate(&[]).unwrap_err().0, "lease");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = StepPolicy {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..StepPolicy::default()
        };
        let delays: Vec<u128> = (1..=4)
            .map(|attempt| policy.delay_after(attempt).as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 350, 350]);
    }
}
