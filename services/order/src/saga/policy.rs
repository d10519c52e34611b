//! The saga policy: the fields a `SagaPolicy` resource carries, read from
//! `services.order.saga`.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

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
    /// How long a placed order waits for payment before it expires.
    #[serde(default = "default_payment_window", with = "humantime_serde")]
    pub payment_window: Duration,
    /// When, after placement, an unpaid order's owner is reminded.
    #[serde(default = "default_reminders")]
    pub reminders: Vec<humantime_serde::Serde<Duration>>,
}

impl Default for SagaPolicy {
    fn default() -> Self {
        Self {
            engine: Engine::default(),
            step: StepPolicy::default(),
            steps: HashMap::new(),
            lease: default_lease(),
            recovery_interval: default_recovery_interval(),
            payment_window: default_payment_window(),
            reminders: default_reminders(),
        }
    }
}

fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_recovery_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_payment_window() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}
fn default_reminders() -> Vec<humantime_serde::Serde<Duration>> {
    [4, 12, 22]
        .into_iter()
        .map(|hours| Duration::from_secs(hours * 60 * 60).into())
        .collect()
}

/// The policy in force, shared by every saga of the process. A reload (the `saga_file`
/// a SagaPolicy resource renders) replaces it; each step reads it when it starts, so
/// running sagas take the new timeouts and retries from their next step on.
#[derive(Debug, Clone)]
pub struct SharedPolicy(std::sync::Arc<std::sync::RwLock<std::sync::Arc<SagaPolicy>>>);

impl SharedPolicy {
    pub fn new(policy: SagaPolicy) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(policy),
        )))
    }

    pub fn current(&self) -> std::sync::Arc<SagaPolicy> {
        self.0.read().expect("policy lock poisoned").clone()
    }

    pub fn replace(&self, policy: SagaPolicy) {
        *self.0.write().expect("policy lock poisoned") = std::sync::Arc::new(policy);
    }
}

impl From<std::sync::Arc<SagaPolicy>> for SharedPolicy {
    fn from(policy: std::sync::Arc<SagaPolicy>) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(policy)))
    }
}

impl SagaPolicy {
    pub fn for_step(&self, name: &str) -> StepPolicy {
        self.steps.get(name).copied().unwrap_or(self.step)
    }

    pub fn reminder_offsets(&self) -> Vec<Duration> {
        self.reminders.iter().map(|offset| **offset).collect()
    }

    /// The first inconsistency, as (key under `services.order.saga`, message).
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
        if self.payment_window.is_zero() {
            return Err((
                "payment_window".to_owned(),
                "must be more than 0".to_owned(),
            ));
        }
        if let Some(late) = self
            .reminders
            .iter()
            .find(|offset| ***offset >= self.payment_window)
        {
            return Err((
                "reminders".to_owned(),
                format!(
                    "{} is not before the payment window ({})",
                    humantime_serde::re::humantime::format_duration(**late),
                    humantime_serde::re::humantime::format_duration(self.payment_window)
                ),
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
    fn defaults_follow_the_original_schedule() {
        let policy = SagaPolicy::default();
        let hours: Vec<u64> = policy
            .reminder_offsets()
            .iter()
            .map(|offset| offset.as_secs() / 3600)
            .collect();
        assert_eq!(hours, vec![4, 12, 22]);
        assert_eq!(policy.payment_window, Duration::from_secs(24 * 3600));
        assert_eq!(policy.engine, Engine::Postgres);
        assert!(policy.validate(&["reserve_stock"]).is_ok());
    }

    #[test]
    fn per_step_policies_override_the_default() {
        let policy = parse(
            r#"{"step": {"attempts": 5}, "steps": {"reserve_stock": {"timeout": "2s", "attempts": 1}}, "reminders": ["1m", "2m"], "payment_window": "3m"}"#,
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
        let late = parse(r#"{"reminders": ["25h"]}"#);
        let (key, message) = late.validate(&[]).unwrap_err();
        assert_eq!(key, "reminders");
        assert!(message.contains("1day 1h is not before"), "{message}");
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
