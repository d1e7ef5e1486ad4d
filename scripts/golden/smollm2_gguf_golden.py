#!/usr/bin/env python3
"""Golden fixture for fute-nn's Llama read from the packaged SmolLM2-135M GGUF (real tier).

How to run (once; the output is committed, the test only reads it):

    /tmp/golden-venv/bin/pip install torch transformers accelerate safetensors numpy gguf  # outside the repo
    /tmp/golden-venv/bin/python scripts/golden/smollm2_gguf_golden.py \
        [--gguf $FUTE_ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]

transformers reads the same GGUF file (`from_pretrained(dir, gguf_file=...)`: it dequantises every
tensor to float32 with the `gguf` package and undoes llama.cpp's query/key row permutation itself),
and runs it in float32 with eager attention, unmodified. The fixture
crates/fute-nn/tests/fixtures/smollm2-gguf/ holds:

  golden.json          the token-id batch (right-padded with the GGUF's padding id 2, which no
                       sequence contains), its attention mask, and per sequence the 5 most likely
                       next tokens of the tied LM head at the last real position
  golden.safetensors   float32: `last_hidden_state` of the real positions [3, T, 576] (after the
                       final RMSNorm; padding rows zeroed), `lm_logits` at each sequence's last
                       real token for the first 512 vocabulary ids, and a sequence-classification
                       check: a seeded `score` weight [2, 576] and LlamaForSequenceClassification's
                       logits [3, 2] (last non-padding token)

About 100 KB. Nothing is downloaded.
"""

import argparse
import json
import os
import pathlib

import torch
from safetensors.torch import save_file
from transformers import LlamaForSequenceClassification, LlamaModel

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "fute-nn" / "tests" / "fixtures" / "smollm2-gguf"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    default = pathlib.Path(os.environ.get("FUTE_ASSETS", "/tmp/fute-assets-dev")) / "smollm2" / FILE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=pathlib.Path, default=default)
    args = ap.parse_args()
    torch.set_num_threads(2)
    folder, name = str(args.gguf.parent), args.gguf.name

    base = LlamaModel.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                      attn_implementation="eager").eval()
    cfg = base.config
    pad = cfg.pad_token_id
    assert pad == 2, pad
    gen = torch.Generator().manual_seed(5)
    lengths = [11, 6, 9]
    t = max(lengths)
    ids = torch.full((len(lengths), t), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), t), dtype=torch.long)
    for i, n in enumerate(lengths):
        # Ordinary vocabulary (ids past the 17 special tokens), never the padding id.
        ids[i, :n] = torch.randint(17, cfg.vocab_size, (n,), generator=gen)
        mask[i, :n] = 1
    with torch.no_grad():
        h = base(input_ids=ids, attention_mask=mask).last_hidden_state
    h = h * mask.unsqueeze(-1)
    emb = base.embed_tokens.weight
    last = torch.stack([h[i, n - 1] for i, n in enumerate(lengths)])
    logits = last @ emb.T
    top5 = logits.topk(5, dim=-1).indices.tolist()

    cls = LlamaForSequenceClassification.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager", num_labels=2).eval()
    torch.manual_seed(9)
    with torch.no_grad():
        cls.score.weight.normal_(0.0, 0.02)
        cls_logits = cls(input_ids=ids, attention_mask=mask).logits

    OUT.mkdir(parents=True, exist_ok=True)
    save_file({
        "last_hidden_state": h.contiguous(),
        "lm_logits": logits[:, :512].contiguous(),
        "cls.score.weight": cls.score.weight.detach().contiguous(),
        "cls.logits": cls_logits.contiguous(),
    }, str(OUT / "golden.safetensors"))
    meta = {"gguf": FILE, "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
            "lengths": lengths, "top5_next_tokens": top5,
            "config": {k: getattr(cfg, k) for k in [
                "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
                "max_position_embeddings", "pad_token_id", "bos_token_id", "eos_token_id"]},
            "rope_theta": cfg.rope_parameters["rope_theta"]}
    (OUT / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("top-5 next tokens", top5, "cls logits", cls_logits.tolist())


if __name__ == "__main__":
    main()
