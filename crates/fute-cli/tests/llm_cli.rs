//! `fute prompts` and `fute embed llm` end to end. The real tier uses the
//! packaged SmolLM2 GGUF (skipped until `fute assets fetch --all` has run,
//! unless FUTE_REQUIRE_ASSETS=1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fute(workspace: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fute"))
        .arg("--workspace")
        .arg(workspace)
        .args(args)
        .output()
        .expect("runs fute")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

#[test]
fn prompts_list_shows_the_papers_sets() {
    let ws = tempfile::tempdir().unwrap();
    for (set, first) in [
        (
            "sa",
            "Does the movie review below make someone want to watch it?",
        ),
        (
            "nli",
            "Given that {{premise}} Does it follow that {{hypothesis}}",
        ),
    ] {
        let o = fute(ws.path(), &["prompts", "list", "--prompt-set", set]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(out.contains(first), "{out}");
        assert_eq!(out.matches(" vanilla ").count(), 10, "{out}");
        assert_eq!(out.matches(" cot ").count(), 3, "{out}");
    }
    let o = fute(ws.path(), &["prompts", "list", "--prompt-set", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("sa, nli"), "{}", text(&o.stderr));
}

#[test]
fn bad_prompt_requests_are_user_errors() {
    let ws = tempfile::tempdir().unwrap();
    let csv = ws.path().join("r.csv");
    std::fs::write(&csv, "review,stars\ngood,pos\nbad,neg\nfine,pos\n").unwrap();
    let o = fute(
        ws.path(),
        &[
            "data",
            "import",
            "r",
            "--file",
            csv.to_str().unwrap(),
            "--schema",
            "classification",
            "--labels",
            "neg,pos",
            "--map",
            "text=review",
            "--map",
            "label=stars",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Its labels share nothing with the sentiment set: say how to map them.
    let o = fute(
        ws.path(),
        &["prompts", "evaluate", "--datasets", "r", "--no-fute"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--label-map"),
        "{}",
        text(&o.stderr)
    );
    let o = fute(
        ws.path(),
        &[
            "prompts",
            "evaluate",
            "--datasets",
            "r",
            "--no-fute",
            "--label-map",
            "neg=negative,pos=great",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("`great`"), "{}", text(&o.stderr));
    let o = fute(
        ws.path(),
        &[
            "prompts",
            "evaluate",
            "--datasets",
            "r",
            "--no-fute",
            "--label-map",
            "meh=negative",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("`meh`"), "{}", text(&o.stderr));
    // FUTE rows need a corpus.
    let o = fute(ws.path(), &["prompts", "evaluate", "--datasets", "r"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // A prompt index the set lacks.
    let o = fute(
        ws.path(),
        &["embed", "llm", "--prompt", "13", "--corpus", "u"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("13"), "{}", text(&o.stderr));
}

#[test]
fn a_packaged_llm_not_fetched_is_named_with_its_fetch_command() {
    let ws = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fute"))
            .arg("--workspace")
            .arg(ws.path())
            .args(args)
            .env("FUTE_ASSETS", ws.path().join("no-assets"))
            .output()
            .expect("runs fute")
    };
    let csv = ws.path().join("r.csv");
    std::fs::write(&csv, "review,stars\ngood,pos\nbad,neg\nfine,pos\n").unwrap();
    let file = csv.to_str().unwrap();
    let o = run(&[
        "data",
        "import",
        "r",
        "--file",
        file,
        "--schema",
        "classification",
        "--labels",
        "neg,pos",
        "--map",
        "text=review",
        "--map",
        "label=stars",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let evaluate = [
        "prompts",
        "evaluate",
        "--datasets",
        "r",
        "--no-fute",
        "--label-map",
        "neg=negative,pos=positive",
    ];
    for (llm, asset) in [("gemma3", "gemma3"), ("smollm2", "smollm2")] {
        let mut args = evaluate.to_vec();
        args.extend(["--llm", llm]);
        let o = run(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("asset `{asset}` is not fetched")),
            "{err}"
        );
        assert!(err.contains(&format!("fute assets fetch {asset}")), "{err}");
    }
    // A packaged LLM and a file of one's own are two answers to one question.
    let mut args = evaluate.to_vec();
    args.extend(["--llm", "gemma3", "--gguf", "x.gguf"]);
    assert_eq!(run(&args).status.code(), Some(2));
}

#[test]
fn real_prompt_selection_table_then_a_rerun_from_the_cache() {
    if fute_core::testing::real_asset("smollm2").is_none()
        || fute_core::testing::real_asset("rotten-tomatoes").is_none()
    {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let args = [
        "prompts",
        "evaluate",
        "--prompt-set",
        "sa",
        "--datasets",
        "rotten-tomatoes",
        "--eval-limit",
        "3",
        "--spell-inputs",
        "1",
        "--cot-max-tokens",
        "4",
        "--no-fute",
    ];
    let o = fute(ws.path(), &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for row in [
        "MI",
        "LocalE",
        "GlobalE",
        "ZPS-Log",
        "ZPS-Prob",
        "ZPS-Vote",
        "Self-Select",
        "SPELL",
        "MDL",
    ] {
        assert!(out.contains(&format!("\n{row} ")), "no row {row}:\n{out}");
    }
    assert!(out.contains("rotten-tomatoes (3 examples)"), "{out}");
    assert!(!out.contains(", 0 made."), "{out}");
    // The rerun is answered entirely from the workspace's call cache.
    let again = fute(ws.path(), &args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let out2 = text(&again.stdout);
    assert!(out2.contains(", 0 made."), "{out2}");
    let table =
        |s: &str| s[s.find("averaged over").unwrap()..s.find("LLM calls").unwrap()].to_string();
    assert_eq!(table(&out), table(&out2));
}

#[test]
fn real_llm_mte_lands_in_the_store_and_is_found_again() {
    if fute_core::testing::real_asset("smollm2").is_none()
        || fute_core::testing::real_asset("wordnet").is_none()
    {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let o = fute(
        ws.path(),
        &[
            "corpus",
            "build",
            "u",
            "--from",
            "wordnet-examples",
            "--per-source",
            "6",
            "--shape",
            "single",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let surrogate = tiny_bert();
    let args = [
        "embed",
        "llm",
        "--prompt-set",
        "sa",
        "--prompt",
        "4",
        "--corpus",
        "u",
        "--method",
        "fim",
        "--surrogate",
        surrogate.to_str().unwrap(),
        "--max-len",
        "32",
        "--batch",
        "4",
        "--lr",
        "1e-3",
        "--workers",
        "1",
    ];
    let o = fute(ws.path(), &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("fim MTE of "), "{out}");
    assert!(out.contains(":sa#4"), "{out}");
    assert!(
        text(&o.stderr).contains("0 LLM calls answered from the cache, 6 made"),
        "{}",
        text(&o.stderr)
    );
    let ls = fute(ws.path(), &["ls", "--json"]);
    assert!(
        text(&ls.stdout).contains("prompted-llm"),
        "{}",
        text(&ls.stdout)
    );
    let again = fute(ws.path(), &args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("already in the store"));
    assert!(
        text(&again.stderr).contains("6 LLM calls answered from the cache, 0 made"),
        "{}",
        text(&again.stderr)
    );
    // Another prompt is another subject: a new MTE.
    let mut other = args.to_vec();
    other[5] = "6";
    let o = fute(ws.path(), &other);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("already in the store"));
}
