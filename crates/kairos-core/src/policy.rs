//! Failure-policy arithmetic (spec §7.5).
//!
//! A tick that the app reports as failed is retried under the job's policy. When the policy
//! gives up (or is `drop`), the tick still counts toward `repeats` and the cadence is kept:
//! the next tick is computed from the tick's *scheduled* time (see [`crate::timeline`]).

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
    pub fn retry_delay(&self, attempts: u32) -> Option<SignedDuration> {
        match self {
            FailurePolicy::Drop => None,
            FailurePolicy::Constant { interval, max_retries } => {
                let again = max_retries.is_none_or(|max| max >= attempts);
                again.then(|| interval.unwrap_or(SignedDuration::ZERO).max(SignedDuration::ZERO))
            }
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

    #[test]
    fn negative_interval_behaves_like_zero() {
        let p =
            FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(-3)), max_retries: Some(1) };
        assert_eq!(p.retry_delay(1), Some(SignedDuration::ZERO));
    }
}
