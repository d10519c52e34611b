//! What the simulated people saw: per step, latency as an HDR histogram (never an average)
//! and every failure by status; per second, the same for the whole shop (the chart); per
//! phase (a fault window), failures by status.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are kept in microseconds from 1 µs to 5 minutes at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

fn micros(latency: Duration) -> u64 {
    (latency.as_micros() as u64).clamp(1, 300_000_000)
}

/// How one request ended, as the report counts it: the HTTP status, or `transport` when
/// no answer came (refused connection, reset, timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    Transport,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(200..=299))
    }

    fn label(self) -> String {
        match self {
            Outcome::Status(status) => status.to_string(),
            Outcome::Transport => "transport".to_owned(),
        }
    }
}

struct StepStats {
    latency: Histogram<u64>,
    ok: u64,
    failures: BTreeMap<String, u64>,
}

struct Second {
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

struct Phase {
    name: String,
    from: Duration,
    to: Option<Duration>,
    requests: u64,
    failures: BTreeMap<String, u64>,
}

struct Inner {
    steps: BTreeMap<&'static str, StepStats>,
    timeline: Vec<Second>,
    phases: Vec<Phase>,
    events: BTreeMap<&'static str, u64>,
}

/// Shared by every simulated person; a short lock per request.
pub struct Recorder {
    started: Instant,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn new(first_phase: &str) -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                steps: BTreeMap::new(),
                timeline: Vec::new(),
                phases: vec![Phase {
                    name: first_phase.to_owned(),
                    from: Duration::ZERO,
                    to: None,
                    requests: 0,
                    failures: BTreeMap::new(),
                }],
                events: BTreeMap::new(),
            }),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// One request of `step` that took `latency` (from when it was due) and ended so.
    pub fn request(&self, step: &'static str, latency: Duration, outcome: Outcome) {
        let second = self.started.elapsed().as_secs() as usize;
        let mut inner = self.inner.lock().expect("recorder lock");
        let stats = inner.steps.entry(step).or_insert_with(|| StepStats {
            latency: histogram(),
            ok: 0,
            failures: BTreeMap::new(),
        });
        stats.latency.saturating_record(micros(latency));
        if outcome.is_success() {
            stats.ok += 1;
        } else {
            *stats.failures.entry(outcome.label()).or_default() += 1;
        }
        while inner.timeline.len() <= second {
            inner.timeline.push(Second {
                requests: 0,
                failures: 0,
                latency: histogram(),
            });
        }
        let bucket = &mut inner.timeline[second];
        bucket.requests += 1;
        bucket.latency.saturating_record(micros(latency));
        if !outcome.is_success() {
            bucket.failures += 1;
        }
        let phase = inner.phases.last_mut().expect("a phase is always open");
        phase.requests += 1;
        if !outcome.is_success() {
            *phase.failures.entry(outcome.label()).or_default() += 1;
        }
    }

    /// Something that happened to the shop as the people see it (`orders_paid`, …).
    pub fn count(&self, event: &'static str) {
        *self
            .inner
            .lock()
            .expect("recorder lock")
            .events
            .entry(event)
            .or_default() += 1;
    }

    pub fn events(&self, event: &str) -> u64 {
        self.inner
            .lock()
            .expect("recorder lock")
            .events
            .get(event)
            .copied()
            .unwrap_or(0)
    }

    /// Closes the current phase and opens `name` (a fault, its recovery, …).
    pub fn begin_phase(&self, name: &str) {
        let now = self.started.elapsed();
        let mut inner = self.inner.lock().expect("recorder lock");
        if let Some(open) = inner.phases.last_mut() {
            open.to = Some(now);
        }
        inner.phases.push(Phase {
            name: name.to_owned(),
            from: now,
            to: None,
            requests: 0,
            failures: BTreeMap::new(),
        });
    }

    /// Requests and failures in the last `window` seconds that are complete, for the
    /// progress line.
    pub fn recent(&self, window: usize) -> Recent {
        let inner = self.inner.lock().expect("recorder lock");
        let complete = inner.timeline.len().saturating_sub(1);
        let from = complete.saturating_sub(window);
        let mut latency = histogram();
        let (mut requests, mut failures) = (0, 0);
        for second in &inner.timeline[from..complete] {
            requests += second.requests;
            failures += second.failures;
            latency.add(&second.latency).expect("same bounds");
        }
        let seconds = (complete - from).max(1) as f64;
        Recent {
            requests_per_second: requests as f64 / seconds,
            failures,
            p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }

    pub fn summary(&self) -> Summary {
        let elapsed = self.started.elapsed();
        let inner = self.inner.lock().expect("recorder lock");
        let seconds = elapsed.as_secs_f64().max(0.001);
        let steps = inner
            .steps
            .iter()
            .map(|(step, stats)| {
                let count = stats.latency.len();
                (
                    (*step).to_owned(),
                    StepSummary {
                        count,
                        ok: stats.ok,
                        failures: stats.failures.clone(),
                        per_second: count as f64 / seconds,
                        latency_ms: Percentiles::of(&stats.latency),
                    },
                )
            })
            .collect();
        let timeline = inner
            .timeline
            .iter()
            .enumerate()
            .map(|(second, bucket)| SecondSummary {
                second: second as u64,
                requests: bucket.requests,
                failures: bucket.failures,
                p50_ms: bucket.latency.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: bucket.latency.value_at_quantile(0.99) as f64 / 1000.0,
            })
            .collect();
        let phases = inner
            .phases
            .iter()
            .map(|phase| PhaseSummary {
                name: phase.name.clone(),
                from_s: phase.from.as_secs_f64(),
                to_s: phase.to.unwrap_or(elapsed).as_secs_f64(),
                requests: phase.requests,
                failures: phase.failures.clone(),
            })
            .collect();
        Summary {
            elapsed_s: seconds,
            steps,
            events: inner
                .events
                .iter()
                .map(|(event, count)| ((*event).to_owned(), *count))
                .collect(),
            phases,
            timeline,
        }
    }
}

