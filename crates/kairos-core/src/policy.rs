//! Failure-policy arithmetic (spec §7.5).
//!
//! A tick that the app reports as failed is retried under the job's policy. When the policy
//! gives up (or is `drop`), the tick still counts toward `repeats` and the cadence is kept:
//! the next tick is computed from the tick's *scheduled* time (see [`crate::timeline`]).
//!
//! `drop` and `constant` are upstream's. `exponential` is a kairos extension: the delay grows by
//! a multiplier per attempt up to a cap, minus a random share (the jitter) drawn from a seed, so
//! the same seed always gives the same delays (tests on `ManualClock` are exact).

use jiff::SignedDuration;

/// What to do when a trigger fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Never retry: the failed tick is counted and the schedule moves on.
    Drop,
    /// Retry after `interval`, up to `max_retries` times per tick.
    Constant {
        /// Delay between attempts; unset means 0 (retry at once). A negative interval, which
        /// the wire format can carry, behaves like 0.
        interval: Option<SignedDuration>,
        /// Retries after the first attempt; unset means retry forever.
        max_retries: Option<u32>,
    },
    /// Retry after a delay that grows by `multiplier` per attempt (a kairos extension).
    Exponential(Exponential),
}

/// The parameters of [`FailurePolicy::Exponential`]; check them with [`Exponential::validate`].
///
/// The delay before retry `n` (counting from 1) is
/// `min(initial_interval * multiplier^(n-1), max_interval) * (1 - jitter * u)`, `u` in `[0, 1)`
/// drawn from the seed and `n`: jitter only ever shortens a delay, so `max_interval` is a true
/// cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exponential {
    /// Delay before the first retry; must be positive.
    pub initial_interval: SignedDuration,
    /// Growth per attempt; at least 1.
    pub multiplier: Ratio,
    /// Longest delay; unset means no cap (delays saturate at [`Exponential::LONGEST`]). Must not
    /// be shorter than `initial_interval`.
    pub max_interval: Option<SignedDuration>,
    /// Retries after the first attempt; unset means retry forever.
    pub max_retries: Option<u32>,
    /// Share of each delay taken off at random, in `[0, 1]`; 0 means exact delays.
    pub jitter: Ratio,
}

/// A non-negative ratio in millionths, so that policies compare exactly and store losslessly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ratio(u32);

impl Ratio {
    /// 1.
    pub const ONE: Ratio = Ratio(1_000_000);
    /// 0.
    pub const ZERO: Ratio = Ratio(0);

    /// The ratio of `millionths / 1_000_000`.
    pub const fn from_millionths(millionths: u32) -> Ratio {
        Ratio(millionths)
    }

    /// The ratio in millionths.
    pub const fn millionths(self) -> u32 {
        self.0
    }

    /// `value` rounded to a millionth.
    ///
    /// # Errors
    /// [`PolicyError::Ratio`] when `value` is negative, not finite or above 4294.
    pub fn from_f64(value: f64) -> Result<Ratio, PolicyError> {
        let scaled = (value * 1_000_000.0).round();
        if !value.is_finite() || scaled < 0.0 || scaled > f64::from(u32::MAX) {
            return Err(PolicyError::Ratio(value.to_string()));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Ratio(scaled as u32))
    }

    /// The ratio as a float.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1_000_000.0
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_f64())
    }
}

/// Why a failure policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid failure policy: unknown kind {0:?}: expected drop, constant or exponential")]
    UnknownKind(String),
    #[error("invalid exponential failure policy: initial interval {}s must be positive", .0.as_secs_f64())]
    InitialInterval(SignedDuration),
    #[error("invalid exponential failure policy: multiplier {0} must be at least 1")]
    Multiplier(Ratio),
    #[error(
        "invalid exponential failure policy: max interval {}s is shorter than the initial interval {}s", max.as_secs_f64(), initial.as_secs_f64()
    )]
    MaxInterval { max: SignedDuration, initial: SignedDuration },
    #[error("invalid exponential failure policy: jitter {0} must be within [0, 1]")]
    Jitter(Ratio),
    #[error("invalid ratio {0}: expected a finite number within [0, 4294]")]
    Ratio(String),
}

