//! `fute`: the pipeline. Probe sets from datasets and models, embedding methods
//! run on a fixed surrogate, DTEs and MTEs stored and ranked in one space.

#![warn(missing_docs)]

pub mod bench;
pub mod embed;
pub mod finetune;
pub mod fit;
pub mod map;
pub mod methods;
pub mod model_outputs;
pub mod probe;
pub mod prompt_eval;
pub mod prompted;
pub mod report;
pub mod surrogate;
pub mod transfer;
