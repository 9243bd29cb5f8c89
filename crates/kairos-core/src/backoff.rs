//! Exponential backoff with jitter, for every loop that reconnects or retries (the sidecar's
//! scheduler streams and its calls, the scheduler's etcd watches and lease keep-alive, and each
//! engine partition's retry of a failed store write or scan).
//!
//! Jitter matters because many sidecars lose their scheduler at the same moment (a restart, a
//! failover): without it they all come back in lockstep. Jitter here only *shortens* a delay
//! (by up to `jitter` of it), so no wait is ever longer than the un-jittered schedule.
//!
//! No I/O and no clock: [`Backoff::next_delay`] says how long to wait; the caller sleeps.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// The delays of one retry loop: `initial`, then each one `multiplier` times the last, at most
/// `max`, each shortened by a random fraction of up to `jitter`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    /// The un-jittered delay the next call returns.
    current: Duration,
    /// xorshift64* state; never zero.
    rng: u64,
}

impl Backoff {
    /// Doubling from `initial` up to `max`, with up to half of each delay taken off at random;
    /// seeded differently in every instance (and every process).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff::with_seed(initial, max, RandomState::new().hash_one(0u8))
    }

    /// [`Backoff::new`] with a fixed seed: the same seed gives the same delays (for tests).
    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        let max = max.max(initial);
        Backoff { initial, max, multiplier: 2.0, jitter: 0.5, current: initial, rng: seed | 1 }
    }

    /// Each delay this many times the last (at least 1).
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() { multiplier.max(1.0) } else { 1.0 };
        self
    }

    /// Takes up to this fraction (0 to 1) off each delay at random; 0 makes the delays exact.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        self
    }

    /// How long to wait before the next attempt; grows the delay for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = delay.mul_f64(self.multiplier).min(self.max);
        delay.mul_f64(1.0 - self.jitter * self.unit())
    }

    /// Back to `initial` (after an attempt succeeded).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// A uniform number in `[0, 1)` (xorshift64*: cheap, and plenty for spreading retries).
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let bits = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        // 53 bits fit an f64 exactly.
        bits as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_jitter_doubles_up_to_max() {
        let mut b = Backoff::with_seed(100 * MS, 1000 * MS, 7).jitter(0.0);
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]);
    }

    #[test]
    fn reset_starts_over_at_initial() {
        let mut b = Backoff::with_seed(100 * MS, 1000 * MS, 7).jitter(0.0);
        b.next_delay();
        b.next_delay();
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_fraction() {
        let mut b = Backoff::with_seed(100 * MS, 100 * MS, 42).jitter(0.5);
        for _ in 0..1000 {
            let d = b.next_delay();
            assert!(d <= 100 * MS && d >= 50 * MS, "{d:?}");
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut b = Backoff::with_seed(100 * MS, 100 * MS, 42);
        let delays: std::collections::BTreeSet<_> = (0..100).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 50, "only {} distinct delays", delays.len());
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let run = |seed| {
            let mut b = Backoff::with_seed(100 * MS, 5000 * MS, seed);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn two_new_instances_do_not_move_in_lockstep() {
        let run = || {
            let mut b = Backoff::new(100 * MS, 5000 * MS);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(run(), run());
    }

    #[test]
    fn multiplier_and_max_are_respected() {
        let mut b = Backoff::with_seed(10 * MS, 50 * MS, 3).multiplier(3.0).jitter(0.0);
        let delays: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [10 * MS, 30 * MS, 50 * MS, 50 * MS]);
        // A multiplier below 1 would shrink the delays: it is taken as 1.
        let mut flat = Backoff::with_seed(10 * MS, 50 * MS, 3).multiplier(0.5).jitter(0.0);
        assert_eq!((flat.next_delay(), flat.next_delay()), (10 * MS, 10 * MS));
    }

    #[test]
    fn a_max_below_initial_is_raised_to_it() {
        let mut b = Backoff::with_seed(100 * MS, 10 * MS, 3).jitter(0.0);
        assert_eq!((b.next_delay(), b.next_delay()), (100 * MS, 100 * MS));
    }
}
