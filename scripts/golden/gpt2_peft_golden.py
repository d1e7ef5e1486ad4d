#!/usr/bin/env python3
"""PEFT references for fute-nn's GPT-2: prefix, prompt tuning and LoRA through transformers.

How to run (once, after `bert_golden.py --arch gpt2`; outputs are committed):

    /tmp/golden-venv/bin/python scripts/golden/gpt2_peft_golden.py

It loads the conformance GPT-2 (crates/fute-nn/tests/fixtures/conformance/gpt2/model) as a
`GPT2ForSequenceClassification` with 3 labels, in float64, eval mode, eager attention, runs the
conformance "pair" batch (right-padded) with each method's parameters drawn at random, and writes
conformance/gpt2/peft.json (labels, losses) and peft.safetensors (the score weight, each method's
parameters under fute's names, logits, and the gradients of those parameters and of `score.weight`):

  prefix  `prefix_encoder.embedding.weight` [P, L*2*H] (fute's table: per layer key | value):
          given to transformers as a cache of P past keys/values per layer, with positions 0..T-1
          for the real tokens and a 4-D mask in which every real token sees every prefix key and
          the attended tokens up to itself (fute's definition of prefix tuning on a decoder);
  prompt  `prefix_encoder.weight` [P, H]: soft tokens put in front via `inputs_embeds`, the 2-D
          mask extended with P ones (transformers builds the causal mask itself; positions 0..P+T-1);
          the score reads the last attended real token (position P + last);
  lora    `transformer.h.N.attn.c_attn.lora_A` [r, H] / `lora_B` [3H, r] on the fused c_attn (fute's
          default target): a forward hook adds (alpha/r) x A^T B^T to the Conv1D's output.
"""

import json
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import DynamicCache, GPT2ForSequenceClassification

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIR = ROOT / "crates" / "fute-nn" / "tests" / "fixtures" / "conformance" / "gpt2"
P_PREFIX, P_PROMPT, RANK, ALPHA = 3, 2, 2, 4.0


def main():
    torch.set_num_threads(1)
    meta = json.loads((DIR / "golden.json").read_text())
    ids = torch.tensor(meta["pair"]["input_ids"])
    mask = torch.tensor(meta["pair"]["attention_mask"])
    labels = torch.tensor(meta["cls"]["labels"])
    b, t = ids.shape
    torch.manual_seed(11)
    model = GPT2ForSequenceClassification.from_pretrained(
        DIR / "model", num_labels=3, attn_implementation="eager").double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.score.weight.requires_grad_(True)
    cfg = model.config
    layers, hidden, heads = cfg.n_layer, cfg.n_embd, cfg.n_head
    hd = hidden // heads
    last = (torch.arange(t) * mask).argmax(-1)
    out_t = {"score.weight": model.score.weight.detach().clone()}
    out_m = {"labels": labels.tolist(), "prefix_len": P_PREFIX, "prompt_len": P_PROMPT,
             "lora_rank": RANK, "lora_alpha": ALPHA}

    def finish(tag, logits, params):
        loss = F.cross_entropy(logits, labels)
        model.score.weight.grad = None
        loss.backward()
        out_t[f"{tag}.logits"] = logits.detach()
        out_t[f"{tag}.grad.score.weight"] = model.score.weight.grad.detach().clone()
        for name, p in params.items():
            out_t[f"{tag}.param.{name}"] = p.detach().clone()
            out_t[f"{tag}.grad.{name}"] = p.grad.detach().clone()
        out_m[tag] = {"loss": loss.item()}

    # Prefix: a cache of P past keys/values per layer.
    table = torch.randn(P_PREFIX, layers * 2 * hidden, dtype=torch.float64, requires_grad=True)
    kv = table.view(P_PREFIX, layers, 2, heads, hd)
    cache = DynamicCache(config=cfg)
    for layer in range(layers):
        k = kv[:, layer, 0].permute(1, 0, 2).unsqueeze(0).expand(b, -1, -1, -1)
        v = kv[:, layer, 1].permute(1, 0, 2).unsqueeze(0).expand(b, -1, -1, -1)
        cache.update(k, v, layer)
    key_pos = torch.arange(P_PREFIX + t)
    visible = (key_pos[None, None, :] < P_PREFIX) | (
        ((key_pos[None, None, :] - P_PREFIX) <= torch.arange(t)[None, :, None])
        & torch.cat([torch.ones(b, P_PREFIX, dtype=torch.long), mask], 1)[:, None, :].bool())
    bias = torch.zeros(b, 1, t, P_PREFIX + t, dtype=torch.float64)
    bias.masked_fill_(~visible[:, None], torch.finfo(torch.float64).min)
    h = model.transformer(input_ids=ids, attention_mask=bias, cache=cache, use_cache=True,
                          position_ids=torch.arange(t)[None].expand(b, -1)).last_hidden_state
    finish("prefix", model.score(h[torch.arange(b), last]),
           {"prefix_encoder.embedding.weight": table})

    # Prompt tuning: soft tokens in front of the word embeddings.
    prompt = torch.randn(P_PROMPT, hidden, dtype=torch.float64, requires_grad=True)
    embeds = torch.cat([prompt[None].expand(b, -1, -1), model.transformer.wte(ids)], 1)
    ext = torch.cat([torch.ones(b, P_PROMPT, dtype=torch.long), mask], 1)
    h = model.transformer(inputs_embeds=embeds, attention_mask=ext).last_hidden_state
    finish("prompt", model.score(h[torch.arange(b), P_PROMPT + last]),
           {"prefix_encoder.weight": prompt})

    # LoRA on every c_attn.
    params, hooks = {}, []
    for layer in range(layers):
        base = f"transformer.h.{layer}.attn.c_attn"
        a = (0.3 * torch.randn(RANK, hidden, dtype=torch.float64)).requires_grad_(True)
        bb = (0.3 * torch.randn(3 * hidden, RANK, dtype=torch.float64)).requires_grad_(True)
        params[f"{base}.lora_A"], params[f"{base}.lora_B"] = a, bb

        def hook(_mod, inp, out, a=a, bb=bb):
            return out + (ALPHA / RANK) * (inp[0] @ a.T @ bb.T)
        hooks.append(model.transformer.h[layer].attn.c_attn.register_forward_hook(hook))
    logits = model(input_ids=ids, attention_mask=mask).logits
    finish("lora", logits, params)
    for hk in hooks:
        hk.remove()

    save_file({k: v.contiguous() for k, v in out_t.items()}, str(DIR / "peft.safetensors"))
    (DIR / "peft.json").write_text(json.dumps(out_m, indent=1) + "\n")
    print("gpt2 peft:", {k: round(v["loss"], 6) for k, v in out_m.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()
