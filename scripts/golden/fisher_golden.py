#!/usr/bin/env python3
"""Golden Fisher embeddings for fute-nn's `fisher` module: PyTorch + transformers are the reference.

How to run (once; the outputs are committed, tests only read them):

    python3 -m venv /tmp/golden-venv            # OUTSIDE the repository
    /tmp/golden-venv/bin/pip install torch transformers safetensors numpy
    /tmp/golden-venv/bin/python scripts/golden/fisher_golden.py \
        --minilm ~/.cache/fute/assets/minilm

Definitions (research/paper.md §2.6.2, §3.1), l_i the loss of example i, N examples,
g_b the gradient of the mean loss of batch b:

  per-example     (1/N) sum_i (grad l_i)^2            each example alone, unpadded
  per-batch       (1/N) sum_b g_b^2                   Vu et al.'s code
  square-of-mean  (grad (1/N) sum_i l_i)^2            the FUTE code

Activation components (Vu et al.): the gradient w.r.t. each layer's attention context (input of
`attention.output.dense`) and layer output, masked to real tokens, summed over batch and tokens,
squared, divided by the batch's real-token count; `cls_output` (the pooler output) summed over the
batch, squared, divided by the real-token count too. Accumulated like the parameters (per-example:
a batch of one; square-of-mean: sums over all examples, divided by all tokens).

Writes, under crates/fute-nn/tests/fixtures/fisher/:

  tiny.json / tiny.safetensors      the tiny random BERT of ../tiny-bert with a seeded 3-way head;
                                    7 examples (single texts and pairs, different lengths, repeated
                                    tokens); every component of all three variants (float32)
  minilm.json                       all-MiniLM-L6-v2 + seeded 2-way head on 6 real sentences:
                                    per-component sum, L2 norm and first 8 values of each variant
  minilm-head.safetensors           that head
Everything is computed in float64, eval mode, eager attention.
"""

import argparse
import json
import os
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertForSequenceClassification

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "fute-nn" / "tests" / "fixtures"
OUT = FIXTURES / "fisher"


def load(folder, num_labels, seed, std):
    model = BertForSequenceClassification.from_pretrained(
        folder, num_labels=num_labels, attn_implementation="eager"
    ).double()
    model.eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g,
                                                  dtype=torch.float64) * std)
        model.classifier.bias.copy_(torch.randn(model.classifier.bias.shape, generator=g,
                                                dtype=torch.float64) * std)
    return model


class Taps:
    """Retains gradients of the activation components during one forward pass."""

    def __init__(self, model):
        self.acts = {}
        self.handles = []
        for i, layer in enumerate(model.bert.encoder.layer):
            self.handles.append(layer.attention.output.dense.register_forward_pre_hook(
                self._pre(f"bert.encoder.layer.{i}.multihead_output")))
            self.handles.append(layer.output.register_forward_hook(
                self._post(f"bert.encoder.layer.{i}.layer_output")))
        self.handles.append(model.bert.pooler.register_forward_hook(self._post("cls_output")))

    def _pre(self, name):
        def hook(_module, args):
            args[0].retain_grad()
            self.acts[name] = args[0]
        return hook

    def _post(self, name):
        def hook(_module, _args, out):
            out.retain_grad()
            self.acts[name] = out
        return hook

    def sums(self, mask):
        """Masked sums of activation gradients over batch (and tokens): name -> [H]."""
        out = {}
        for name, a in self.acts.items():
            if name == "cls_output":
                out[name] = a.grad.sum(0)
            else:
                out[name] = (a.grad * mask[:, :, None]).sum((0, 1))
        return out


