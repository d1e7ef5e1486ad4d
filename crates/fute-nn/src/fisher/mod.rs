//! Diagonal Fisher information of a task model: the TaskEmb / FUTE-FIM task
//! embedding (`research/paper.md` §2.6.2 and §3.1).
//!
//! [`fisher_embedding`] runs any [`TaskModel`] in eval mode (no dropout), through
//! the model's own forward pass, over examples with targets and returns named
//! components. With ℓ_i the loss of
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
//! Embedding tables never get a dense gradient: a zero probe on the model's
//! embeddings tap (`words + positions + types` for BERT) gives the gradient of
//! each token's row, the model says which row of each table every position reads
//! ([`TaskModel::embedding_rows`]), and only rows that occur are accumulated (the
//! padding token's row gets none, as with PyTorch's `padding_idx`).
//! [`EmbeddingGradients::Dense`] keeps the plain autograd path for comparison.
//!
//! There is no second forward pass: parameters outside the scope are detached
//! ([`TaskModel::with_live`], so autograd skips their weight gradients) and the
//! activations are read through the taps the model file offers
//! ([`crate::task::ModelDescription::layer_taps`] and `sequence_tap`).
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

mod targets;

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{DType, Tensor, Var};

use crate::hooks::{Hooks, Tap};
use crate::nn::Mode;
use crate::task::{ModelDescription, TaskModel};
use crate::tokenize::{EncodedBatch, Encoding};
use crate::{Error, Result};
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
    /// A parameter read from autograd.
    Dense(Tensor),
    /// Embedding table `k` of the description, accumulated by rows.
    Table(usize),
    /// A `[B, T, H]` tap: summed over real tokens.
    Tokens(String),
    /// A `[B, H]` tap: summed over examples.
    Sequence(String),
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    len: usize,
    kind: SlotKind,
}

impl Slot {
    fn is_activation(&self) -> bool {
        matches!(self.kind, SlotKind::Tokens(_) | SlotKind::Sequence(_))
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

/// Zero-valued probes added to the tapped activations: the gradient of a probe
/// is the gradient of the activation.
struct Probes<'a> {
    wanted: &'a [String],
    vars: Mutex<Vec<(String, Var)>>,
}

impl Tap for Probes<'_> {
    fn tap(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        if !self.wanted.iter().any(|w| w == name) {
            return Ok(x.clone());
        }
        let p = Var::zeros(x.shape(), x.dtype(), x.device())?;
        let out = (x + p.as_tensor())?;
        self.vars
            .lock()
            .expect("probe lock poisoned")
            .push((name.to_string(), p));
        Ok(out)
    }
}

