//! Diagonal Fisher information of a task model: the TaskEmb / FUTE-FIM task
//! embedding (`research/paper.md` §2.6.2 and §3.1).
//!
//! [`fisher_embedding`] runs a [`BertTaskModel`] in eval mode (no dropout) over
//! examples with targets and returns named components. With ℓ_i the loss of
//! example i, N examples and g_b the gradient of the *mean* loss of batch b:
//!
//! | [`FisherVariant`] | value | source |
//! | --- | --- | --- |
//! | `PerExample` | (1/N) Σ_i (∇ℓ_i)² | the poster's empirical Fisher (exact) |
//! | `PerBatch` | (1/N) Σ_b g_b² | Vu et al.'s code |
//! | `SquareOfMean` | (∇ (1/N) Σ_i ℓ_i)² | the released FUTE code |
//!
//! So `PerBatch` with one batch of all N examples is `SquareOfMean / N`, and
//! `PerExample` equals `PerBatch` with batch size 1.
//!
//! Components ([`FisherScope`]): parameters by their HF names (embeddings,
//! a selection of layers, pooler, optionally the head — FUTE excludes it), and
//! Vu et al.'s activation components: per layer the attention context before the
//! output dense (`bert.encoder.layer.{i}.multihead_output`) and the layer output
//! (`….layer_output`), and the pooled CLS output (`cls_output`). For an activation
//! the gradient is masked to real tokens, summed over examples and tokens, squared
//! and divided by the number of real tokens of the batch (for `cls_output` too:
//! Vu's code divides by tokens, not examples), then accumulated and divided by N
//! like the parameters. Under `SquareOfMean` the sums run over all examples and
//! the square is divided by all real tokens.
//!
//! Embedding tables never get a dense gradient: a zero probe on
//! `words + positions + types` gives the gradient of each token's row, and only
//! rows that occur are accumulated (the padding token's row gets none, as with
//! PyTorch's `padding_idx`). [`EmbeddingGradients::Dense`] keeps the plain
//! autograd path for comparison.
//!
//! Work is split over [`FisherOptions::workers`] OS threads, each running candle
//! with one compute thread; units (examples or batches) are dealt to workers in
//! contiguous blocks and their sums added in worker order, so a result depends
//! on the inputs and the options only.
//!
//! Threads: candle 0.11 runs element-wise ops on a process-wide spinning barrier
//! pool of `CANDLE_NUM_THREADS` threads, behind one lock. Two workers then queue on
//! that lock, and its spin-waits cost 4-5x whenever the cores are shared (measured
//! on MiniLM: per-example 1.0 → 4.2-5.3 ex/s with `CANDLE_NUM_THREADS=1` while
//! another job used the machine). Programs should set `CANDLE_NUM_THREADS=1`
//! before their first candle op (the pool is created once).

mod forward;
mod targets;

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use crate::heads::{BertTaskModel, HeadSpec};
use crate::tokenize::{EncodedBatch, Encoding};
use crate::{Error, Result};

use forward::{FisherNet, Liveness};
pub use targets::{FisherTarget, SAMPLED_REGRESSION_RANGE, SAMPLED_REGRESSION_SIGMA};

/// How squared gradients are formed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FisherVariant {
    /// (1/N) Σ_i (∇ℓ_i)²: the exact empirical Fisher diagonal.
    PerExample,
    /// (1/N) Σ_b (∇ mean loss of batch b)²: Vu et al.'s TaskEmb code.
    PerBatch,
    /// (∇ (1/N) Σ_i ℓ_i)²: the released FUTE code.
    SquareOfMean,
}

/// Which labels the loss uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FisherLabels {
    /// The examples' own targets (the empirical Fisher).
    Gold,
    /// Labels drawn from the model's own prediction (Vu et al.'s `use_labels False`):
    /// `trials` classes per example from its softmax (QA: start and end drawn
    /// separately); regression: `trials` values from N(prediction, 0.25²) kept in
    /// [0, 5]. The draws depend on `seed` and the example's index only.
    Sampled {
        /// Draws per example (Vu et al.: 100).
        trials: usize,
        /// Seed of the draws.
        seed: u64,
    },
}

pub use crate::loss::SoftLoss;

