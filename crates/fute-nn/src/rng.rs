//! A tiny seeded random number generator for initialisation and dropout.
//!
//! candle's CPU device cannot be seeded (`Device::set_seed` fails on CPU), so
//! every random number `fute-nn` uses comes from this generator instead: fresh
//! head parameters and dropout masks are reproducible from a seed.
//! The generator is SplitMix64 (Steele, Lea & Flood 2014), which passes
//! BigCrush and needs one `u64` of state.

use std::cell::Cell;

/// SplitMix64 with interior mutability, so a shared `&SeededRng` can be drawn from.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: Cell<u64>,
}

impl SeededRng {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Cell::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let s = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` with 53 random bits.
    pub fn uniform(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal number (Box–Muller).
    pub fn normal(&self) -> f64 {
        // 1 - uniform() is in (0, 1], so the log is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A generator derived from this one's stream for an independent purpose
    /// (e.g. one per named parameter), without disturbing determinism.
    pub fn fork(&self) -> SeededRng {
        SeededRng::new(self.next_u64())
    }
}