impl Exponential {
    /// The longest delay an uncapped policy reaches: 24 hours.
    pub const LONGEST: SignedDuration = SignedDuration::from_hours(24);

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`PolicyError`] naming the first bad parameter.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.initial_interval <= SignedDuration::ZERO {
            return Err(PolicyError::InitialInterval(self.initial_interval));
        }
        if self.multiplier < Ratio::ONE {
            return Err(PolicyError::Multiplier(self.multiplier));
        }
        if let Some(max) = self.max_interval
            && max < self.initial_interval
        {
            return Err(PolicyError::MaxInterval { max, initial: self.initial_interval });
        }
        if self.jitter > Ratio::ONE {
            return Err(PolicyError::Jitter(self.jitter));
        }
        Ok(())
    }

    /// The delay before retry `retry` (from 1), before jitter.
    fn base(&self, retry: u32) -> SignedDuration {
        let cap = self.max_interval.unwrap_or(Self::LONGEST).min(Self::LONGEST);
        let growth = self.multiplier.as_f64().powi(i32::try_from(retry - 1).unwrap_or(i32::MAX));
        let secs = self.initial_interval.as_secs_f64() * growth;
        if !secs.is_finite() || secs >= cap.as_secs_f64() {
            return cap;
        }
        SignedDuration::try_from_secs_f64(secs).unwrap_or(cap).min(cap)
    }

    fn delay(&self, retry: u32, seed: u64) -> SignedDuration {
        let base = self.base(retry).max(SignedDuration::ZERO);
        if self.jitter == Ratio::ZERO {
            return base;
        }
        // u in [0, 1) from the top 53 bits of a mixed seed.
        #[allow(clippy::cast_precision_loss)]
        let u = (splitmix64(seed ^ u64::from(retry).wrapping_mul(0xA24B_AED4_963E_E407)) >> 11) as f64
            / (1u64 << 53) as f64;
        let keep = 1.0 - self.jitter.as_f64().min(1.0) * u;
        SignedDuration::try_from_secs_f64(base.as_secs_f64() * keep)
            .unwrap_or(base)
            .clamp(SignedDuration::ZERO, base)
    }
}

/// A 64-bit mixer (Steele, Lea and Flood's SplitMix64 finalizer): spreads seeds uniformly.
pub fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FailurePolicy {
    /// The policy a job gets when it names none: `constant {interval: 1s, max_retries: 3}`,
    /// i.e. 4 attempts per tick. It is stored with the job and returned by Get and List.
    pub const DEFAULT: FailurePolicy =
        FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(1)), max_retries: Some(3) };

    /// After the `attempts`-th failed attempt of one tick (counting from 1), the delay before the
    /// next attempt, or `None` to give up on this tick.
    ///
    /// Upstream's rule: retry while `max_retries >= attempts`, so `max_retries: N` gives N + 1
    /// attempts in total.
    /// Exponential jitter draws from seed 0; see [`FailurePolicy::retry_delay_seeded`].
    pub fn retry_delay(&self, attempts: u32) -> Option<SignedDuration> {
        self.retry_delay_seeded(attempts, 0)
    }

    /// [`FailurePolicy::retry_delay`] with the jitter of an exponential policy drawn from
    /// `seed` (the engine passes one per job and tick): the same seed, the same delay.
    pub fn retry_delay_seeded(&self, attempts: u32, seed: u64) -> Option<SignedDuration> {
        match self {
            FailurePolicy::Exponential(e) => {
                let again = e.max_retries.is_none_or(|max| max >= attempts);
                again.then(|| e.delay(attempts.max(1), seed))
            }
            FailurePolicy::Drop => None,
            FailurePolicy::Constant { interval, max_retries } => {
                let again = max_retries.is_none_or(|max| max >= attempts);
                again.then(|| interval.unwrap_or(SignedDuration::ZERO).max(SignedDuration::ZERO))
            }
        }
    }
}

