//! The only place kairos reads the time.
//!
//! Everything that needs "now" or a timer takes a [`Clock`]. Production code uses
//! [`SystemClock`]; tests use [`ManualClock`], which only moves when told to, so every timing
//! test is deterministic and never sleeps for real.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use jiff::{SignedDuration, Timestamp};

/// A future that completes when a clock reaches a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of wall-clock time and timers.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// Completes once [`Clock::now`] is at or after `deadline`.
    ///
    /// # Contract
    /// Never completes early by this clock. It may complete late; callers that must notice wall
    /// clock jumps re-check `now()` and cap their sleeps.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// The real clock: `SystemTime` for now, tokio timers for sleeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Reads the system wall clock; the one call in kairos allowed to.
    #[allow(clippy::disallowed_methods)]
    fn read() -> Timestamp {
        Timestamp::now()
    }
}

#[cfg(feature = "tokio")]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Self::read()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        Box::pin(async move {
            // Sleep in slices so that a wall-clock jump backwards cannot make us fire early and
            // a jump forwards is noticed within a second.
            loop {
                let left = deadline.duration_since(Self::read());
                if left <= SignedDuration::ZERO {
                    return;
                }
                let slice = left.min(SignedDuration::from_secs(1));
                tokio::time::sleep(slice.unsigned_abs()).await;
            }
        })
    }
}

#[cfg(not(feature = "tokio"))]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Self::read()
    }

    /// Without the `tokio` feature there is no timer: this future completes only if the
    /// deadline has already passed when it is first polled, and otherwise never.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        Box::pin(std::future::poll_fn(
            move |_| {
                if Self::read() >= deadline { Poll::Ready(()) } else { Poll::Pending }
            },
        ))
    }
}

/// A monotonic stopwatch for measuring how long something took (metrics only: commit and
/// delivery latencies). It never decides *when* anything happens, so it need not follow a
/// [`Clock`]; timing logic must keep using [`Clock`].
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// Starts measuring now.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        Stopwatch(std::time::Instant::now())
    }

    /// Time since [`Stopwatch::start`].
    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when a test moves it.
#[derive(Clone)]
pub struct ManualClock {
    state: Arc<Mutex<ManualState>>,
}

struct ManualState {
    now: Timestamp,
    next_sleeper: u64,
    /// Registered sleeps: id, deadline, waker. A sleep removes its entry when dropped.
    sleepers: Vec<(u64, Timestamp, Waker)>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("ManualClock")
            .field("now", &state.now)
            .field("sleepers", &state.sleepers.len())
            .finish()
    }
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            state: Arc::new(Mutex::new(ManualState { now: start, next_sleeper: 0, sleepers: Vec::new() })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ManualState> {
        // A panic while holding this lock can only come from a test; keep going with its state.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the clock forward by `by` and wakes every sleeper that is now due.
    ///
    /// # Panics
    /// If `by` is negative: time on a manual clock only moves forward (use [`ManualClock::set`]
    /// to model a wall-clock jump).
    pub fn advance(&self, by: SignedDuration) {
        assert!(!by.is_negative(), "ManualClock::advance({by:?}): use set() to move backwards");
        let now = self.now();
        self.set(now + by);
    }

    /// Sets the clock to `to` (forwards or backwards) and wakes every sleeper that is now due.
    pub fn set(&self, to: Timestamp) {
        let due: Vec<Waker> = {
            let mut state = self.lock();
            state.now = to;
            let (due, waiting): (Vec<_>, Vec<_>) = state.sleepers.drain(..).partition(|(_, d, _)| *d <= to);
            state.sleepers = waiting;
            due.into_iter().map(|(_, _, w)| w).collect()
        };
        for waker in due {
            waker.wake();
        }
    }

    /// How many sleeps are registered and not yet due: lets a test wait until a task under test
    /// has gone to sleep before it moves the clock.
    pub fn sleepers(&self) -> usize {
        self.lock().sleepers.len()
    }

    /// The earliest deadline anyone is sleeping until.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.lock().sleepers.iter().map(|(_, d, _)| *d).min()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.lock().now
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let id = {
            let mut state = self.lock();
            state.next_sleeper += 1;
            state.next_sleeper
        };
        Box::pin(ManualSleep { clock: self.clone(), id, deadline })
    }
}

/// A sleep on a [`ManualClock`]; deregisters itself when dropped.
struct ManualSleep {
    clock: ManualClock,
    id: u64,
    deadline: Timestamp,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.lock();
        state.sleepers.retain(|(id, _, _)| *id != self.id);
        if state.now >= self.deadline {
            return Poll::Ready(());
        }
        state.sleepers.push((self.id, self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        self.clock.lock().sleepers.retain(|(id, _, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn manual_clock_sleep_completes_only_at_deadline() {
        let clock = ManualClock::new(t("2026-01-01T00:00:00Z"));
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut sleep = clock.sleep_until(t("2026-01-01T00:00:10Z"));

        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.sleepers(), 1, "re-polling does not register twice");
        assert_eq!(clock.next_deadline(), Some(t("2026-01-01T00:00:10Z")));

        clock.advance(SignedDuration::from_secs(9));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "not woken early");
        assert!(sleep.as_mut().poll(&mut cx).is_pending());

        clock.advance(SignedDuration::from_secs(1));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
        assert_eq!(clock.sleepers(), 0);
    }

    #[test]
    fn manual_clock_forgets_a_dropped_sleep() {
        let clock = ManualClock::new(t("2026-01-01T00:00:00Z"));
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let mut sleep = clock.sleep_until(t("2026-01-01T00:00:10Z"));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.sleepers(), 1);
        drop(sleep);
        assert_eq!(clock.sleepers(), 0);
    }

    #[test]
    fn manual_clock_set_moves_both_ways() {
        let clock = ManualClock::new(t("2026-01-01T00:00:00Z"));
        clock.set(t("2025-12-31T23:00:00Z"));
        assert_eq!(clock.now(), t("2025-12-31T23:00:00Z"));
        clock.set(t("2026-06-01T00:00:00Z"));
        assert_eq!(clock.now(), t("2026-06-01T00:00:00Z"));
    }

    #[test]
    #[should_panic(expected = "use set()")]
    fn manual_clock_refuses_negative_advance() {
        ManualClock::new(t("2026-01-01T00:00:00Z")).advance(SignedDuration::from_secs(-1));
    }

    #[test]
    fn system_clock_reads_a_plausible_time() {
        let now = SystemClock.now();
        assert!(now > t("2024-01-01T00:00:00Z"), "system clock reads {now}");
    }
}
