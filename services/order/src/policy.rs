//! The order sagas' policy: the engines' part (`commerce_saga::SagaPolicy`) and the
//! payment schedule, read as one from `services.order.saga` or the policy file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use commerce_saga::{SAGA_POLICY_KEYS, SagaPolicy, ServicePolicy};
use serde::Deserialize;

/// The order sagas' policy (`services.order.saga`, or the file a SagaPolicy resource
/// renders): how the engines run steps, and the payment schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderPolicy {
    #[serde(flatten)]
    pub saga: Arc<SagaPolicy>,
    /// How long a placed order waits for payment before it expires.
    #[serde(default = "default_payment_window", with = "humantime_serde")]
    pub payment_window: Duration,
    /// When, after placement, an unpaid order's owner is reminded.
    #[serde(default = "default_reminders")]
    pub reminders: Vec<humantime_serde::Serde<Duration>>,
    /// Keys neither part knows: refused by `validate`, since flattening turns serde's own
    /// refusal off.
    #[serde(flatten)]
    unknown: BTreeMap<String, serde::de::IgnoredAny>,
}

/// The order policy in force, shared by the sagas and the engines of the process.
pub type SharedOrderPolicy = commerce_saga::SharedPolicy<OrderPolicy>;

/// The keys of the payment schedule, beside the engines' `SAGA_POLICY_KEYS`.
const PAYMENT_SCHEDULE_KEYS: &[&str] = &["payment_window", "reminders"];

impl Default for OrderPolicy {
    fn default() -> Self {
        Self {
            saga: Arc::default(),
            payment_window: default_payment_window(),
            reminders: default_reminders(),
            unknown: BTreeMap::new(),
        }
    }
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

impl OrderPolicy {
    /// The engine the orders run on.
    pub fn engine(&self) -> commerce_saga::policy::Engine {
        self.saga.engine
    }

    pub fn reminder_offsets(&self) -> Vec<Duration> {
        self.reminders.iter().map(|offset| **offset).collect()
    }
}

impl ServicePolicy for OrderPolicy {
    fn saga(&self) -> Arc<SagaPolicy> {
        self.saga.clone()
    }

    fn validate(&self, step_names: &[&str]) -> Result<(), (String, String)> {
        if let Some(key) = self.unknown.keys().next() {
            let known = [SAGA_POLICY_KEYS, PAYMENT_SCHEDULE_KEYS].concat();
            return Err((
                key.clone(),
                format!("is not a setting; the settings are {}", known.join(", ")),
            ));
        }
        self.saga.validate(step_names)?;
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

    fn policy(toml: &str) -> OrderPolicy {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn the_default_schedule_reminds_three_times_within_a_day() {
        let policy = OrderPolicy::default();
        let hours: Vec<u64> = policy
            .reminder_offsets()
            .iter()
            .map(|offset| offset.as_secs() / 3600)
            .collect();
        assert_eq!(hours, vec![4, 12, 22]);
        assert_eq!(policy.payment_window, Duration::from_secs(24 * 3600));
        assert!(ServicePolicy::validate(&policy, &["reserve_stock"]).is_ok());
    }

    #[test]
    fn both_parts_are_read_from_one_section() {
        let policy = policy(
            "payment_window = \"3m\"\nreminders = [\"1m\"]\nstep = { attempts = 5 }\nlease = \"90s\"\n",
        );
        assert_eq!(policy.payment_window, Duration::from_secs(180));
        assert_eq!(policy.saga.step.attempts, 5);
        assert_eq!(policy.saga().lease, Duration::from_secs(90));
        assert!(ServicePolicy::validate(&policy, &[]).is_ok());
    }

    #[test]
    fn inconsistent_or_unknown_keys_are_named() {
        let late = policy("reminders = [\"25h\"]\n");
        let (key, message) = ServicePolicy::validate(&late, &[]).unwrap_err();
        assert_eq!(key, "reminders");
        assert!(message.contains("1day 1h is not before"), "{message}");
        let typo = policy("payment_windw = \"1h\"\n");
        let (key, message) = ServicePolicy::validate(&typo, &[]).unwrap_err();
        assert_eq!(key, "payment_windw");
        assert!(message.contains("payment_window"), "{message}");
        let engine_part = policy("step = { attempts = 0 }\n");
        assert_eq!(
            ServicePolicy::validate(&engine_part, &[]).unwrap_err().0,
            "step.attempts"
        );
    }
}