/// Which encoder layers a scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSelection {
    /// Every layer.
    All,
    /// These layer indices (0-based).
    Only(Vec<usize>),
    /// No layer.
    None,
}

/// Which components the embedding has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FisherScope {
    /// `bert.embeddings.*` (word, position, token-type tables and LayerNorm).
    pub embeddings: bool,
    /// Parameters of these layers (and, with `activations`, their activation components).
    pub layers: LayerSelection,
    /// `bert.pooler.dense.*` (sequence heads only).
    pub pooler: bool,
    /// The task head (`classifier.*` / `qa_outputs.*`).
    pub head: bool,
    /// Vu et al.'s activation components of the selected layers, plus `cls_output`
    /// for sequence heads.
    pub activations: bool,
}

impl FisherScope {
    /// Every encoder parameter, no head, no activations (the FUTE code).
    pub fn encoder() -> Self {
        Self {
            embeddings: true,
            layers: LayerSelection::All,
            pooler: true,
            head: false,
            activations: false,
        }
    }

    /// Everything Vu et al. save: every parameter including the head, and the
    /// activation components.
    pub fn taskemb() -> Self {
        Self {
            embeddings: true,
            layers: LayerSelection::All,
            pooler: true,
            head: true,
            activations: true,
        }
    }

    /// Only the activation components (of all layers, and CLS).
    pub fn activations_only() -> Self {
        Self {
            embeddings: false,
            layers: LayerSelection::All,
            pooler: false,
            head: false,
            activations: true,
        }
    }
}

impl Default for FisherScope {
    fn default() -> Self {
        Self::encoder()
    }
}

/// How embedding-table gradients are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingGradients {
    /// From a probe on the summed embeddings, only for rows that occur.
    Sparse,
    /// Plain autograd: a dense `[rows, hidden]` gradient per backward pass
    /// (slow; for checks and benchmarks).
    Dense,
}

/// Options of [`fisher_embedding`].
#[derive(Debug, Clone)]
pub struct FisherOptions {
    /// How squared gradients are formed.
    pub variant: FisherVariant,
    /// Examples per batch for `PerBatch` / `SquareOfMean` (consecutive examples,
    /// padded to the longest). `PerExample` runs every example unpadded on its own.
    pub batch_size: usize,
    /// Gold or sampled labels.
    pub labels: FisherLabels,
    /// Loss for soft targets.
    pub soft_loss: SoftLoss,
    /// Which components.
    pub scope: FisherScope,
    /// Sparse (default) or dense embedding-table gradients.
    pub embedding_gradients: EmbeddingGradients,
    /// OS-thread workers (each runs candle with one compute thread when > 1).
    pub workers: usize,
}

impl Default for FisherOptions {
    fn default() -> Self {
        Self {
            variant: FisherVariant::PerExample,
            batch_size: 8,
            labels: FisherLabels::Gold,
            soft_loss: SoftLoss::BceWithLogits,
            scope: FisherScope::encoder(),
            embedding_gradients: EmbeddingGradients::Sparse,
            workers: 2,
        }
    }
}

/// One tokenised example and its target.
#[derive(Debug, Clone, PartialEq)]
pub struct FisherExample {
    /// The unpadded encoding.
    pub encoding: Encoding,
    /// The target.
    pub target: FisherTarget,
}

/// The result: named components, each a flat row-major vector.
#[derive(Debug, Clone)]
pub struct FisherEmbedding {
    /// Parameter components (sorted by HF name), then activation components
    /// (by layer), then `cls_output`.
    pub components: Vec<(String, Vec<f32>)>,
    /// Number of examples N.
    pub examples: usize,
    /// Number of real (non-pad) tokens over all examples.
    pub tokens: usize,
}

impl FisherEmbedding {
    /// The component called `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.components
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// All components concatenated in order.
    pub fn flatten(&self) -> Vec<f32> {
        self.components
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }

    /// Total number of values.
    pub fn len(&self) -> usize {
        self.components.iter().map(|(_, v)| v.len()).sum()
    }

