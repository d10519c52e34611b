//! `services.payment` in the configuration: the token issuer and each payment gateway's settings.

use std::time::Duration;

use serde::Deserialize;

use crate::stripe::StripeSettings;
use crate::xendit::XenditSettings;

/// `services.payment` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// Where the auth service publishes its keys.
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default)]
    pub offline: OfflineSettings,
    /// Stripe credentials; without them the `stripe` gateway is not offered.
    pub stripe: Option<StripeSettings>,
    /// Xendit credentials; without them the `xendit` gateway is not offered.
    pub xendit: Option<XenditSettings>,
    /// How old a signed webhook delivery may be.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub webhook_tolerance: Duration,
}

/// The offline gateway settles a payment when the customer presses "pay": no money moves.
/// It exists for local development and tests, so it is off unless `enabled` says so.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineSettings {
    #[serde(default)]
    pub enabled: bool,
    /// Signs the offline gateway's webhook deliveries; random per process when unset.
    pub webhook_secret: Option<commerce_runtime::Secret>,
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}

fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

#[cfg(test)]
mod tests {
    use commerce_runtime::ExposeSecret;

    use super::*;

    #[test]
    fn settings_never_print_their_credentials() {
        let credentials = [
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "whsec_stripe_signing_secret_value",
            "xnd_production_secret_key_value",
            "xendit-callback-verification-token",
            "offline-webhook-secret-of-this-shop-0123",
        ];
        let settings: PaymentSettings = serde_json::from_value(serde_json::json!({
            "jwks_url": "http://auth/.well-known/jwks.json",
            "offline": { "enabled": true, "webhook_secret": credentials[4] },
            "stripe": { "secret_key": credentials[0], "webhook_secret": credentials[1] },
            "xendit": { "secret_key": credentials[2], "callback_token": credentials[3] },
        }))
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(printed.contains("jwks.json"), "{printed}");
        for credential in credentials {
            assert!(!printed.contains(credential), "{printed}");
        }
        // The values are all there for the code that needs them.
        let stripe = settings.stripe.unwrap();
        assert_eq!(stripe.secret_key.expose_secret(), credentials[0]);
        assert_eq!(
            settings.offline.webhook_secret.unwrap().expose(),
            credentials[4]
        );
    }
}
