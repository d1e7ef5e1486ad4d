//! `fute-nn`: trainable transformers for fute, written on candle ops.
//!
//! * [`task`]: the [`TaskModel`] interface every architecture implements; training,
//!   prediction, Fisher, PEFT and checkpoints see models only through it;
//! * [`hooks`]: what a forward pass lets PEFT and probes add (architecture-neutral);
//! * [`models`]: the registry (`config.json` `model_type` → architecture) and the
//!   model files; [`models::bert`]: the BERT encoder in the Hugging Face layout;
//! * [`heads`]: BERT's classification / regression / extractive-QA heads ([`BertTaskModel`]);
//! * [`loss`]: cross-entropy, BCE-with-logits and soft cross-entropy/KL on soft
//!   targets, MSE, span cross-entropy;
//! * [`tokenize`]: tokenisation with our own truncation and dynamic padding, and
//!   character offsets for QA;
//! * [`checkpoint`]: saving a task model as a folder `transformers` loads;
//! * [`peft`]: prefix tuning, prompt tuning, LoRA and BitFit, and their task vectors.
//!
//! Every op on the path from a parameter to a loss has a backward pass: candle-nn's
//! fused `LayerNorm` / `softmax_last_dim` (which silently drop gradients) are not
//! used. Parameters are `candle_nn::Var`s in one `VarMap`, named as in HF.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod error;
pub mod fisher;
pub mod heads;
pub mod hooks;
pub mod loss;
pub mod models;
pub mod nn;
pub mod ops;
pub mod params;
pub mod peft;
pub mod rng;
pub mod runtime;
pub mod task;
pub mod tokenize;
pub mod train;

pub use error::{Error, Result};
pub use heads::BertTaskModel;
pub use hooks::Hooks;
pub use models::bert::{BertConfig, BertInput, BertModel, BertOutput};
pub use nn::Mode;
pub use task::{BuildOptions, Forward, HeadSpec, ModelInput, TaskModel, TaskOutput};
pub use tokenize::{EncodedBatch, Encoding, TextInput, TextTokenizer, Truncation};