/// Everything a worker needs, shared read-only.
struct Job<'a> {
    /// The model with parameters outside the scope detached.
    model: Box<dyn TaskModel>,
    slots: Vec<Slot>,
    /// Taps to probe: the embeddings sum (sparse tables) and the activations.
    taps: Vec<String>,
    examples: &'a [FisherExample],
    opts: &'a FisherOptions,
    pad_fill: u32,
    hidden: usize,
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
        let device = self.model.device();
        let input = batch.to_input(&device)?;
        let probes = Probes {
            wanted: &self.taps,
            vars: Mutex::new(Vec::new()),
        };
        let hooks = Hooks {
            taps: Some(&probes),
            ..Default::default()
        };
        let out = self
            .model
            .forward_with(&input, &Mode::eval(), &hooks)?
            .output;
        let targets: Vec<&FisherTarget> = idx.iter().map(|&i| &self.examples[i].target).collect();
        let loss = targets::batch_loss(
            &out,
            &targets,
            idx,
            &self.opts.labels,
            self.opts.soft_loss,
            &device,
        )?;
        let grads = loss.backward()?;
        let mask = input.attention_mask.flatten_all()?.to_vec1::<u32>()?;
        let ntok: usize = mask.iter().map(|&m| m as usize).sum();
        sums.tokens += ntok;
        let how = match self.opts.variant {
            FisherVariant::SquareOfMean => Accumulate::Weighted(idx.len() as f32 / self.n as f32),
            _ => Accumulate::Square,
        };
        let h = self.hidden;
        let b = idx.len();
        let probes = probes.vars.into_inner().expect("probe lock poisoned");
        let grad_of = |name: &str| -> Result<Option<Vec<f32>>> {
            match probes.iter().find(|(n, _)| n == name) {
                Some((_, v)) => match grads.get(v.as_tensor()) {
                    Some(g) => Ok(Some(to_f32(g)?)),
                    None => Ok(None),
                },
                None => Ok(None),
            }
        };
        let d = self.model.describe();
        let tables = if self
            .slots
            .iter()
            .any(|s| matches!(s.kind, SlotKind::Table(_)))
        {
            Some((
                self.model.embedding_rows(&input)?,
                grad_of(&d.embeddings_tap)?,
            ))
        } else {
            None
        };

        for (slot, acc) in self.slots.iter().zip(sums.acc.iter_mut()) {
            match &slot.kind {
                SlotKind::Dense(tensor) => {
                    if let Some(g) = grads.get(tensor) {
                        add(acc, &to_f32(g)?, how);
                    }
                }
                SlotKind::Table(k) => {
                    let Some((rows, Some(g))) = &tables else {
                        continue;
                    };
                    let (index, skip) = &rows[*k];
                    // A row's gradient is the sum of the probe's gradient over
                    // the positions that read it (within this unit).
                    let mut sum: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
                    for (p, &row) in index.iter().enumerate() {
                        if Some(row) == *skip {
                            continue;
                        }
                        let r = sum.entry(row).or_insert_with(|| vec![0.0; h]);
                        r.iter_mut()
                            .zip(&g[p * h..(p + 1) * h])
                            .for_each(|(a, x)| *a += x);
                    }
                    for (row, r) in sum {
                        let o = row as usize * h;
                        if o + h > acc.len() {
                            return Err(Error::BadInput(format!(
                                "Fisher: row {row} is outside `{}`",
                                slot.name
                            )));
                        }
                        add(&mut acc[o..o + h], &r, how);
                    }
                }
                SlotKind::Tokens(name) => {
                    let Some(g) = grad_of(name)? else { continue };
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
                SlotKind::Sequence(name) => {
                    let Some(g) = grad_of(name)? else { continue };
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

/// Which parameters a scope differentiates, by name, from the model's layout.
struct Liveness<'a> {
    d: &'a ModelDescription,
    scope: &'a FisherScope,
    layers: Vec<bool>,
    dense_tables: bool,
}

impl Liveness<'_> {
    fn is_table(&self, name: &str) -> bool {
        self.d.embedding_tables.iter().any(|t| t.name == name)
    }

    fn live(&self, name: &str) -> bool {
        let d = self.d;
        if name.starts_with(d.embeddings_prefix.as_str()) {
            return self.scope.embeddings && (self.dense_tables || !self.is_table(name));
        }
        if let Some(i) = d
            .layer_prefixes
            .iter()
            .position(|p| name.starts_with(p.as_str()))
        {
            return self.layers[i];
        }
        if !d.in_backbone(name) {
            return self.scope.head;
        }
        if d.pooler_prefix
            .as_ref()
            .is_some_and(|p| name.starts_with(p.as_str()))
        {
            return self.scope.pooler;
        }
        false
    }
}

/// The components, in output order: parameters (and sparse tables) by name,
/// then the activation taps layer by layer, then the sequence tap.
fn build_slots(
    model: &dyn TaskModel,
    live: &Liveness,
    opts: &FisherOptions,
) -> Result<(Vec<Slot>, Vec<String>)> {
    let d = model.describe();
    let h = d.hidden_size;
    let mut slots = Vec::new();
    let mut taps = Vec::new();
    for (name, var) in model.named_parameters() {
        if live.live(&name) {
            slots.push(Slot {
                len: var.elem_count(),
                kind: SlotKind::Dense(var.as_tensor().clone()),
                name,
            });
        }
    }
    if opts.scope.embeddings && !live.dense_tables {
        for (k, t) in d.embedding_tables.iter().enumerate() {
            let var = model.parameter(&t.name).ok_or_else(|| {
                Error::Bug(format!("embedding table `{}` is not a parameter", t.name))
            })?;
            slots.push(Slot {
                name: t.name.clone(),
                len: var.elem_count(),
                kind: SlotKind::Table(k),
            });
        }
        taps.push(d.embeddings_tap.clone());
    }
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    if opts.scope.activations {
        for (i, pair) in d.layer_taps.iter().enumerate() {
            if live.layers[i] {
                for name in pair {
                    slots.push(Slot {
                        name: name.clone(),
                        len: h,
                        kind: SlotKind::Tokens(name.clone()),
                    });
                    taps.push(name.clone());
                }
            }
        }
        if let Some(name) = &d.sequence_tap {
            slots.push(Slot {
                name: name.clone(),
                len: h,
                kind: SlotKind::Sequence(name.clone()),
            });
            taps.push(name.clone());
        }
    }
    Ok((slots, taps))
}

/// The diagonal Fisher embedding of `model` on `examples` (see the module docs).
///
/// The model is run in eval mode whatever mode it was trained in, through its
/// own forward pass: parameters outside the scope are detached
/// ([`TaskModel::with_live`]) and activations are probed through its taps.
/// Errors on an empty example list, targets that do not fit the head, or a
/// scope naming a layer the model lacks.
pub fn fisher_embedding(
    model: &dyn TaskModel,
    examples: &[FisherExample],
    opts: &FisherOptions,
) -> Result<FisherEmbedding> {
    if examples.is_empty() {
        return Err(Error::BadInput("Fisher: no examples".into()));
    }
    let d = model.describe();
    let layers = layer_flags(&opts.scope.layers, d.num_layers)?;
    let live = Liveness {
        d,
        scope: &opts.scope,
        layers,
        dense_tables: opts.embedding_gradients == EmbeddingGradients::Dense,
    };
    let (slots, taps) = build_slots(model, &live, opts)?;
    let job = Job {
        model: model.with_live(&|n| live.live(n))?,
        slots,
        taps,
        examples,
        opts,
        pad_fill: d.pad_token_id.unwrap_or(0),
        hidden: d.hidden_size,
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