    /// Whether there are no components.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
enum SlotKind {
    Dense(Tensor),
    Word,
    Position,
    TokenType,
    Context(usize),
    LayerOutput(usize),
    Cls,
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    len: usize,
    kind: SlotKind,
}

impl Slot {
    fn is_activation(&self) -> bool {
        matches!(
            self.kind,
            SlotKind::Context(_) | SlotKind::LayerOutput(_) | SlotKind::Cls
        )
    }
}

/// How one unit's gradient enters the sums.
#[derive(Debug, Clone, Copy)]
enum Accumulate {
    /// Add its square.
    Square,
    /// Add it times this weight (square at the end).
    Weighted(f32),
}

fn layer_flags(sel: &LayerSelection, n: usize) -> Result<Vec<bool>> {
    Ok(match sel {
        LayerSelection::All => vec![true; n],
        LayerSelection::None => vec![false; n],
        LayerSelection::Only(v) => {
            let mut f = vec![false; n];
            for &i in v {
                if i >= n {
                    return Err(Error::BadInput(format!(
                        "Fisher scope: layer {i} does not exist (the model has {n})"
                    )));
                }
                f[i] = true;
            }
            f
        }
    })
}

fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// Everything a worker needs, shared read-only.
struct Job<'a> {
    net: FisherNet,
    slots: Vec<Slot>,
    examples: &'a [FisherExample],
    opts: &'a FisherOptions,
    pad_token: Option<u32>,
    pad_fill: u32,
    n: usize,
}

/// Sums of one worker.
struct Sums {
    acc: Vec<Vec<f32>>,
    tokens: usize,
}

