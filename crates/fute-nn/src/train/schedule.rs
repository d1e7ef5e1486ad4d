//! Learning-rate schedule: linear warm-up from 0 to the peak, then linear decay
//! to 0 at the last step (Hugging Face `get_linear_schedule_with_warmup`).

/// Linear warm-up then linear decay over `total_steps` optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearSchedule {
    /// Steps of warm-up.
    pub warmup_steps: usize,
    /// All optimiser steps of the run.
    pub total_steps: usize,
}

impl LinearSchedule {
    /// A schedule whose warm-up is `warmup_fraction` of `total_steps`, rounded up
    /// (as HF's `warmup_ratio`).
    pub fn with_fraction(total_steps: usize, warmup_fraction: f64) -> Self {
        let warmup_steps = (total_steps as f64 * warmup_fraction.max(0.0)).ceil() as usize;
        Self {
            warmup_steps: warmup_steps.min(total_steps),
            total_steps,
        }
    }

    /// Multiplier of the peak learning rate for optimiser step `step` (0-based):
    /// `step / warmup` during warm-up, then `(total − step) / (total − warmup)`.
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let left = self.total_steps.saturating_sub(step) as f64;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        (left / span).max(0.0)
    }
}
