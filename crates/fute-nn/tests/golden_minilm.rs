//! Real tier: parity with PyTorch + transformers on the real all-MiniLM-L6-v2
//! (fixtures from `scripts/golden/bert_golden.py`, float64 references; the model
//! comes from `fute_core::testing::real_asset("minilm")`, skipped when absent).
//!
//! Checked: token ids, token types and character offsets of the HF fast tokenizer
//! (non-ASCII text, a pair, three truncation cases); first four tokens' last hidden
//! states, pooled output, logits, loss; per-parameter gradient sum, L2 norm, first 8
//! values (and the [CLS] row of the word-embedding gradient) for all 103 parameters.
//! Run with `--nocapture` to see the errors reached.
//!
//! Tolerances (reached in brackets): f32 outputs and loss 1e-5 [≤ 1.1e-6], f32
//! gradient norms/sums/first values 1e-4 [≤ 4e-5, the first values measured against
//! the tensor's RMS entry]; f64 everything 1e-12 [≤ 1e-13].

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{fixture, input_from_json, json, rel_err, tensors};
use fute_nn::TaskModel;
use fute_nn::{
    loss, BertTaskModel, BuildOptions, HeadSpec, Mode, TextInput, TextTokenizer, Truncation,
};

fn minilm() -> Option<std::path::PathBuf> {
    fute_core::testing::real_asset("minilm")
}

fn offsets_of(e: &fute_nn::Encoding) -> Vec<(usize, usize)> {
    e.offsets.iter().map(|o| o.unwrap_or((0, 0))).collect()
}

#[test]
fn minilm_tokenizer_matches_hf() {
    let Some(dir) = minilm() else { return };
    let tok = TextTokenizer::from_folder(&dir).unwrap();
    let meta = json("minilm-golden.json");
    let batch: Vec<(String, Option<String>)> =
        serde_json::from_value(meta["batch"].clone()).unwrap();
    let mut inputs = Vec::new();
    for (i, (first, second)) in batch.iter().enumerate() {
        let input = match second {
            Some(s) => TextInput::Pair(first, s),
            None => TextInput::Single(first),
        };
        inputs.push(input);
        let e = tok.encode(input, 128, Truncation::LongestFirst).unwrap();
        let hf = &meta["encodings"][i];
        let ids: Vec<u32> = serde_json::from_value(hf["input_ids"].clone()).unwrap();
        let types: Vec<u32> = serde_json::from_value(hf["token_type_ids"].clone()).unwrap();
        let offs: Vec<(usize, usize)> = serde_json::from_value(hf["offsets"].clone()).unwrap();
        let seqs: Vec<Option<usize>> = serde_json::from_value(hf["sequence_ids"].clone()).unwrap();
        assert_eq!(e.ids, ids, "{first}");
        assert_eq!(e.type_ids, types, "{first}");
        assert_eq!(offsets_of(&e), offs, "character offsets of {first}");
        assert_eq!(e.sequence_ids, seqs, "{first}");
    }
    // Mixed single/pair batch, padded to its longest example.
    let b = tok
        .encode_batch(&inputs, 128, Truncation::LongestFirst)
        .unwrap();
    let ours = b.to_input(&Device::Cpu).unwrap();
    let hf = input_from_json(&meta["padded"]);
    assert_eq!(
        ours.input_ids.to_vec2::<u32>().unwrap(),
        hf.input_ids.to_vec2::<u32>().unwrap()
    );
    assert_eq!(
        ours.token_type_ids
            .as_ref()
            .unwrap()
            .to_vec2::<u32>()
            .unwrap(),
        hf.token_type_ids
            .as_ref()
            .unwrap()
            .to_vec2::<u32>()
            .unwrap()
    );
    assert_eq!(
        ours.attention_mask.to_vec2::<u32>().unwrap(),
        hf.attention_mask.to_vec2::<u32>().unwrap()
    );

    for case in meta["truncation"].as_array().unwrap() {
        let first = case["first"].as_str().unwrap();
        let strategy = match case["strategy"].as_str().unwrap() {
            "longest_first" => Truncation::LongestFirst,
            "only_second" => Truncation::OnlySecond,
            s => panic!("strategy {s}"),
        };
        let max_len = case["max_length"].as_u64().unwrap() as usize;
        let input = match case["second"].as_str() {
            Some(s) => TextInput::Pair(first, s),
            None => TextInput::Single(first),
        };
        let e = tok.encode(input, max_len, strategy).unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        let types: Vec<u32> = serde_json::from_value(case["token_type_ids"].clone()).unwrap();
        assert_eq!(e.ids, ids, "{strategy:?} {max_len}");
        assert_eq!(e.type_ids, types, "{strategy:?} {max_len}");
        if !case["offsets"].is_null() {
            let offs: Vec<(usize, usize)> =
                serde_json::from_value(case["offsets"].clone()).unwrap();
            assert_eq!(offsets_of(&e), offs, "{strategy:?} {max_len}");
        }
    }
}

