//! The one wasmtime `Engine` of the process: the component model, epoch interruption for
//! deadlines, the pooling allocator when the machine lets us reserve its address space (else
//! on-demand allocation, said once in the log), and the ticker thread that advances the epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::manifest::MAX_MEMORY_MIB;

/// How often the epoch advances: the granularity of deadlines.
pub const TICK: Duration = Duration::from_millis(5);
/// Instances that may run at once with the pooling allocator (calls beyond it fail to
/// instantiate, which callers see as a `CallError`).
pub const POOL_INSTANCES: u32 = 64;
/// Core instances, memories and tables per component: a componentized Rust guest has a few.
const PER_COMPONENT: u32 = 8;

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
        .total_memories(POOL_INSTANCES * PER_COMPONENT)
        .total_tables(POOL_INSTANCES * PER_COMPONENT)
        .max_core_instances_per_component(PER_COMPONENT)
        .max_memories_per_component(PER_COMPONENT)
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