pub struct Recent {
    pub requests_per_second: f64,
    pub failures: u64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub count: u64,
    pub ok: u64,
    /// Failed requests by HTTP status, or `transport` when no answer came.
    pub failures: BTreeMap<String, u64>,
    pub per_second: f64,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondSummary {
    pub second: u64,
    pub requests: u64,
    pub failures: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    pub name: String,
    pub from_s: f64,
    pub to_s: f64,
    pub requests: u64,
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub elapsed_s: f64,
    pub steps: BTreeMap<String, StepSummary>,
    pub events: BTreeMap<String, u64>,
    pub phases: Vec<PhaseSummary>,
    pub timeline: Vec<SecondSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_every_request_and_failures_are_kept_by_status_and_phase() {
        let recorder = Recorder::new("steady");
        for millis in 1..=100 {
            recorder.request(
                "place_order",
                Duration::from_millis(millis),
                Outcome::Status(201),
            );
        }
        recorder.begin_phase("kill");
        recorder.request("place_order", Duration::from_secs(2), Outcome::Status(503));
        recorder.request("pay", Duration::from_millis(5), Outcome::Transport);
        let summary = recorder.summary();
        let place = &summary.steps["place_order"];
        assert_eq!((place.count, place.ok), (101, 100));
        assert_eq!(place.failures["503"], 1);
        // 101 requests: 1..=100 ms and one of 2 s; the middle one took 51 ms.
        assert!((50.9..=51.1).contains(&place.latency_ms.p50), "{place:?}");
        assert!((99.0..=101.0).contains(&place.latency_ms.p99), "{place:?}");
        assert!(place.latency_ms.max >= 1999.0, "{place:?}");
        assert_eq!(summary.phases.len(), 2);
        assert_eq!(summary.phases[0].requests, 100);
        assert!(summary.phases[0].failures.is_empty());
        assert_eq!(summary.phases[1].failures["503"], 1);
        assert_eq!(summary.phases[1].failures["transport"], 1);
        assert_eq!(
            summary.timeline.iter().map(|s| s.requests).sum::<u64>(),
            102
        );
    }
}
