//! Process-wide settings for CPU throughput, for programs (not libraries) to
//! apply at the start of `main`, before the first candle op.

/// What [`configure_process`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSettings {
    /// `CANDLE_NUM_THREADS` was unset and has been set to `1`.
    pub candle_threads_set: bool,
    /// `RAYON_NUM_THREADS` was unset and has been set to the logical CPU count.
    pub rayon_threads_set: bool,
}

/// The settings a fute program applies at the start of `main`, before any candle
/// op (candle reads `CANDLE_NUM_THREADS` once, when its pool is first used):
/// `CANDLE_NUM_THREADS=1` unless the user set it.
///
/// candle 0.11 runs its element-wise ops on a process-wide spinning pool of
/// `CANDLE_NUM_THREADS` threads behind one lock: parallel Fisher workers queue on
/// the lock, and the spin-waits cost several times the work whenever another
/// process shares the cores. Matmuls (gemm) and fute's fused ops
/// ([`crate::ops`], the AdamW update) use rayon and still run on all cores
/// (`RAYON_NUM_THREADS`). Measured on the 2-vCPU machine while other jobs used it
/// (load 8-10): MiniLM training step, batch 8, 2.1-2.2 → 3.4-4.6 ex/s; batch 32,
/// 2.8-3.2 → 4.1-4.2 ex/s (`benches/train_step.rs`). Quiet machine: batch 8
/// 7.7-8.0 → 8.6-8.9 ex/s, batch 32 equal (7.8); Fisher with 2 workers 8.5-8.7 →
/// 10.6-11.1 ex/s (per-batch B=8), but with 1 worker 9.4-9.5 → 8.4. Set
/// `CANDLE_NUM_THREADS` yourself to override.
///
/// Also `RAYON_NUM_THREADS` = the logical CPUs the process may use, unless
/// set: candle sizes its matmul parallelism by *physical* cores when it is
/// unset, and a VM that presents its vCPUs as hyper-thread siblings then
/// reports one core, so every matmul ran on one of the two vCPUs (half the
/// throughput with the other idle). `fute bench` records the count candle uses.
///
/// Must run while the process has a single thread (it sets environment
/// variables).
pub fn configure_process() -> ProcessSettings {
    let candle_threads_set = std::env::var_os("CANDLE_NUM_THREADS").is_none();
    if candle_threads_set {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let rayon_threads_set = std::env::var_os("RAYON_NUM_THREADS").is_none();
    if rayon_threads_set {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    ProcessSettings {
        candle_threads_set,
        rayon_threads_set,
    }
}
