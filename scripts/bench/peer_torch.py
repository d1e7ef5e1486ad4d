#!/usr/bin/env python3
"""PyTorch + transformers peer of `fute bench` (the same workloads, the same token ids).

Started by `fute bench --peer PYTHON` (embedded in the fute binary; this file is the
source). Protocol: prints one JSON line {"torch", "transformers", "threads"} once the
model loads, then reads one JSON request per line from stdin,
{"workload": {...}, "ids": [[...], ...], "model": null | "DIR"}, runs the workload's warm-up untimed and its
timed part, and answers {"seconds", "examples", "peak_rss_mib"} (or {"error"}).
{"quit": true} or end of input stops it.

Pinned versions: scripts/bench/requirements.txt. Everything runs on the CPU with
`torch.set_num_threads(--threads)`; no network (HF offline mode).
A request naming a "model" folder (an arch row of `fute bench`: any architecture fute
registers, saved by fute as config.json + model.safetensors with its sequence head) runs
on that folder through AutoModelForSequenceClassification, without segment ids, instead
of the MiniLM folder given at start.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification  # noqa: E402,E501

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def load(model_dir, arch=False):
    if arch:
        # fute saved the folder with its 2-label head: load it as it is.
        return AutoModelForSequenceClassification.from_pretrained(model_dir)
    return BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)


def encoder(model):
    """The encoder/decoder without the head (`model.bert` for BERT)."""
    return model.base_model


def inputs(model, ids):
    """Model keyword arguments: segment ids only for BERT (GPT-2 would embed them)."""
    x, mask, types = tensors(ids)
    kw = {"input_ids": x, "attention_mask": mask}
    if model.config.model_type == "bert":
        kw["token_type_ids"] = types
    return kw


def tensors(ids):
    x = torch.tensor(ids, dtype=torch.long)
    return x, torch.ones_like(x), torch.zeros_like(x)


def labels(b):
    return torch.tensor([i % 2 for i in range(b)], dtype=torch.long)


class LoraLinear(torch.nn.Module):
    """`W x + (alpha / r) · B A x` (loralib), W frozen, B zeros, A uniform ±1/√in."""

    def __init__(self, base, r=8, alpha=16.0):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        bound = 1.0 / base.in_features ** 0.5
        self.a = torch.nn.Parameter(torch.empty(r, base.in_features).uniform_(-bound, bound))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, r))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


def step_fn(kind, model):
    """A training step for `kind` (full fine-tuning or a PEFT method) and its optimiser."""
    model.train()
    prompt = None
    if kind == "train":
        params = list(model.parameters())
    else:
        for p in model.bert.parameters():
            p.requires_grad_(False)
        if kind == "peft-prompt":
            hidden = model.config.hidden_size
            prompt = torch.nn.Parameter(torch.randn(16, hidden))
        elif kind == "peft-lora":
            for layer in model.bert.encoder.layer:
                att = layer.attention.self
                att.query = LoraLinear(att.query)
                att.value = LoraLinear(att.value)
        elif kind == "peft-bitfit":
            for n, p in model.bert.named_parameters():
                if n.endswith("bias"):
                    p.requires_grad_(True)
        else:
            raise ValueError(f"unsupported PEFT kind {kind}")
        params = [p for p in model.parameters() if p.requires_grad]
        if prompt is not None:
            params.append(prompt)
    opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)

    def step(ids):
        y = labels(len(ids))
        if prompt is None:
            out = model(**inputs(model, ids), labels=y)
        else:
            x = tensors(ids)[0]
            words = model.bert.embeddings.word_embeddings(x)
            b = x.shape[0]
            emb = torch.cat([prompt.unsqueeze(0).expand(b, -1, -1), words], 1)
            n = emb.shape[1]
            out = model(
                inputs_embeds=emb,
                attention_mask=torch.ones(b, n, dtype=torch.long),
                token_type_ids=torch.zeros(b, n, dtype=torch.long),
                labels=y,
            )
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def fisher(model, kind, batch, ids):
    """Diagonal empirical Fisher over all encoder parameters (gold labels)."""
    model.eval()
    params = [p for p in encoder(model).parameters()]
    acc = [torch.zeros_like(p) for p in params]
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(ids)
    b = 1 if kind == "fisher-per-example" else batch
    for s in range(0, n, b):
        chunk = ids[s:s + b]
        y = torch.tensor([(s + i) % 2 for i in range(len(chunk))], dtype=torch.long)
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(**inputs(model, chunk)).logits, y)
        if kind == "fisher-square-of-mean":
            (loss * len(chunk) / n).backward()
            for a, p in zip(acc, params):
                a.add_(p.grad)
        else:
            loss.backward()
            for a, p in zip(acc, params):
                a.add_(p.grad.square())
    if kind == "fisher-square-of-mean":
        return [a.square() for a in acc]
    return [a / n for a in acc]


def textemb(model, ids):
    model.eval()
    with torch.inference_mode():
        x, mask, types = tensors(ids)
        h = model.bert(input_ids=x, attention_mask=mask, token_type_ids=types).last_hidden_state
        m = mask.unsqueeze(2).to(h.dtype)
        return ((h * m).sum(1) / m.sum(1)).tolist()


def run(model_dir, w, ids, arch=False):
    kind, batch, units, warmup = w["kind"], w["batch"], w["units"], w["warmup"]
    pick = lambda i, b: [ids[(i * b + k) % len(ids)] for k in range(b)]  # noqa: E731
    if kind == "train" or kind.startswith("peft-"):
        step = step_fn(kind, load(model_dir, arch))
        for i in range(warmup):
            step(pick(i, batch))
        reset_peak()
        t = time.perf_counter()
        for i in range(warmup, warmup + units):
            step(pick(i, batch))
        seconds = time.perf_counter() - t
        examples = units * batch
    elif kind.startswith("fisher-"):
        model = load(model_dir, arch)
        sample = [ids[i % len(ids)] for i in range(units + warmup)]
        if warmup:
            fisher(model, kind, batch, sample[units:])
        reset_peak()
        t = time.perf_counter()
        fisher(model, kind, batch, sample[:units])
        seconds = time.perf_counter() - t
        examples = units
    elif kind == "text-emb":
        model = load(model_dir)
        for i in range(warmup):
            textemb(model, pick(i, batch))
        reset_peak()
        t = time.perf_counter()
        for i in range(units):
            textemb(model, pick(warmup + i, batch))
        seconds = time.perf_counter() - t
        examples = units * batch
    else:
        raise ValueError(f"the torch peer does not run `{kind}`")
    return {"seconds": seconds, "examples": examples, "peak_rss_mib": peak_mib()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face BERT folder (all-MiniLM-L6-v2)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    load(a.model)  # fail early (and warm the file cache) before saying hello
    hello = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        try:
            arch = req.get("model")
            ans = run(arch or a.model, req["workload"], req["ids"], arch is not None)
        except Exception as e:  # report, keep serving the next rows
            ans = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(ans), flush=True)


if __name__ == "__main__":
    main()
