//! `commerce simulate`'s flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// Drive the shop through its gateway with virtual shoppers and staff, then report what
/// they saw (per-step throughput, latency percentiles, failures by status) and, with
/// `--check`, prove the shop's invariants from its databases and topics.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The shop's public entry (the REST gateway).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// MailDev's web address: shoppers sign up through the real path and confirm from
    /// the e-mail found here (`make run` starts MailDev on this address).
    #[arg(long, default_value = "http://127.0.0.1:1080")]
    pub mail: String,
    /// Closed loop: this many shoppers, each starting its next visit when the last ends.
    #[arg(long, conflicts_with = "rate")]
    pub shoppers: Option<usize>,
    /// Open loop: visits arrive at this many per second (Poisson), whatever the shop's
    /// speed; each visit's latency counts from when it was due, so a slow shop cannot
    /// hide its queue (no coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Accounts to sign up: the most visits at once. Default: the shoppers, or 50 with
    /// --rate.
    #[arg(long)]
    pub accounts: Option<usize>,
    /// How long the shoppers shop (`90s`, `5m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Seed of every random choice: the same seed makes the same visits.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// What visits are made of, as weights.
    #[arg(long, default_value = "browse=30,buy=50,cancel=10,abandon=10")]
    pub mix: Mix,
    /// Share of buying visits that apply the run's promo code.
    #[arg(long, default_value_t = 0.3, value_parser = share)]
    pub promo_share: f64,
    /// Share of orders paid by card through Stripe; the others pay through the offline
    /// gateway. The simulator then plays Stripe on `--stripe-listen` (the API the shop
    /// calls, the browser's confirmation, signed webhooks): start the shop with
    /// `services.payment.stripe` pointing there, with the same keys.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub card_share: f64,
    /// Where the simulated Stripe API listens (with --card-share).
    #[arg(long, default_value = "127.0.0.1:12111")]
    pub stripe_listen: SocketAddr,
    /// The secret key the shop must send to the simulated Stripe.
    #[arg(
        long,
        env = "COMMERCE_SIMULATE_STRIPE_SECRET_KEY",
        default_value = "sk_test_simulated",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub stripe_secret_key: SecretString,
    /// The publishable key the shop hands browsers, which confirm with it.
    #[arg(long, default_value = "pk_test_simulated")]
    pub stripe_publishable_key: String,
    /// The secret the simulated Stripe signs its webhook events with.
    #[arg(
        long,
        env = "COMMERCE_SIMULATE_STRIPE_WEBHOOK_SECRET",
        default_value = "whsec_simulated",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub stripe_webhook_secret: SecretString,
    /// The staff account that creates the promo code, restocks, ships and delivers.
    #[arg(long, default_value = "admin@commerce.local")]
    pub staff_email: String,
    /// Its password (default: the demo admin's, which `commerce seed` creates).
    #[arg(
        long,
        env = "COMMERCE_SIMULATE_STAFF_PASSWORD",
        default_value = "admin-demo-password-1",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub staff_password: SecretString,
    /// Give each shopper its own client address in `X-Forwarded-For`, as shoppers behind
    /// a load balancer have. The shop must trust it
    /// (`COMMERCE_SERVICES__GATEWAY__CLIENT_IP_HEADER=x-forwarded-for`); without it every
    /// shopper shares this machine's address and the per-address limits answer 429.
    #[arg(long)]
    pub forwarded_for: bool,
    /// The JSON report.
    #[arg(long, default_value = "simulation.json")]
    pub report: PathBuf,
    /// The chart: latency and throughput over time, and the per-step table (HTML).
    #[arg(long, default_value = "simulation.html")]
    pub chart: PathBuf,
    /// After the run, check the shop's invariants from its databases and Kafka (reads
    /// the shop's configuration, like `commerce invariants`); fail if one is broken.
    #[arg(long)]
    pub check: bool,
    /// With --check: how long the shop may take to settle (every paid order confirmed,
    /// every consumer caught up) after the shoppers stop.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// A share between 0 and 1.
fn share(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|share| (0.0..=1.0).contains(share))
        .ok_or_else(|| format!("`{raw}` is not a share between 0 and 1"))
}

impl SimulateArgs {
    /// How the run is paced.
    pub fn load(&self) -> Load {
        match (self.rate, self.shoppers) {
            (Some(per_second), _) => Load::Open { per_second },
            (None, shoppers) => Load::Closed {
                shoppers: shoppers.unwrap_or(20),
            },
        }
    }

    pub fn accounts(&self) -> usize {
        match self.load() {
            Load::Closed { shoppers } => self.accounts.unwrap_or(shoppers).max(shoppers),
            Load::Open { .. } => self.accounts.unwrap_or(50),
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum Load {
    /// Each shopper starts its next visit when the last one ends.
    Closed { shoppers: usize },
    /// Visits arrive at this rate whatever the shop does.
    Open { per_second: f64 },
}

/// A kind of visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Visit {
    /// Lists, opens and searches products.
    Browse,
    /// Fills a cart, checks out, orders and pays.
    Buy,
    /// Orders, sometimes pays, then cancels.
    Cancel,
    /// Orders and never pays: the order waits out its payment window.
    Abandon,
}

impl Visit {
    pub const ALL: [Visit; 4] = [Visit::Browse, Visit::Buy, Visit::Cancel, Visit::Abandon];

    pub fn name(self) -> &'static str {
        match self {
            Visit::Browse => "browse",
            Visit::Buy => "buy",
            Visit::Cancel => "cancel",
            Visit::Abandon => "abandon",
        }
    }
}

/// Weights of the visit kinds (`browse=30,buy=50,cancel=10,abandon=10`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mix(pub Vec<(Visit, u32)>);

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut weights = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not kind=weight"))?;
            let visit = Visit::ALL
                .into_iter()
                .find(|visit| visit.name() == name.trim())
                .ok_or_else(|| format!("`{name}` is not a visit (browse, buy, cancel, abandon)"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("the weight of `{name}` is not a whole number"))?;
            if weights.iter().any(|(seen, _)| *seen == visit) {
                return Err(format!("`{name}` is given twice"));
            }
            weights.push((visit, weight));
        }
        if weights.iter().all(|(_, weight)| *weight == 0) {
            return Err("at least one visit needs a weight above 0".to_owned());
        }
        Ok(Mix(weights))
    }
}

impl Mix {
    /// The visit a number in `0..total()` falls on.
    pub fn pick(&self, mut ticket: u32) -> Visit {
        for (visit, weight) in &self.0 {
            if ticket < *weight {
                return *visit;
            }
            ticket -= weight;
        }
        self.0.last().expect("a mix has visits").0
    }

    pub fn total(&self) -> u32 {
        self.0.iter().map(|(_, weight)| weight).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_read_from_weights_and_refuses_what_it_cannot_read() {
        let mix: Mix = "browse=1, buy=3".parse().unwrap();
        assert_eq!(mix.total(), 4);
        assert_eq!(mix.pick(0), Visit::Browse);
        assert_eq!(mix.pick(1), Visit::Buy);
        assert_eq!(mix.pick(3), Visit::Buy);
        assert!("shop=1".parse::<Mix>().unwrap_err().contains("`shop`"));
        assert!("buy".parse::<Mix>().unwrap_err().contains("kind=weight"));
        assert!("buy=x".parse::<Mix>().unwrap_err().contains("`buy`"));
        assert!("buy=0".parse::<Mix>().is_err());
        assert!("buy=1,buy=2".parse::<Mix>().unwrap_err().contains("twice"));
    }
}
