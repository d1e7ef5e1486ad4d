//! Every documented user error exits 1 with a message that says what, where and
//! how to fix it (README: "1 bad input or environment … 70 internal error").
//! Each row is one mistake a person makes, run against the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fute(ws: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fute"))
        .arg("--workspace")
        .arg(ws)
        .args(args)
        .env("FUTE_ASSETS", ws.join("no-assets"))
        .output()
        .expect("runs fute")
}

fn tiny_bert() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fute-nn/tests/fixtures/tiny-bert")
        .display()
        .to_string()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

const GOOD: &str = "{\"id\":\"1\",\"text\":\"the man is good\",\"label\":\"positive\"}\n\
                    {\"id\":\"2\",\"text\":\"the man is bad\",\"label\":\"negative\"}\n";

#[test]
fn every_documented_user_error_exits_1_and_says_how_to_fix_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    let d = |name: &str, body: &str| write(ws, name, body);
    let good = d("good.jsonl", GOOD);
    let labels = [
        "--schema",
        "classification",
        "--labels",
        "negative,positive",
    ];
    let imp = |name: &str, file: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["data", "import", name, "--file", file]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let ok = fute(
        ws,
        &imp("s", &good, &labels)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let embedded = fute(
        ws,
        &[
            "embed",
            "dataset",
            "s",
            "--method",
            "textemb",
            "--surrogate",
            &tiny_bert(),
            "--max-len",
            "16",
            "--json",
        ],
    );
    assert_eq!(embedded.status.code(), Some(0));
    let id = serde_json::from_slice::<serde_json::Value>(&embedded.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let empty_dir = ws.join("empty-model");
    std::fs::create_dir(&empty_dir).unwrap();
    let empty_dir = empty_dir.display().to_string();
    let out = ws.join("m").display().to_string();
    let tiny = tiny_bert();
    // The tiny BERT with its config.json edited: an unsupported model_type, a
    // missing field, and layer counts its checkpoint does not have.
    let edited = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| -> String {
        let dir = ws.join(name);
        std::fs::create_dir(&dir).unwrap();
        for f in ["model.safetensors", "tokenizer.json", "vocab.txt"] {
            std::fs::copy(Path::new(&tiny).join(f), dir.join(f)).unwrap();
        }
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(&tiny).join("config.json")).unwrap())
                .unwrap();
        edit(&mut cfg);
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        dir.display().to_string()
    };
    // T5 is supported since 2026-12-01: an architecture fute has no model file for.
    let xlnet = edited("xlnet", &|c| c["model_type"] = "xlnet".into());
    let no_hidden = edited("no-hidden", &|c| {
        c.as_object_mut().unwrap().remove("hidden_size");
    });
    let layers3 = edited("layers3", &|c| c["num_hidden_layers"] = 3.into());
    let layers1 = edited("layers1", &|c| c["num_hidden_layers"] = 1.into());
    // A GPT-2 folder (the conformance fixture, the tiny BERT's tokenizer) whose
    // c_attn weight claims Linear layout [48, 16]: the header's shape is
    // edited in place (same length), the bytes stay.
    let gpt2_bad = {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fute-nn/tests/fixtures/conformance/gpt2/model");
        let dir = ws.join("gpt2-bad");
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        std::fs::copy(
            Path::new(&tiny).join("tokenizer.json"),
            dir.join("tokenizer.json"),
        )
        .unwrap();
        let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        let at = header.find("\"h.1.attn.c_attn.weight\"").unwrap();
        let shape = at + header[at..].find("[16,48]").unwrap();
        let mut edited = bytes.clone();
        edited[8 + shape..8 + shape + 7].copy_from_slice(b"[48,16]");
        std::fs::write(dir.join("model.safetensors"), edited).unwrap();
        dir.display().to_string()
    };
    let train_on = |base: &str| sv(&["train", "--base", base, "--dataset", "s", "--out", &out]);

    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        // fute data import: the file
        (imp("x", &d("x.txt", GOOD), &labels), vec!["cannot tell the format", "--format jsonl"]),
        (imp("x", &d("bad.jsonl", "{\"text\":\"a\",\"label\":\"positive\"}\n{oops\n"), &labels), vec!["bad.jsonl:2", "invalid JSON"]),
        (imp("x", &d("lab.jsonl", "{\"text\":\"a\",\"label\":\"meh\"}\n"), &labels), vec!["lab.jsonl:1", "field `label`", "unknown label `meh`", "negative, positive"]),
        (imp("x", &d("empty.jsonl", "\n"), &labels), vec!["empty.jsonl", "no examples"]),
        (imp("x", &d("dup.jsonl", "{\"id\":\"a\",\"text\":\"x\",\"label\":\"positive\"}\n{\"id\":\"a\",\"text\":\"y\",\"label\":\"positive\"}\n"), &labels), vec!["dup.jsonl:2", "duplicate id `a`", "line 1"]),
        (imp("x", &d("blank.jsonl", "{\"text\":\"  \",\"label\":\"positive\"}\n"), &labels), vec!["blank.jsonl:1", "field `text`", "empty text"]),
        (imp("x", &d("zw.jsonl", "{\"text\":\"\u{200B}\",\"label\":\"positive\"}\n"), &labels), vec!["zw.jsonl:1", "shows no characters"]),
        (imp("x", &d("qa.jsonl", "{\"question\":\"who\",\"context\":\"the man\",\"answer\":{\"text\":\"dog\"}}\n"), &["--schema", "extractive-qa"]), vec!["qa.jsonl:1", "answer.text", "does not occur in the context"]),
        (imp("x", &d("reg.jsonl", "{\"text\":\"a\",\"value\":\"high\"}\n"), &["--schema", "regression"]), vec!["reg.jsonl:1", "field `value`", "expected a number"]),
        (imp("x", &d("r.csv", "review\ngood\n"), &["--schema", "classification", "--labels", "negative,positive", "--map", "text=comment"]), vec!["r.csv:1", "no column `comment`", "review"]),
        // fute data import: the request
        // (the same file again is a no-op; other content is refused)
        (imp("s", &d("other.jsonl", "{\"text\":\"fine\",\"label\":\"positive\"}\n{\"text\":\"poor\",\"label\":\"negative\"}\n"), &labels), vec!["already exists", "--force"]),
        (imp("x", &good, &["--schema", "classification"]), vec!["needs --labels", "--labels negative,positive"]),
        (imp("x", &good, &["--schema", "classification", "--labels", "positive"]), vec!["at least two labels"]),
        (imp("x", &good, &["--schema", "classification", "--labels", "a,a"]), vec!["listed twice"]),
        (imp("x", &good, &["--schema", "classification", "--labels", "negative,positive", "--map", "text=review"]), vec!["--map applies to CSV"]),
        (imp("x", &good, &["--schema", "classification", "--labels", "negative,positive", "--dev", "0.6", "--test", "0.6"]), vec!["--dev and --test"]),
        (imp("../x", &good, &labels), vec!["invalid dataset name", "never a path"]),
        (imp("x", &ws.join("missing.jsonl").display().to_string(), &labels), vec!["missing.jsonl"]),
        // names of things that do not exist
        (vec!["data".into(), "show".into(), "nope".into()], vec!["unknown dataset `nope`", "fute data import"]),
        (vec!["corpus".into(), "show".into(), "nope".into()], vec!["no corpus `nope`", "fute corpus build"]),
        (vec!["show".into(), "ffffffffffff".into()], vec!["ffffffffffff"]),
        (vec!["similarity".into(), id.clone(), "ffffffffffff".into()], vec!["ffffffffffff"]),
        (vec!["export".into(), "ffffffffffff".into()], vec!["ffffffffffff"]),
        (vec!["rank".into(), "--target".into(), id.clone(), "--by".into(), "curvegrad".into()], vec!["--by curvegrad", "textemb"]),
        // fute train
        (sv(&["train", "--base", &tiny, "--dataset", "s", "--out", &out, "--epochs", "0"]), vec!["at least 1"]),
        (sv(&["train", "--base", &tiny, "--dataset", "s", "--out", &out, "--warmup", "1.5"]), vec!["--warmup"]),
        (sv(&["train", "--base", "no-such-model", "--dataset", "s", "--out", &out]), vec!["neither a folder nor a known asset", "fute assets list"]),
        (sv(&["train", "--base", &empty_dir, "--dataset", "s", "--out", &out]), vec!["has no config.json", "model folder needs"]),
        (sv(&["train", "--base", &tiny, "--dataset", "nope", "--out", &out]), vec!["unknown dataset `nope`"]),
        (sv(&["train", "--base", &tiny, "--dataset", "s", "--out", &out, "--max-len", "500"]), vec!["--max-len 500", "40 positions"]),
        (sv(&["train", "--base", &tiny, "--dataset", "s", "--out", &out, "--max-len", "2"]), vec!["maximum length 2", "at least 3"]),
        // model folders that do not match what fute implements or what they claim
        (train_on(&xlnet), vec!["xlnet/config.json", "model_type `xlnet` is not supported", "bert, roberta, distilbert, gpt2, llama, t5"]),
        (train_on(&no_hidden), vec!["no-hidden/config.json", "`hidden_size` is missing"]),
        (train_on(&layers3), vec!["layers3/model.safetensors", "bert.encoder.layer.2.", "is missing"]),
        (train_on(&layers1), vec!["layers1/model.safetensors", "encoder.layer.1.", "config.json disagree"]),
        (train_on(&gpt2_bad), vec!["gpt2-bad/model.safetensors", "`h.1.attn.c_attn.weight`", "[48, 16]", "expects [16, 48]"]),
        // fute predict
        (sv(&["predict", "--model", &tiny, "--dataset", "s"]), vec!["declares no task head", "fute train"]),
        (sv(&["predict", "--model", &empty_dir, "--dataset", "s"]), vec!["has no config.json"]),
        // fute embed
        (sv(&["embed", "dataset", "s", "--method", "textemb", "--surrogate", "no-such-model"]), vec!["neither a model folder nor a model asset"]),
        (sv(&["embed", "dataset", "s", "--method", "textemb", "--surrogate", &empty_dir]), vec!["lacks config.json"]),
        (sv(&["embed", "dataset", "s", "--method", "textemb", "--surrogate", &tiny, "--max-len", "41"]), vec!["--max-len 41", "40 positions"]),
        (sv(&["embed", "model", &tiny, "--corpus", "nope", "--surrogate", &tiny, "--method", "textemb", "--max-len", "16"]), vec!["nope"]),
        // prompt sets
        (sv(&["prompts", "list", "--prompt-set", "no-such-set.toml"]), vec!["no prompt set `no-such-set.toml`", ".toml or .json"]),
    ];
    let mut failures = Vec::new();
    for (args, words) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = fute(ws, &a);
        let e = String::from_utf8_lossy(&o.stderr);
        let missing: Vec<&&str> = words.iter().filter(|w| !e.contains(**w)).collect();
        if o.status.code() != Some(1) || !missing.is_empty() {
            failures.push(format!(
                "fute {}\n  exit {:?}, missing {missing:?}\n  stderr: {e}",
                a.join(" "),
                o.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
