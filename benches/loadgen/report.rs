//! What the throughput/latency modes measure and how they print it: a `Tally`
//! per connection (or producer task), summed into one `result` line.

use std::time::Instant;

use hdrhistogram::Histogram;

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// What one connection (or producer task) measured.
pub struct Tally {
    ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    hist: Histogram<u64>,
    pub finished: Instant,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            ok: 0,
            errors: 0,
            first_error: None,
            hist: new_histogram(),
            finished: Instant::now(),
        }
    }

    pub fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    pub fn ok_after(&mut self, sent: Instant, now: Instant) {
        self.ok += 1;
        let us = now.saturating_duration_since(sent).as_micros() as u64;
        self.hist.saturating_record(us.max(1));
    }
}

/// Sums the tallies and formats the result line of a throughput/latency mode.
pub fn report(mode: &str, start: Instant, tallies: Vec<Tally>, size: usize, extra: &str) -> String {
    let mut hist = new_histogram();
    let (mut ok, mut errors, mut first_error, mut end) = (0, 0, None, start);
    for t in tallies {
        ok += t.ok;
        errors += t.errors;
        if first_error.is_none() {
            first_error = t.first_error;
        }
        end = end.max(t.finished);
        hist.add(&t.hist).expect("same histogram bounds");
    }
    if let Some(e) = &first_error {
        eprintln!("loadgen {mode}: first error: {e}");
    }
    let secs = end.duration_since(start).as_secs_f64().max(1e-9);
    let rate = ok as f64 / secs;
    format!(
        "result mode={mode} msgs={ok} secs={secs:.2} msgs_per_s={rate:.0} mb_per_s={:.2} \
         p50_us={} p99_us={} p999_us={} max_us={} errors={errors}{extra}",
        rate * size as f64 / 1e6,
        hist.value_at_quantile(0.50),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
    )
}