impl Job<'_> {
    fn new_sums(&self) -> Sums {
        Sums {
            acc: self.slots.iter().map(|s| vec![0.0f32; s.len]).collect(),
            tokens: 0,
        }
    }

    fn units(&self) -> Vec<Vec<usize>> {
        let b = match self.opts.variant {
            FisherVariant::PerExample => 1,
            _ => self.opts.batch_size.max(1),
        };
        (0..self.n)
            .collect::<Vec<_>>()
            .chunks(b)
            .map(|c| c.to_vec())
            .collect()
    }

    fn run_unit(&self, idx: &[usize], sums: &mut Sums) -> Result<()> {
        let encs: Vec<Encoding> = idx
            .iter()
            .map(|&i| self.examples[i].encoding.clone())
            .collect();
        let seq_len = encs.iter().map(Encoding::len).max().unwrap_or(0);
        if seq_len == 0 {
            return Err(Error::BadInput("Fisher: an example has no tokens".into()));
        }
        let batch = EncodedBatch {
            encodings: encs,
            seq_len,
            pad_id: self.pad_fill,
        };
        let (ids, types, mask) = batch.padded();
        let input = batch.to_input(&self.net.device)?;
        let (out, probes) = self.net.forward(&input)?;
        let targets: Vec<&FisherTarget> = idx.iter().map(|&i| &self.examples[i].target).collect();
        let loss = targets::batch_loss(
            &out,
            &targets,
            idx,
            &self.opts.labels,
            self.opts.soft_loss,
            &self.net.device,
        )?;
        let grads = loss.backward()?;
        let ntok: usize = mask.iter().map(|&m| m as usize).sum();
        sums.tokens += ntok;
        let how = match self.opts.variant {
            FisherVariant::SquareOfMean => Accumulate::Weighted(idx.len() as f32 / self.n as f32),
            _ => Accumulate::Square,
        };
        let h = self.net.hidden;
        let (b, t) = (idx.len(), seq_len);
        let grad_of = |v: &Option<candle_core::Var>| -> Result<Option<Vec<f32>>> {
            match v {
                Some(v) => match grads.get(v.as_tensor()) {
                    Some(g) => Ok(Some(to_f32(g)?)),
                    None => Ok(None),
                },
                None => Ok(None),
            }
        };
        let emb_grad = grad_of(&probes.embeddings)?;

        for (slot, acc) in self.slots.iter().zip(sums.acc.iter_mut()) {
            match &slot.kind {
                SlotKind::Dense(tensor) => {
                    if let Some(g) = grads.get(tensor) {
                        add(acc, &to_f32(g)?, how);
                    }
                }
                SlotKind::Word => {
                    let Some(g) = &emb_grad else { continue };
                    let mut rows: HashMap<u32, Vec<f32>> = HashMap::new();
                    for (p, &id) in ids.iter().enumerate() {
                        if Some(id) == self.pad_token {
                            continue;
                        }
                        let r = rows.entry(id).or_insert_with(|| vec![0.0; h]);
                        r.iter_mut()
                            .zip(&g[p * h..(p + 1) * h])
                            .for_each(|(a, x)| *a += x);
                    }
                    for (id, r) in rows {
                        let o = id as usize * h;
                        add(&mut acc[o..o + h], &r, how);
                    }
                }
                SlotKind::Position => {
                    let Some(g) = &emb_grad else { continue };
                    let mut rows = vec![0.0f32; t * h];
                    for i in 0..b {
                        rows.iter_mut()
                            .zip(&g[i * t * h..(i + 1) * t * h])
                            .for_each(|(a, x)| *a += x);
                    }
                    add(&mut acc[..t * h], &rows, how);
                }
                SlotKind::TokenType => {
                    let Some(g) = &emb_grad else { continue };
                    let n_types = slot.len / h;
                    let mut rows = vec![0.0f32; n_types * h];
                    for (p, &ty) in types.iter().enumerate() {
                        let o = ty as usize * h;
                        rows[o..o + h]
                            .iter_mut()
                            .zip(&g[p * h..(p + 1) * h])
                            .for_each(|(a, x)| *a += x);
                    }
                    add(acc, &rows, how);
                }
                SlotKind::Context(l) | SlotKind::LayerOutput(l) => {
                    let probe = match slot.kind {
                        SlotKind::Context(_) => &probes.context[*l],
                        _ => &probes.layer_output[*l],
                    };
                    let Some(g) = grad_of(probe)? else { continue };
                    let mut s = vec![0.0f32; h];
                    for (p, &m) in mask.iter().enumerate() {
                        if m != 0 {
                            s.iter_mut()
                                .zip(&g[p * h..(p + 1) * h])
                                .for_each(|(a, x)| *a += x);
                        }
                    }
                    add_activation(acc, &s, ntok, how);
                }
                SlotKind::Cls => {
                    let Some(g) = grad_of(&probes.cls)? else {
                        continue;
                    };
                    let mut s = vec![0.0f32; h];
                    for i in 0..b {
                        s.iter_mut()
                            .zip(&g[i * h..(i + 1) * h])
                            .for_each(|(a, x)| *a += x);
                    }
                    add_activation(acc, &s, ntok, how);
                }
            }
        }
        Ok(())
    }

    fn run_units(&self, units: &[Vec<usize>]) -> Result<Sums> {
        let mut sums = self.new_sums();
        for u in units {
            self.run_unit(u, &mut sums)?;
        }
        Ok(sums)
    }
}

fn add(acc: &mut [f32], g: &[f32], how: Accumulate) {
    match how {
        Accumulate::Square => acc.iter_mut().zip(g).for_each(|(a, x)| *a += x * x),
        Accumulate::Weighted(w) => acc.iter_mut().zip(g).for_each(|(a, x)| *a += w * x),
    }
}

fn add_activation(acc: &mut [f32], s: &[f32], ntok: usize, how: Accumulate) {
    match how {
        Accumulate::Square => {
            let d = ntok.max(1) as f32;
            acc.iter_mut().zip(s).for_each(|(a, x)| *a += x * x / d)
        }
        Accumulate::Weighted(w) => acc.iter_mut().zip(s).for_each(|(a, x)| *a += w * x),
    }
}

