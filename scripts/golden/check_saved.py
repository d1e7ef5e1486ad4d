#!/usr/bin/env python3
"""Check that folders saved by fute-nn load unchanged in Hugging Face transformers.

How to run (venv as in bert_golden.py, outside the repository):

    FUTE_NN_KEEP_SAVED=/tmp/fute-saved cargo test -p fute-nn --test checkpoint save_then_load
    /tmp/golden-venv/bin/python scripts/golden/check_saved.py /tmp/fute-saved

The test saves the tiny fixture BERT with each head (cls, reg, qa) under the folder, together with
`fute_outputs.json` (the input batch and fute's outputs). The conformance suite does the same for
every architecture, one subfolder each (`FUTE_NN_KEEP_SAVED=DIR cargo test -p fute-nn --test
conformance save_reload`, then `check_saved.py DIR/roberta` etc.): those folders are loaded with
`AutoModelForSequenceClassification` / `AutoModelForQuestionAnswering`. This script loads every folder with
`BertForSequenceClassification` / `BertForQuestionAnswering` (`from_pretrained`, no arguments),
checks that no weight was reported missing or unexpected, that config fields came through, and that
transformers' outputs equal fute's (float32, tolerance 1e-5 relative to the largest output).
"""

import json
import pathlib
import sys

import torch
from transformers import (AutoConfig, AutoModelForQuestionAnswering,
                          AutoModelForSequenceClassification, BertForQuestionAnswering,
                          BertForSequenceClassification)


def values(v):
    """fute's outputs: a nested list, or {"shape", "values"} (conformance suite)."""
    if isinstance(v, dict):
        return torch.tensor(v["values"]).reshape(v["shape"])
    return torch.tensor(v)


def main(root):
    root = pathlib.Path(root)
    conformance = "conformance" if (root / "cls" / "fute_outputs.json").read_text().find(
        '"shape"') >= 0 else None
    seq = AutoModelForSequenceClassification if conformance else BertForSequenceClassification
    qa = AutoModelForQuestionAnswering if conformance else BertForQuestionAnswering
    for tag, cls in [("cls", seq), ("reg", seq), ("qa", qa)]:
        folder = root / tag
        cfg = AutoConfig.from_pretrained(folder)
        model, info = cls.from_pretrained(folder, output_loading_info=True, attn_implementation="eager")
        bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        assert not bad, f"{tag}: {bad}"
        model.eval()
        rec = json.loads((folder / "fute_outputs.json").read_text())
        inp = {k: torch.tensor(v) for k, v in rec["input"].items()}
        with torch.no_grad():
            out = model(**inp)
        fute = rec["outputs"]
        if tag == "cls":
            pairs = [(out.logits, fute["logits"])]
            assert cfg.problem_type == "single_label_classification" and cfg.num_labels == 3, cfg
            print(f"{tag}: {type(model).__name__}")
            assert cfg.id2label[2] == "pos", cfg.id2label
        elif tag == "reg":
            pairs = [(out.logits.squeeze(-1), fute["scores"])]
            assert cfg.problem_type == "regression" and cfg.num_labels == 1, cfg
        else:
            pairs = [(out.start_logits, fute["start_logits"]), (out.end_logits, fute["end_logits"])]
        for got, want in pairs:
            want = values(want)
            err = ((got - want).abs().max() / want.abs().max()).item()
            assert err < 1e-5, f"{tag}: relative error {err}"
            print(f"{tag}: {cls.__name__} loaded, outputs match fute (relative error {err:.1e})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fute-saved")
