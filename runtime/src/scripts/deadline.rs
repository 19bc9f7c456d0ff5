//! The wall-clock limit of script work. A watchdog thread raises a call's flag when its
//! deadline passes; the engine's progress callback reads that flag on every operation (one
//! atomic load, where reading the clock on every operation would cost more than many operations
//! do), and native functions that loop read it too. So a script stops within about one
//! operation of its limit, however slow each operation is.
//!
//! A [`Deadline`] is a value: the call's context carries it to native functions (the call's
//! tag). The progress callback is the one place Rhai passes nothing but an operation count, so
//! for the span of one synchronous engine call ([`watching`]) the deadline is also installed on
//! the thread running it; nothing else reads that, and it never outlives the call.

use std::cell::RefCell;
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, Position};

/// The progress callback also reads the clock every this many operations, in case the watchdog
/// thread could not start or is starved of CPU; reading it on every operation would cost more
/// than the script.
const CLOCK_CHECK_EVERY: u64 = 1024;

/// Below this many queued deadlines, finished ones are left to expire on their own.
const PRUNE_FROM: usize = 1024;

/// The reason a script was stopped, as Rhai's `ErrorTerminated` carries it.
pub const WALL_CLOCK: &str = "wall-clock limit";

/// The moment one call's script work must stop, and the flag the watchdog raises then.
#[derive(Debug, Clone)]
pub struct Deadline {
    expired: Arc<AtomicBool>,
    at: Instant,
}

impl Deadline {
    /// A deadline `timeout` from now, armed with the watchdog.
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        // A timeout too large to represent is as good as none.
        let at = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let expired = Arc::new(AtomicBool::new(false));
        if let Some(w) = watchdog() {
            w.arm(at, Arc::downgrade(&expired));
        }
        Self { expired, at }
    }

    /// Whether the deadline has passed (the watchdog's flag, or the clock).
    pub fn passed(&self) -> bool {
        self.expired.load(Ordering::Relaxed) || Instant::now() >= self.at
    }

    /// For native functions that loop: an error stopping the script once the deadline has
    /// passed.
    pub fn check(&self) -> Result<(), Box<EvalAltResult>> {
        if self.passed() {
            Err(EvalAltResult::ErrorTerminated(Dynamic::from(WALL_CLOCK), Position::NONE).into())
        } else {
            Ok(())
        }
    }

    /// For the progress callback: the flag on every operation, the clock now and then.
    fn passed_after(&self, ops: u64) -> bool {
        self.expired.load(Ordering::Relaxed)
            || (ops.is_multiple_of(CLOCK_CHECK_EVERY) && Instant::now() >= self.at)
    }
}

thread_local! {
    /// The deadline of the engine call running on this thread, for the progress callback only.
    static WATCHED: RefCell<Option<Deadline>> = const { RefCell::new(None) };
}

/// Runs the synchronous engine call `f` with the progress callback watching `deadline`.
pub fn watching<T>(deadline: &Deadline, f: impl FnOnce() -> T) -> T {
    let previous = WATCHED.with(|c| c.replace(Some(deadline.clone())));
    // Restores the outer deadline even if `f` unwinds.
    struct Restore(Option<Deadline>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            WATCHED.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    f()
}

/// For the progress callback: whether the engine call on this thread is past its deadline.
pub fn expired_after(ops: u64) -> bool {
    WATCHED.with(|c| c.borrow().as_ref().is_some_and(|d| d.passed_after(ops)))
}

/// Raises the flag of every armed deadline when it passes. Entries whose call has finished
/// (the flag's last strong reference dropped) are skipped when they come due.
struct Watchdog {
    queue: Mutex<BinaryHeap<Reverse<Entry>>>,
    wake: Condvar,
}

struct Entry {
    at: Instant,
    expired: Weak<AtomicBool>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.at.cmp(&other.at)
    }
}

/// The process's watchdog, started on first use; `None` if its thread could not start (the
/// progress callback then falls back to reading the clock).
fn watchdog() -> Option<&'static Arc<Watchdog>> {
    static WATCHDOG: OnceLock<Option<Arc<Watchdog>>> = OnceLock::new();
    WATCHDOG
        .get_or_init(|| {
            let w = Arc::new(Watchdog {
                queue: Mutex::new(BinaryHeap::new()),
                wake: Condvar::new(),
            });
            let runner = w.clone();
            match std::thread::Builder::new()
                .name("pintu-script-deadline".into())
                .spawn(move || runner.watch())
            {
                Ok(_) => Some(w),
                Err(e) => {
                    tracing::warn!("script deadline watchdog did not start ({e}); the wall-clock limit is checked less often");
                    None
                }
            }
        })
        .as_ref()
}

impl Watchdog {
    fn arm(&self, at: Instant, expired: Weak<AtomicBool>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        // Finished calls leave their entry until it comes due; with a long timeout those would
        // pile up, so drop them whenever the queue doubles (amortised O(1) per call).
        if queue.len() >= PRUNE_FROM && queue.len().is_power_of_two() {
            queue.retain(|Reverse(e)| e.expired.strong_count() > 0);
        }
        let earliest = queue.peek().is_none_or(|Reverse(e)| at < e.at);
        queue.push(Reverse(Entry { at, expired }));
        drop(queue);
        if earliest {
            self.wake.notify_one();
        }
    }

    fn watch(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            while let Some(Reverse(due)) = queue.peek() {
                if due.at > now {
                    break;
                }
                if let Some(flag) = due.expired.upgrade() {
                    flag.store(true, Ordering::Relaxed);
                }
                queue.pop();
            }
            queue = match queue
                .peek()
                .map(|Reverse(e)| e.at.saturating_duration_since(now))
            {
                Some(wait) => {
                    self.wake
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_rises_when_the_deadline_passes_and_is_watched_only_inside_the_call() {
        let deadline = Deadline::after(Duration::from_millis(20));
        assert!(!expired_after(1), "nothing watched outside a call");
        watching(&deadline, || {
            // Bounded poll: the watchdog raises the flag soon after 20 ms.
            let started = Instant::now();
            while !expired_after(1) {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "flag never rose"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            println!("flag rose after {:?}", started.elapsed());
        });
        match *deadline.check().unwrap_err() {
            EvalAltResult::ErrorTerminated(ref why, _) => {
                assert_eq!(why.to_string(), WALL_CLOCK);
            }
            ref other => panic!("expected the wall-clock termination, got {other}"),
        }
        assert!(!expired_after(1), "nothing watched after the call");
        assert!(Deadline::after(Duration::from_secs(3600)).check().is_ok());
    }

    #[test]
    fn finished_calls_do_not_pile_up_under_a_long_timeout() {
        for _ in 0..20_000 {
            let _ = Deadline::after(Duration::from_secs(3600));
        }
        let queued = watchdog()
            .map(|w| w.queue.lock().unwrap().len())
            .unwrap_or(0);
        // Other tests may have calls in flight; without pruning this would be 20,000 or more.
        assert!(queued < 4 * PRUNE_FROM, "{queued} deadlines queued");
    }
}
