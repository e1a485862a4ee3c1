//! `--rate`: when each sender of a produce mode may send its next message.

use std::time::{Duration, Instant};

use crate::args::Args;

/// Send instant of the next message for a paced sender (`--rate`): `interval`
/// apart per sender, senders staggered across the first interval.
pub struct Pacer {
    pub next: Instant,
    interval: Duration,
}

impl Pacer {
    pub fn new(args: &Args, start: Instant, index: usize, senders: usize) -> Option<Pacer> {
        let rate = args.rate.filter(|r| *r > 0.0)?;
        let interval = Duration::from_secs_f64(senders as f64 / rate);
        Some(Pacer {
            next: start + interval.mul_f64(index as f64 / senders as f64),
            interval,
        })
    }

    /// True (and advances) if a message is due at `now`.
    pub fn due(pacer: &mut Option<Pacer>, now: Instant) -> bool {
        match pacer {
            None => true,
            Some(p) if p.next <= now => {
                p.next += p.interval;
                true
            }
            Some(_) => false,
        }
    }
}