def batch_input(examples, idx):
    t = max(len(examples[i]["input_ids"]) for i in idx)
    ids = torch.zeros((len(idx), t), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(idx):
        e = examples[i]
        n = len(e["input_ids"])
        ids[r, :n] = torch.tensor(e["input_ids"])
        types[r, :n] = torch.tensor(e["token_type_ids"])
        mask[r, :n] = 1
    labels = torch.tensor([examples[i]["label"] for i in idx])
    return ids, types, mask, labels


def fisher(model, examples, variant, batch_size):
    n = len(examples)
    if variant == "per-example":
        units = [[i] for i in range(n)]
    else:
        units = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    params = dict(model.named_parameters())
    acc = {k: torch.zeros_like(p) for k, p in params.items()}
    tokens = 0
    taps = Taps(model)
    for idx in units:
        ids, types, mask, labels = batch_input(examples, idx)
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        ntok = int(mask.sum())
        tokens += ntok
        s = taps.sums(mask.double())
        for k in s:
            acc.setdefault(k, torch.zeros_like(s[k]))
        if variant == "square-of-mean":
            w = len(idx) / n
            for k, p in params.items():
                acc[k] += w * p.grad
            for k, v in s.items():
                acc[k] += w * v
        else:
            for k, p in params.items():
                acc[k] += p.grad ** 2
            for k, v in s.items():
                acc[k] += v ** 2 / ntok
    for h in taps.handles:
        h.remove()
    out = {}
    for k, v in acc.items():
        if variant == "square-of-mean":
            out[k] = v ** 2 / (tokens if k in taps.acts else 1)
        else:
            out[k] = v / n
    return out


VARIANTS = ["per-example", "per-batch", "square-of-mean"]


def tiny():
    folder = FIXTURES / "tiny-bert"
    model = load(folder, 3, seed=11, std=0.5)
    # [CLS]=2 [SEP]=3; words 5..; repeated ids on purpose (the word row sums over tokens).
    raw = [
        ([2, 10, 11, 12, 13, 10, 3], 0),
        ([2, 20, 21, 3, 22, 23, 24, 3], 1),
        ([2, 30, 3], 2),
        ([2, 40, 41, 42, 43, 44, 45, 46, 47, 40, 41, 3], 1),
        ([2, 50, 51, 50, 3, 52, 3], 0),
        ([2, 60, 61, 62, 63, 3], 2),
        ([2, 10, 70, 71, 3, 72, 10, 3], 1),
    ]
    examples = []
    for ids, label in raw:
        sep = ids.index(3)
        types = [0] * (sep + 1) + [1] * (len(ids) - sep - 1)
        examples.append({"input_ids": ids, "token_type_ids": types, "label": label})
    tensors = {f"head.{k}": v.detach().contiguous() for k, v in
               [("classifier.weight", model.classifier.weight),
                ("classifier.bias", model.classifier.bias)]}
    batch_size = 3
    for variant in VARIANTS:
        for k, v in fisher(model, examples, variant, batch_size).items():
            tensors[f"{variant}.{k}"] = v.detach().float().contiguous()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, OUT / "tiny.safetensors")
    (OUT / "tiny.json").write_text(json.dumps(
        {"num_labels": 3, "batch_size": batch_size, "examples": examples}, indent=1) + "\n")


def summary(v):
    flat = v.detach().reshape(-1)
    return {"sum": float(flat.sum()), "l2": float(flat.norm()),
            "first": [float(x) for x in flat[:8]], "numel": flat.numel()}


def minilm(folder):
    model = load(folder, 2, seed=5, std=0.2)
    tok = AutoTokenizer.from_pretrained(folder)
    texts = [
        ("A man is playing a guitar on the street.", None, 1),
        ("The stock market fell sharply today after the announcement.", None, 0),
        ("This film was a complete waste of time; the plot made no sense.", None, 0),
        ("What a wonderful, heart-warming story. I loved every minute of it!", None, 1),
        ("Some men are playing soccer.", "Multiple males are playing a sport.", 1),
        ("A woman is slicing an onion.", "The cat sleeps on the warm windowsill.", 0),
    ]
    examples = []
    for a, b, label in texts:
        enc = tok(a, b) if b is not None else tok(a)
        examples.append({"text": a, "text_pair": b, "input_ids": enc["input_ids"],
                         "token_type_ids": enc["token_type_ids"], "label": label})
    batch_size = 2
    out = {"num_labels": 2, "batch_size": batch_size, "examples": examples, "variants": {}}
    for variant in VARIANTS:
        f = fisher(model, examples, variant, batch_size)
        out["variants"][variant] = {k: summary(v) for k, v in f.items()}
    save_file({"classifier.weight": model.classifier.weight.detach().contiguous(),
               "classifier.bias": model.classifier.bias.detach().contiguous()},
              OUT / "minilm-head.safetensors")
    (OUT / "minilm.json").write_text(json.dumps(out, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser()
    default = os.path.expanduser("~/.cache/fute/assets/minilm")
    ap.add_argument("--minilm", default=default)
    args = ap.parse_args()
    torch.manual_seed(0)
    tiny()
    minilm(args.minilm)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