fn run(dtype: DType, tol_out: f64, tol_grad: f64) {
    let Some(dir) = minilm() else { return };
    let meta = json("minilm-golden.json");
    let golden = tensors("minilm-golden.safetensors");
    let opts = BuildOptions {
        dtype,
        device: Device::Cpu,
        seed: 0,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let model = BertTaskModel::from_folder(&dir, HeadSpec::Classification { num_labels: 3 }, &opts)
        .unwrap();
    assert_eq!(model.num_parameters(), 22_714_371);
    for p in ["classifier.weight", "classifier.bias"] {
        model.set_parameter(p, &golden[p]).unwrap();
    }
    let input = input_from_json(&meta["padded"]);
    // The encoder on its own (for the pooler), then the task model.
    let enc = model.bert.forward(&input, &Mode::eval()).unwrap();
    let out = model.forward(&input, &Mode::eval()).unwrap();
    let mut report: Vec<(String, f64)> = Vec::new();
    let mut check = |what: &str, e: f64, tol: f64| {
        assert!(
            e <= tol,
            "{dtype:?} {what}: relative error {e:.3e} > {tol:.0e}"
        );
        report.push((what.to_string(), e));
    };
    let first4 = enc.sequence_output.i((.., ..4, ..)).unwrap();
    check(
        "hidden[:, :4]",
        rel_err(&first4, &golden["last_hidden_state_first4"]),
        tol_out,
    );
    check(
        "pooled",
        rel_err(
            enc.pooled_output.as_ref().unwrap(),
            &golden["pooler_output"],
        ),
        tol_out,
    );
    let logits = out.logits().unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(meta["logits"].clone()).unwrap();
    let want = Tensor::from_vec(rows.concat(), (4, 3), &Device::Cpu).unwrap();
    check("logits", rel_err(logits, &want), tol_out);
    let labels: Vec<u32> = serde_json::from_value(meta["labels"].clone()).unwrap();
    let l = loss::cross_entropy(
        logits,
        &Tensor::new(labels.as_slice(), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let lv = l.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    let want = meta["loss"].as_f64().unwrap();
    check("loss", (lv - want).abs() / want, tol_out);

    let grads = l.backward().unwrap();
    let params = model.named_parameters();
    let golden_grads = meta["grads"].as_object().unwrap();
    assert_eq!(
        params.len(),
        golden_grads.len(),
        "parameter count differs from torch"
    );
    let (mut worst_norm, mut worst_sum, mut worst_first8) = (0f64, 0f64, 0f64);
    for (name, var) in &params {
        let hf_name = name.clone();
        let g_ref = &golden_grads[&hf_name];
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let g = g.to_dtype(DType::F64).unwrap();
        let flat = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let norm_ref = g_ref["norm"].as_f64().unwrap();
        let norm = flat.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm_ref < 1e-12 {
            // Exactly-zero true gradient (attention key biases): ours must be negligible too.
            assert!(norm < 1e-6, "{name}: norm {norm:e} should be ~0");
            continue;
        }
        let e_norm = (norm - norm_ref).abs() / norm_ref;
        // Sums may cancel, so scale their error by the gradient's L1 size (≈ norm·√n).
        let sum: f64 = flat.iter().sum();
        let scale = norm_ref * (flat.len() as f64).sqrt();
        let e_sum = (sum - g_ref["sum"].as_f64().unwrap()).abs() / scale;
        let first8: Vec<f64> = serde_json::from_value(g_ref["first8"].clone()).unwrap();
        let mut ours8 = flat[..first8.len()].to_vec();
        let mut ref8 = first8;
        if let Some(row) = g_ref.get("row101_first8") {
            let row: Vec<f64> = serde_json::from_value(row.clone()).unwrap();
            ours8.extend(g.i(101).unwrap().to_vec1::<f64>().unwrap()[..8].iter());
            ref8.extend(row);
        }
        // First values are compared to the tensor's largest entry (≥ norm / √n).
        let e8 = ours8
            .iter()
            .zip(&ref8)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
            / (norm_ref / (flat.len() as f64).sqrt());
        worst_norm = worst_norm.max(e_norm);
        worst_sum = worst_sum.max(e_sum);
        worst_first8 = worst_first8.max(e8);
        assert!(
            e_norm <= tol_grad,
            "{dtype:?} {name}: grad norm {norm:e} vs {norm_ref:e}"
        );
        assert!(
            e_sum <= tol_grad,
            "{dtype:?} {name}: grad sum error {e_sum:e}"
        );
        assert!(
            e8 <= tol_grad,
            "{dtype:?} {name}: first values {ours8:?} vs {ref8:?}"
        );
    }
    check("grad norms", worst_norm, tol_grad);
    check("grad sums (scaled by norm·√n)", worst_sum, tol_grad);
    check(
        "grad first values (scaled by norm/√n)",
        worst_first8,
        tol_grad,
    );
    for (what, e) in report {
        eprintln!("MiniLM {dtype:?} {what}: {e:.2e}");
    }
    eprintln!(
        "MiniLM {dtype:?}: load + forward + backward {:.2?}",
        t0.elapsed()
    );
    assert!(fixture("minilm-golden.json").is_file());
}

#[test]
fn minilm_matches_pytorch_in_f32() {
    run(DType::F32, 1e-5, 1e-4);
}

#[test]
fn minilm_matches_pytorch_in_f64() {
    run(DType::F64, 1e-12, 1e-12);
}
