//! The shopper simulator (`commerce simulate`): virtual shoppers sign up through the real
//! path, then browse, search, fill carts, apply a promo code, check out, order, pay, cancel
//! or walk away; staff restock, ship and deliver. Every request goes through the public
//! gateway and is timed from when it was due. At the end: per-step throughput, latency
//! percentiles and failures by status, per fault phase too, as a table, JSON and an HTML
//! chart; with `--check`, the shop's invariants proven from its databases and topics.

pub mod accounts;
pub mod args;
pub mod client;
pub mod invariants;
pub mod report;
pub mod stats;
pub mod stripe;
pub mod visits;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use accounts::{AccountError, Shopper};
use args::Load;
pub use args::SimulateArgs;
use client::{Caller, Failure, Shop, text};
use invariants::{InvariantError, ShopState};
use report::Report;
use stats::Recorder;
use stripe::{StripeError, StripeServer, StripeSettings};
use visits::{Staff, World};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("signing the shoppers up")]
    Accounts(#[from] AccountError),
    #[error("getting the shop ready (staff sign-in, promo code, catalogue)")]
    Setup(#[source] Failure),
    #[error("the catalogue has no product in stock to sell")]
    EmptyCatalogue,
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("playing Stripe")]
    Stripe(#[from] StripeError),
    #[error("checking the invariants")]
    Invariants(#[from] InvariantError),
}

/// A prepared run: accounts signed up, the catalogue read; nothing bought yet.
pub struct Simulation {
    args: SimulateArgs,
    run: String,
    world: Arc<World>,
    shoppers: Vec<Shopper>,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
}

impl Simulation {
    /// Signs staff in, creates the run's promo code, reads the catalogue and signs the
    /// shoppers up (their requests are not part of the report).
    pub async fn prepare(args: SimulateArgs) -> Result<Self, SimulateError> {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let run = format!("{unix:x}{:04x}", args.seed & 0xffff);
        let setup = Shop::new(&args.gateway, Arc::new(Recorder::new("setup")))
            .map_err(SimulateError::Client)?;
        let staff = accounts::staff(&setup, &args.staff_email, &args.staff_password)
            .await
            .map_err(SimulateError::Setup)?;
        let promo = format!("SIM{}", run.to_uppercase());
        setup
            .call_now(
                "create_promo",
                setup
                    .request(Method::POST, "/v1/admin/promo-codes", &staff)
                    .json(&json!({"code": promo, "kind": "percent", "value": "10"})),
            )
            .await
            .map_err(SimulateError::Setup)?;
        let (words, categories, pages) = read_catalogue(&setup).await?;
        let shoppers = accounts::sign_up_shoppers(
            &setup,
            &args.mail,
            &run,
            args.accounts(),
            args.forwarded_for,
        )
        .await?;
        let stripe = if args.card_share > 0.0 {
            let settings = StripeSettings {
                listen: args.stripe_listen,
                secret_key: args.stripe_secret_key.clone(),
                publishable_key: args.stripe_publishable_key.clone(),
                webhook_secret: args.stripe_webhook_secret.clone(),
                webhook_url: format!(
                    "{}/v1/payments/webhooks/stripe",
                    args.gateway.trim_end_matches('/')
                ),
            };
            Some(Arc::new(StripeServer::start(settings).await?))
        } else {
            None
        };
        let recorder = Arc::new(Recorder::new("shopping"));
        let shop = Shop::new(&args.gateway, recorder.clone()).map_err(SimulateError::Client)?;
        let stop = CancellationToken::new();
        let world = Arc::new(World {
            staff: Staff::new(shop.clone(), staff, stop.clone()),
            shop,
            words,
            categories,
            pages,
            promo: Some(promo),
            promo_share: args.promo_share,
            stripe,
            card_share: args.card_share,
            password: format!("simulated-{run}-Password1"),
        });
        Ok(Self {
            args,
            run,
            world,
            shoppers,
            recorder,
            stop,
        })
    }

    /// The signed-up shoppers (a bench may have them do more than shop).
    pub fn shoppers(&self) -> &[Shopper] {
        &self.shoppers
    }

    /// Starts shopping; it ends after `--duration` or at [`Running::stop`].
    pub fn start(self) -> Running {
        let Simulation {
            args,
            run,
            world,
            shoppers,
            recorder,
            stop,
        } = self;
        let deadline = Instant::now() + args.duration;
        let shopping = match args.load() {
            Load::Closed { .. } => tokio::spawn(closed_loop(
                world.clone(),
                shoppers,
                args.clone(),
                deadline,
                stop.clone(),
            )),
            Load::Open { per_second } => tokio::spawn(open_loop(
                world.clone(),
                shoppers,
                args.clone(),
                per_second,
                deadline,
                stop.clone(),
            )),
        };
        let progress =
            (!args.quiet).then(|| tokio::spawn(progress(recorder.clone(), stop.clone())));
        Running {
            stripe: world.stripe.clone(),
            args,
            run,
            recorder,
            stop,
            shopping,
            progress,
        }
    }
}

/// Words, categories and the number of 20-product pages of what is in stock.
async fn read_catalogue(shop: &Shop) -> Result<(Vec<String>, Vec<String>, u32), SimulateError> {
    let nobody = Caller::default();
    let mut words = std::collections::BTreeSet::new();
    let mut categories = std::collections::BTreeSet::new();
    let first = shop
        .call_now(
            "read_catalogue",
            shop.request(
                Method::GET,
                "/v1/products?inStock=true&pageSize=100&page=1",
                &nobody,
            ),
        )
        .await
        .map_err(SimulateError::Setup)?;
    let items = first["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return Err(SimulateError::EmptyCatalogue);
    }
    for item in &items {
        let name = text(item, "read_catalogue", "name").map_err(SimulateError::Setup)?;
        words.extend(
            name.split_whitespace()
                .filter(|word| word.len() >= 4 && word.chars().all(char::is_alphabetic))
                .map(str::to_lowercase),
        );
        if let Some(category) = item["category"].as_str() {
            categories.insert(category.to_owned());
        }
    }
    let total = first["total"].as_u64().unwrap_or(items.len() as u64);
    let pages = total.div_ceil(20).max(1) as u32;
    Ok((
        words.into_iter().collect(),
        categories.into_iter().collect(),
        pages,
    ))
}

/// A random source for stream `stream` of the run seeded `seed`.
fn rng_for(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

async fn closed_loop(
    world: Arc<World>,
    shoppers: Vec<Shopper>,
    args: SimulateArgs,
    deadline: Instant,
    stop: CancellationToken,
) {
    let shoppers_wanted = match args.load() {
        Load::Closed { shoppers } => shoppers,
        Load::Open { .. } => unreachable!("closed loop"),
    };
    let mut running = JoinSet::new();
    for (index, mut shopper) in shoppers.into_iter().take(shoppers_wanted).enumerate() {
        let (world, stop, mix) = (world.clone(), stop.clone(), args.mix.clone());
        let mut rng = rng_for(args.seed, index as u64);
        running.spawn(async move {
            while !stop.is_cancelled() && Instant::now() < deadline {
                let kind = mix.pick(rng.random_range(0..mix.total()));
                world
                    .visit(&mut shopper, kind, &mut rng, Instant::now())
                    .await;
            }
        });
    }
    running.join_all().await;
}

async fn open_loop(
    world: Arc<World>,
    shoppers: Vec<Shopper>,
    args: SimulateArgs,
    per_second: f64,
    deadline: Instant,
    stop: CancellationToken,
) {
    let (free, mut waiting) = tokio::sync::mpsc::unbounded_channel();
    for shopper in shoppers {
        let _ = free.send(shopper);
    }
    let mut arrivals = rng_for(args.seed, u64::MAX);
    let mut due = Instant::now();
    let mut running = JoinSet::new();
    for number in 0_u64.. {
        // Poisson arrivals: exponential gaps with the given mean rate.
        let gap = -(1.0 - arrivals.random::<f64>()).ln() / per_second;
        due += Duration::from_secs_f64(gap);
        if due >= deadline {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        // A visit that finds every account busy waits, and its latency counts the wait.
        let shopper = tokio::select! {
            _ = stop.cancelled() => break,
            shopper = waiting.recv() => shopper,
        };
        let Some(mut shopper) = shopper else { break };
        let (world, free, mix) = (world.clone(), free.clone(), args.mix.clone());
        let mut rng = rng_for(args.seed, number);
        running.spawn(async move {
            let kind = mix.pick(rng.random_range(0..mix.total()));
            world.visit(&mut shopper, kind, &mut rng, due).await;
            let _ = free.send(shopper);
        });
        while running.try_join_next().is_some() {}
    }
    running.join_all().await;
}

/// A line a second on a terminal, one every ten seconds otherwise.
async fn progress(recorder: Arc<Recorder>, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { 1 } else { 10 };
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let recent = recorder.recent(every as usize);
        let line = format!(
            "{:>5.0}s  {:>7.1} req/s  p99 {:>7.1} ms  failures {:>4}  orders placed {}  paid {}",
            recorder.elapsed().as_secs_f64(),
            recent.requests_per_second,
            recent.p99_ms,
            recent.failures,
            recorder.events("orders_placed"),
            recorder.events("orders_paid"),
        );
        if terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if terminal {
        eprintln!();
    }
}

/// A run in progress.
pub struct Running {
    args: SimulateArgs,
    run: String,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    shopping: JoinHandle<()>,
    progress: Option<JoinHandle<()>>,
    stripe: Option<Arc<StripeServer>>,
}

impl Running {
    /// The simulated Stripe, with --card-share: it serves while a handle lives, so the
    /// shop can still refund after the shoppers stop.
    pub fn stripe(&self) -> Option<Arc<StripeServer>> {
        self.stripe.clone()
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Marks the start of a phase (a fault, its recovery) in the report.
    pub fn begin_phase(&self, name: &str) {
        self.recorder.begin_phase(name);
    }

    /// Waits for `--duration` to pass and the last visits to end.
    pub async fn finish(self) -> Report {
        let Running {
            args,
            run,
            recorder,
            stop,
            shopping,
            progress,
            stripe: _,
        } = self;
        let _ = shopping.await;
        stop.cancel();
        if let Some(progress) = progress {
            let _ = progress.await;
        }
        Report {
            run,
            gateway: args.gateway.clone(),
            load: args.load(),
            mix: args.mix.clone(),
            seed: args.seed,
            accounts: args.accounts(),
            summary: recorder.summary(),
            invariants: Vec::new(),
        }
    }

    /// Stops starting visits now, lets those under way end, and reports.
    pub async fn stop(self) -> Report {
        self.stop.cancel();
        self.finish().await
    }
}

/// `commerce simulate`: prepare, shop for the duration, report; with `--check`, prove the
/// invariants of the shop `config` describes. The report, with the findings.
pub async fn simulate(
    args: SimulateArgs,
    config: Option<&commerce_runtime::Config>,
) -> Result<Report, SimulateError> {
    let state = match (args.check, config) {
        (true, Some(config)) => Some(ShopState::connect(config).await?),
        _ => None,
    };
    let baseline = match &state {
        Some(state) => Some(state.baseline().await?),
        None => None,
    };
    let (report_path, chart_path, settle) = (args.report.clone(), args.chart.clone(), args.settle);
    let running = Simulation::prepare(args).await?.start();
    // Refunds of canceled card payments settle through it after the last visit.
    let stripe = running.stripe();
    let mut report = running.finish().await;
    if let Some(state) = &state {
        report.invariants = state.settle(baseline.as_ref(), settle).await?;
    }
    drop(stripe);
    report
        .write_json(&report_path)
        .map_err(|source| SimulateError::Write {
            path: report_path.clone(),
            source,
        })?;
    report
        .write_chart(&chart_path)
        .map_err(|source| SimulateError::Write {
            path: chart_path.clone(),
            source,
        })?;
    Ok(report)
}
