//! The run's report: a table on the terminal, JSON for machines, and an HTML page with the
//! latency-over-time chart (inline SVG, nothing fetched) for people.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::args::{Load, Mix};
use crate::invariants::Finding;
use crate::stats::Summary;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub run: String,
    pub gateway: String,
    pub load: Load,
    pub mix: Mix,
    pub seed: u64,
    pub accounts: usize,
    pub summary: Summary,
    /// Filled by `--check`: each invariant and what broke it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invariants: Vec<Finding>,
}

impl Report {
    /// Orders paid per second over the run.
    pub fn paid_per_second(&self) -> f64 {
        self.summary.events.get("orders_paid").copied().unwrap_or(0) as f64 / self.summary.elapsed_s
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(self).expect("a report serialises"),
        )
    }

    /// The per-step table and the counts, as printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}  failures",
            "step", "count", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (step, stats) in &self.summary.steps {
            let failures = by_status(&stats.failures);
            let l = &stats.latency_ms;
            let _ = writeln!(
                out,
                "{step:<16} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {failures}",
                stats.count, stats.per_second, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        let _ = writeln!(out);
        for (event, count) in &self.summary.events {
            let _ = writeln!(out, "{event:<28} {count}");
        }
        let _ = writeln!(
            out,
            "{:<28} {:.1}/s over {:.0} s",
            "orders paid",
            self.paid_per_second(),
            self.summary.elapsed_s
        );
        if self.summary.phases.len() > 1 {
            let _ = writeln!(out);
            for phase in &self.summary.phases {
                let failures = by_status(&phase.failures);
                let _ = writeln!(
                    out,
                    "phase {:<24} {:>6.1}–{:<6.1}s {:>7} requests  {failures}",
                    phase.name, phase.from_s, phase.to_s, phase.requests
                );
            }
        }
        for finding in &self.invariants {
            let _ = writeln!(out, "{finding}");
        }
        out
    }

    /// The HTML page: p50 and p99 per second as lines, requests per second as bars,
    /// fault phases shaded, and the per-step table.
    pub fn write_chart(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.chart())
    }

    fn chart(&self) -> String {
        let timeline = &self.summary.timeline;
        let (width, height, left, bottom) = (960.0, 360.0, 60.0, 30.0);
        let seconds = timeline.len().max(1) as f64;
        let top_latency = timeline
            .iter()
            .map(|second| second.p99_ms)
            .fold(1.0_f64, f64::max);
        let top_rate = timeline
            .iter()
            .map(|second| second.requests as f64)
            .fold(1.0_f64, f64::max);
        let x = |second: f64| left + second / seconds * (width - left - 10.0);
        let y = |value: f64, top: f64| (height - bottom) - value / top * (height - bottom - 10.0);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="latency and throughput over time">"#
        );
        for phase in self.summary.phases.iter().skip(1) {
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="0" width="{:.1}" height="{:.1}" fill="#fde2e2"><title>{}</title></rect><text x="{:.1}" y="12" font-size="10">{}</text>"##,
                x(phase.from_s),
                (x(phase.to_s) - x(phase.from_s)).max(1.0),
                height - bottom,
                escape(&phase.name),
                x(phase.from_s) + 2.0,
                escape(&phase.name)
            );
        }
        let bar = (width - left - 10.0) / seconds;
        for second in timeline {
            let top = y(second.requests as f64, top_rate);
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#dbe7f5"/>"##,
                x(second.second as f64),
                (bar - 0.5).max(0.5),
                (height - bottom) - top
            );
        }
        for (field, colour) in [("p50", "#2b6cb0"), ("p99", "#c53030")] {
            let points: Vec<String> = timeline
                .iter()
                .map(|second| {
                    let value = if field == "p50" {
                        second.p50_ms
                    } else {
                        second.p99_ms
                    };
                    format!(
                        "{:.1},{:.1}",
                        x(second.second as f64 + 0.5),
                        y(value, top_latency)
                    )
                })
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
        }
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{0}" x2="{width}" y2="{0}" stroke="#444"/><line x1="{left}" y1="0" x2="{left}" y2="{0}" stroke="#444"/><text x="4" y="14" font-size="11">{top_latency:.0} ms</text><text x="4" y="{0}" font-size="11">0</text><text x="{1}" y="{2}" font-size="11" text-anchor="end">{seconds:.0} s</text></svg>"##,
            height - bottom,
            width - 10.0,
            height - 12.0
        );
        let table = escape(&self.table());
        format!(
            r#"<!doctype html><html lang="en"><meta charset="utf-8"><title>Simulation {run}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}pre{{font-size:12px}}</style>
<h1>Simulation {run}</h1>
<p>{load} against {gateway}, seed {seed}, {accounts} accounts. Bars: requests per second (peak {top_rate:.0}); blue: p50 latency, red: p99 latency (ms, from when each request was due); shaded: fault phases.</p>
{svg}
<pre>{table}</pre></html>"#,
            run = escape(&self.run),
            load = escape(&serde_json::to_string(&self.load).unwrap_or_default()),
            gateway = escape(&self.gateway),
            seed = self.seed,
            accounts = self.accounts,
        )
    }
}

/// `503×2 transport×1`.
fn by_status(failures: &std::collections::BTreeMap<String, u64>) -> String {
    failures
        .iter()
        .map(|(status, count)| format!("{status}×{count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
