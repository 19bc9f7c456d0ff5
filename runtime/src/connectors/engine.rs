//! The one wasmtime `Engine` of the process: the component model, epoch interruption for
//! deadlines, the pooling allocator when the machine lets us reserve its address space (else
//! on-demand allocation, said once in the log), and the ticker thread that advances the epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::manifest::MAX_MEMORY_MIB;

/// How often the epoch advances: the granularity of deadlines.
pub const TICK: Duration = Duration::from_millis(5);
/// Connector instances that may exist at once (in the pool, and as the limit of [`Slots`] with
/// either allocator): a call beyond it waits for a free one within its own deadline.
pub const POOL_INSTANCES: u32 = 128;
/// Core instances and tables per component: a componentized Rust guest has a few.
const PER_COMPONENT: u32 = 8;
/// Linear memories per component: a Rust guest has one.
const MEMORIES_PER_COMPONENT: u32 = 2;

/// Which allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    Pooling,
    OnDemand,
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(false);
    config.parallel_compilation(true);
    config
}

/// Builds the engine, trying the pooling allocator first.
pub fn build() -> anyhow::Result<(Engine, Allocation)> {
    let mut pooled = base_config();
    let mut pool = PoolingAllocationConfig::default();
    let max_memory = usize::try_from(MAX_MEMORY_MIB)
        .unwrap_or(usize::MAX)
        .saturating_mul(1024 * 1024);
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * PER_COMPONENT)
        .total_memories(POOL_INSTANCES * MEMORIES_PER_COMPONENT)
        .total_tables(POOL_INSTANCES * PER_COMPONENT)
        .max_core_instances_per_component(PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(PER_COMPONENT)
        .max_memory_size(max_memory);
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok((engine, Allocation::Pooling)),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "connectors: cannot reserve address space for the pooling allocator; using on-demand allocation"
            );
            let engine = Engine::new(&base_config())
                .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
            Ok((engine, Allocation::OnDemand))
        }
    }
}

/// Advances the engine's epoch every [`TICK`] until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub fn start(engine: Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("pintu-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Counts live instances so that a burst of calls waits for a free pool slot instead of failing
/// to instantiate (and bounds memory the same way with on-demand allocation).
#[derive(Debug)]
pub(crate) struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

/// A taken slot, given back when dropped.
pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(crate) fn new(count: u32) -> Self {
        Self {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    /// A slot, waiting for one until `deadline`; none if the deadline passed first.
    pub(crate) fn take(&self, deadline: Instant) -> Option<Slot<'_>> {
        let mut free = self.free.lock().ok()?;
        while *free == 0 {
            let left = deadline.checked_duration_since(Instant::now())?;
            free = self.freed.wait_timeout(free, left).ok()?.0;
        }
        *free -= 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut free) = self.0.free.lock() {
            *free += 1;
        }
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_wait_for_a_free_one_until_the_deadline() {
        let slots = Arc::new(Slots::new(1));
        let first = slots.take(Instant::now()).unwrap();
        // None free and the deadline already passed: no slot.
        assert!(slots.take(Instant::now()).is_none());
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || {
                slots
                    .take(Instant::now() + Duration::from_secs(60))
                    .is_some()
            })
        };
        drop(first);
        assert!(waiter.join().unwrap());
        assert!(slots.take(Instant::now()).is_some());
    }
}
