#!/usr/bin/env python3
"""Check that a folder saved by `fute train` loads unchanged in Hugging Face
transformers and gives the same predictions as `fute predict`.

Usage (venv with torch + transformers, outside the repository):
    python scripts/golden/check_hf_load.py MODEL_DIR PREDICTIONS.jsonl [--max-len 512]

PREDICTIONS.jsonl is the `--out` file of `fute predict --model MODEL_DIR ...`:
one object per example with `text` (and `text_pair`), `pred` and `logits`.
The script loads MODEL_DIR with BertForSequenceClassification.from_pretrained,
recomputes the logits of every example in float32, and prints the argmax
agreement and max |Δlogit|. Exit status 1 when an argmax differs or
max |Δlogit| exceeds --tol.
"""
import argparse
import json
import sys

import torch
from transformers import AutoTokenizer, BertForSequenceClassification


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("predictions")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()

    model = BertForSequenceClassification.from_pretrained(args.model_dir)
    model.eval()
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    # The packaged tokenizer.json may carry fixed padding/truncation; fute ignores
    # them, so do the same: truncate to max-len, pad dynamically.
    if getattr(tok, "_tokenizer", None) is not None:
        tok._tokenizer.no_padding()
        tok._tokenizer.no_truncation()
    recs = [json.loads(line) for line in open(args.predictions, encoding="utf-8")]
    print(f"{len(recs)} examples, model {args.model_dir}: "
          f"{model.config.num_labels} labels {model.config.id2label}, "
          f"problem_type {model.config.problem_type}")
    agree, max_d = 0, 0.0
    for i in range(0, len(recs), args.batch):
        chunk = recs[i:i + args.batch]
        a = [r["text"] for r in chunk]
        b = [r["text_pair"] for r in chunk] if "text_pair" in chunk[0] else None
        enc = tok(a, b, truncation="longest_first" if b else True, max_length=args.max_len,
                  padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits.float()
        ours = torch.tensor([r["logits"] for r in chunk], dtype=torch.float32)
        max_d = max(max_d, (logits - ours).abs().max().item())
        agree += sum(int(p == r["pred"]) for p, r in zip(logits.argmax(-1).tolist(), chunk))
    print(f"argmax agreement {agree}/{len(recs)}; max |Δlogit| = {max_d:.3e}")
    return 0 if agree == len(recs) and max_d <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
