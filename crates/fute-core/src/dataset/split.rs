//! Deterministic train/dev/test splits by seeded hash of the example id.
//!
//! An example's split depends only on (seed, id), so adding examples to a
//! dataset never moves the existing ones between splits.

use super::example::{Example, Split};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How a dataset is split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Seed mixed into the hash.
    pub seed: u64,
    /// Fraction of examples in dev.
    pub dev: f64,
    /// Fraction of examples in test.
    pub test: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            seed: 42,
            dev: 0.1,
            test: 0.1,
        }
    }
}

impl SplitConfig {
    /// The split of an example with this `id` (ignoring any fixed split).
    pub fn assign(&self, id: &str) -> Split {
        let u = unit_hash(self.seed, id);
        if u < self.test {
            Split::Test
        } else if u < self.test + self.dev {
            Split::Dev
        } else {
            Split::Train
        }
    }

    /// The split of `ex`: its fixed split if it has one, else by hash.
    pub fn split_of(&self, ex: &Example) -> Split {
        ex.fixed_split.unwrap_or_else(|| self.assign(&ex.id))
    }
}

/// A number in [0, 1) derived from sha256(seed, id).
pub fn unit_hash(seed: u64, id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    let x = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    (x >> 11) as f64 / (1u64 << 53) as f64
}