fn build_slots(model: &BertTaskModel, net: &FisherNet, opts: &FisherOptions) -> Vec<Slot> {
    let cfg = model.config();
    let h = cfg.hidden_size;
    let mut slots = Vec::new();
    for (name, w, b) in net.live_dense() {
        for (suffix, t) in [("weight", w), ("bias", b)] {
            slots.push(Slot {
                name: format!("{name}.{suffix}"),
                len: t.elem_count(),
                kind: SlotKind::Dense(t),
            });
        }
    }
    if opts.scope.embeddings {
        let tables = [
            ("word_embeddings", cfg.vocab_size, SlotKind::Word, &net.word),
            (
                "position_embeddings",
                cfg.max_position_embeddings,
                SlotKind::Position,
                &net.position,
            ),
            (
                "token_type_embeddings",
                cfg.type_vocab_size,
                SlotKind::TokenType,
                &net.token_type,
            ),
        ];
        for (name, rows, kind, table) in tables {
            let kind = match opts.embedding_gradients {
                EmbeddingGradients::Sparse => kind,
                EmbeddingGradients::Dense => SlotKind::Dense(table.clone()),
            };
            slots.push(Slot {
                name: format!("bert.embeddings.{name}.weight"),
                len: rows * h,
                kind,
            });
        }
    }
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, &on) in net.live.activation_layers.iter().enumerate() {
        if on {
            for (what, kind) in [
                ("multihead_output", SlotKind::Context(i)),
                ("layer_output", SlotKind::LayerOutput(i)),
            ] {
                slots.push(Slot {
                    name: format!("bert.encoder.layer.{i}.{what}"),
                    len: h,
                    kind,
                });
            }
        }
    }
    if net.live.cls {
        slots.push(Slot {
            name: "cls_output".into(),
            len: h,
            kind: SlotKind::Cls,
        });
    }
    slots
}

/// The diagonal Fisher embedding of `model` on `examples` (see the module docs).
///
/// The model is run in eval mode whatever mode it was trained in. Errors on an
/// empty example list, targets that do not fit the head, or a scope naming a
/// layer the model lacks.
pub fn fisher_embedding(
    model: &BertTaskModel,
    examples: &[FisherExample],
    opts: &FisherOptions,
) -> Result<FisherEmbedding> {
    if examples.is_empty() {
        return Err(Error::BadInput("Fisher: no examples".into()));
    }
    let cfg = model.config();
    let n_layers = model.bert.layers.len();
    let scope = &opts.scope;
    let layers = layer_flags(&scope.layers, n_layers)?;
    let has_pooler = !matches!(model.spec, HeadSpec::QuestionAnswering);
    let dense_tables = opts.embedding_gradients == EmbeddingGradients::Dense;
    let live = Liveness {
        embeddings: scope.embeddings,
        dense_tables,
        layers: layers.clone(),
        pooler: scope.pooler && has_pooler,
        head: scope.head,
        activation_layers: if scope.activations {
            layers
        } else {
            vec![false; n_layers]
        },
        cls: scope.activations && has_pooler,
    };
    let net = FisherNet::new(model, live)?;
    let slots = build_slots(model, &net, opts);
    let job = Job {
        net,
        slots,
        examples,
        opts,
        pad_token: cfg.pad_token_id,
        pad_fill: cfg.pad_token_id.unwrap_or(0),
        n: examples.len(),
    };
    let units = job.units();
    let workers = opts.workers.clamp(1, units.len());
    let sums = if workers == 1 {
        vec![job.run_units(&units)?]
    } else {
        let per = units.len().div_ceil(workers);
        let job = &job;
        std::thread::scope(|s| {
            let handles: Vec<_> = units
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || -> Result<Sums> {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(1)
                            .build()
                            .map_err(|e| Error::Bug(format!("thread pool: {e}")))?;
                        pool.install(|| job.run_units(chunk))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("Fisher worker panicked"))
                .collect::<Result<Vec<_>>>()
        })?
    };
    let mut iter = sums.into_iter();
    let mut total = iter.next().expect("at least one worker");
    for s in iter {
        total.tokens += s.tokens;
        for (a, b) in total.acc.iter_mut().zip(&s.acc) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }
    let n = job.n as f32;
    let components = job
        .slots
        .iter()
        .zip(total.acc)
        .map(|(slot, mut v)| {
            match opts.variant {
                FisherVariant::SquareOfMean => {
                    let d = if slot.is_activation() {
                        total.tokens.max(1) as f32
                    } else {
                        1.0
                    };
                    v.iter_mut().for_each(|x| *x = *x * *x / d);
                }
                _ => v.iter_mut().for_each(|x| *x /= n),
            }
            (slot.name.clone(), v)
        })
        .collect();
    Ok(FisherEmbedding {
        components,
        examples: job.n,
        tokens: total.tokens,
    })
}