impl FailurePolicy {
    /// Checks a policy a user sent. `drop` and `constant` accept whatever upstream accepts (a
    /// negative constant interval behaves like 0); `exponential` is checked by
    /// [`Exponential::validate`].
    ///
    /// # Errors
    /// [`PolicyError`] for a bad exponential policy.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match self {
            FailurePolicy::Exponential(e) => e.validate(),
            FailurePolicy::Drop | FailurePolicy::Constant { .. } => Ok(()),
        }
    }

    /// The policy's kind as a metric label: `drop`, `constant` or `exponential`.
    pub fn kind(&self) -> &'static str {
        match self {
            FailurePolicy::Drop => "drop",
            FailurePolicy::Constant { .. } => "constant",
            FailurePolicy::Exponential(_) => "exponential",
        }
    }
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many attempts one tick gets when every attempt fails (capped for unlimited policies).
    fn attempts_until_given_up(policy: &FailurePolicy, cap: u32) -> u32 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts >= cap || policy.retry_delay(attempts).is_none() {
                return attempts;
            }
        }
    }

    #[test]
    fn spec_7_5_default_policy_is_constant_1s_times_3_so_4_attempts() {
        let p = FailurePolicy::default();
        assert_eq!(
            p,
            FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(1)), max_retries: Some(3) }
        );
        assert_eq!(attempts_until_given_up(&p, 100), 4);
        for attempts in 1..=3 {
            assert_eq!(p.retry_delay(attempts), Some(SignedDuration::from_secs(1)));
        }
        assert_eq!(p.retry_delay(4), None);
    }

    #[test]
    fn spec_7_5_max_retries_4_without_interval_is_5_immediate_attempts() {
        let p = FailurePolicy::Constant { interval: None, max_retries: Some(4) };
        assert_eq!(attempts_until_given_up(&p, 100), 5);
        assert_eq!(p.retry_delay(1), Some(SignedDuration::ZERO));
    }

    #[test]
    fn spec_7_5_max_retries_0_is_one_attempt() {
        let p =
            FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(5)), max_retries: Some(0) };
        assert_eq!(attempts_until_given_up(&p, 100), 1);
    }

    #[test]
    fn spec_7_5_unset_max_retries_retries_forever() {
        let p = FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(30)), max_retries: None };
        assert_eq!(attempts_until_given_up(&p, 10_000), 10_000);
        assert_eq!(p.retry_delay(u32::MAX), Some(SignedDuration::from_secs(30)));
    }

    #[test]
    fn spec_7_5_drop_never_retries() {
        assert_eq!(attempts_until_given_up(&FailurePolicy::Drop, 100), 1);
    }

    fn exponential(
        initial_ms: i64,
        multiplier: f64,
        max_ms: Option<i64>,
        retries: Option<u32>,
        jitter: f64,
    ) -> Exponential {
        Exponential {
            initial_interval: SignedDuration::from_millis(initial_ms),
            multiplier: Ratio::from_f64(multiplier).unwrap(),
            max_interval: max_ms.map(SignedDuration::from_millis),
            max_retries: retries,
            jitter: Ratio::from_f64(jitter).unwrap(),
        }
    }

    #[test]
    fn exponential_doubles_up_to_the_cap_then_gives_up() {
        let p = FailurePolicy::Exponential(exponential(100, 2.0, Some(1000), Some(6), 0.0));
        let delays: Vec<_> = (1..=7).map(|n| p.retry_delay(n).map(|d| d.as_millis())).collect();
        assert_eq!(delays, [Some(100), Some(200), Some(400), Some(800), Some(1000), Some(1000), None]);
        assert_eq!(attempts_until_given_up(&p, 100), 7, "6 retries: 7 attempts");
    }

    #[test]
    fn exponential_without_cap_saturates_at_a_day_and_never_overflows() {
        let p = FailurePolicy::Exponential(exponential(1000, 10.0, None, None, 0.0));
        assert_eq!(p.retry_delay(3), Some(SignedDuration::from_secs(100)));
        assert_eq!(p.retry_delay(u32::MAX), Some(Exponential::LONGEST));
    }

    #[test]
    fn exponential_jitter_only_shortens_and_is_deterministic_per_seed() {
        let p = FailurePolicy::Exponential(exponential(1000, 2.0, Some(8000), None, 0.5));
        for seed in 0..200u64 {
            for n in 1..6 {
                let d = p.retry_delay_seeded(n, seed).unwrap();
                let base = SignedDuration::from_millis((1000 * (1i64 << (n - 1))).min(8000));
                assert!(
                    d <= base && d >= base / 2,
                    "seed {seed} retry {n}: {d:?} outside [{:?}, {base:?}]",
                    base / 2
                );
                assert_eq!(p.retry_delay_seeded(n, seed), Some(d), "same seed, same delay");
            }
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|s| p.retry_delay_seeded(1, s)).collect();
        assert!(spread.len() > 40, "jitter spreads the delays: {spread:?}");
    }

    #[test]
    fn exponential_validation_names_the_bad_parameter() {
        let ok = exponential(100, 1.0, Some(100), Some(0), 1.0);
        assert_eq!(ok.validate(), Ok(()));
        let cases = [
            (
                Exponential { initial_interval: SignedDuration::ZERO, ..ok },
                "initial interval 0s must be positive",
            ),
            (
                Exponential { initial_interval: SignedDuration::from_secs(-1), ..ok },
                "initial interval -1s must be positive",
            ),
            (
                Exponential { multiplier: Ratio::from_f64(0.5).unwrap(), ..ok },
                "multiplier 0.5 must be at least 1",
            ),
            (
                Exponential { max_interval: Some(SignedDuration::from_millis(99)), ..ok },
                "max interval 0.099s is shorter than the initial interval 0.1s",
            ),
            (Exponential { jitter: Ratio::from_f64(1.5).unwrap(), ..ok }, "jitter 1.5 must be within [0, 1]"),
        ];
        for (policy, text) in cases {
            let err = FailurePolicy::Exponential(policy).validate().unwrap_err();
            assert!(err.to_string().contains(text), "{err} lacks {text:?}");
        }
        assert!(Ratio::from_f64(-0.1).is_err());
        assert!(Ratio::from_f64(f64::NAN).is_err());
        assert_eq!(
            FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(-3)), max_retries: None }
                .validate(),
            Ok(())
        );
    }

    #[test]
    fn negative_interval_behaves_like_zero() {
        let p =
            FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(-3)), max_retries: Some(1) };
        assert_eq!(p.retry_delay(1), Some(SignedDuration::ZERO));
    }
}
