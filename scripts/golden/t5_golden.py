#!/usr/bin/env python3
"""T5 fixtures beyond the conformance suite: PyTorch + transformers are the reference.

How to run (once; outputs are committed, tests only read them), after
`bert_golden.py --arch t5` has written the conformance model:

    /tmp/golden-venv/bin/python scripts/golden/t5_golden.py

It writes, under crates/fute-nn/tests/fixtures/:

  t5/buckets.json            transformers' `_relative_position_bucket` for relative positions
                             -300..300, bidirectional and causal, with 32 buckets / max distance
                             128 (t5-base) and 8 / 6 (the conformance model)
  t5/relu/model/             a second tiny random T5 (`T5Model`, float32): original T5's ReLU
                             feed-forward, tied embeddings, num_heads * d_kv (12) != d_model (16),
                             num_decoder_layers left to default to num_layers
  t5/relu/golden.json        its input batch (pairs, two eos each), labels, loss
  t5/relu/golden.safetensors float64 references of T5ForSequenceClassification (2 labels): head
                             weights, logits and the gradient of every parameter
  t5/hooks.safetensors       on the conformance model (gated-GELU, 2 encoder / 3 decoder blocks),
                             float64, the conformance pair batch, with W a fixed random
                             [B, T, d_model] and loss = sum(W * decoder last hidden state):
                             * prompt: `inputs_embeds` = [P soft tokens; shared(ids)], encoder mask
                               with P ones in front, decoder input = shift_right(ids): the decoder's
                               last hidden state and the gradient of the soft tokens;
                             * prefix: per encoder and decoder block P keys/values in front of the
                               self-attention, given to transformers' own blocks as a cache of P
                               past tokens (so the relative position bias covers them as positions
                               0..P and the tokens sit at P..P+T); the encoder stack is run block by
                               block (transformers' encoder drops caches), the decoder through
                               `T5Stack.forward` with an `EncoderDecoderCache` whose cross-attention
                               part is empty. Stored in fute's layout `[B, P, heads * d_kv]` as
                               `prefix.k.N` / `prefix.v.N` (N over encoder then decoder blocks).
  conformance/t5/model/tokenizer.json   a word-level tokenizer over the conformance model's 60 ids
                             (pad 0, unk 1, <s> 2, </s> 3) whose post-processor appends </s> to
                             each text, as T5's, so the folder serves as a surrogate in fute's tests.

All references are float64 with T5LayerNorm in the input's dtype (see arch_golden.float64_t5).
"""

import json
import pathlib

import torch
from safetensors.torch import load_file, save_file

import arch_golden

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "crates" / "fute-nn" / "tests" / "fixtures"
OUT = FIX / "t5"


def buckets():
    from transformers.models.t5.modeling_t5 import T5Attention
    rel = torch.arange(-300, 301)
    table = {"relative_positions": rel.tolist()}
    for nb, md in [(32, 128), (8, 6)]:
        for bidi in [True, False]:
            b = T5Attention._relative_position_bucket(rel, bidirectional=bidi, num_buckets=nb,
                                                      max_distance=md)
            table[f"{'bi' if bidi else 'causal'}_{nb}_{md}"] = b.tolist()
    (OUT / "buckets.json").write_text(json.dumps(table) + "\n")


def relu_model():
    from transformers import T5Config, T5ForSequenceClassification, T5Model
    cfg = T5Config(vocab_size=60, d_model=16, d_kv=6, d_ff=20, num_layers=2, num_heads=2,
                   relative_attention_num_buckets=16, relative_attention_max_distance=20,
                   feed_forward_proj="relu", tie_word_embeddings=True, layer_norm_epsilon=1e-6,
                   pad_token_id=0, eos_token_id=3, decoder_start_token_id=0)
    cfg._attn_implementation = "eager"
    out = OUT / "relu"
    (out / "model").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(20)
    base = T5Model(cfg)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.3 * torch.randn_like(p))
    base.save_pretrained(out / "model", safe_serialization=True)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    gen = torch.Generator().manual_seed(21)
    ids, _, mask = arch_golden.batch(0, [9, 7, 6, 8], True, gen)
    c = T5Config(**cfg.to_dict())
    c.num_labels = 2
    c._attn_implementation = "eager"
    torch.manual_seed(22)
    m = T5ForSequenceClassification(c)
    missing, unexpected = m.transformer.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    m = m.double().eval()
    labels = torch.tensor([1, 0, 0, 1])
    o = m(input_ids=ids, attention_mask=mask, labels=labels)
    o.loss.backward()
    tensors = {"logits": o.logits.detach()}
    for name, p in m.named_parameters():
        tensors[f"grad.{name}"] = p.grad.detach().contiguous()
        if name.startswith("classification_head."):
            tensors[f"head.{name}"] = p.detach().contiguous()
    save_file(tensors, str(out / "golden.safetensors"))
    meta = {"input_ids": ids.tolist(), "attention_mask": mask.tolist(),
            "labels": labels.tolist(), "loss": o.loss.item()}
    (out / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")


def hooks():
    from transformers import DynamicCache, EncoderDecoderCache, T5Model
    model_dir = FIX / "conformance" / "t5" / "model"
    meta = json.loads((FIX / "conformance" / "t5" / "golden.json").read_text())
    m = T5Model.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    cfg = m.config
    ids = torch.tensor(meta["pair"]["input_ids"])
    mask = torch.tensor(meta["pair"]["attention_mask"])
    b, t = ids.shape
    d, heads, hd = cfg.d_model, cfg.num_heads, cfg.d_kv
    p = 3
    gen = torch.Generator().manual_seed(31)
    w = torch.randn(b, t, d, generator=gen, dtype=torch.float64)
    dec_ids = m._shift_right(ids)
    tensors = {"weights": w}

    prompt = torch.randn(b, p, d, generator=gen, dtype=torch.float64, requires_grad=True)
    emb = torch.cat([prompt, m.shared(ids)], dim=1)
    full = torch.cat([torch.ones(b, p, dtype=mask.dtype), mask], dim=1)
    out = m(inputs_embeds=emb, attention_mask=full, decoder_input_ids=dec_ids)
    (w * out.last_hidden_state).sum().backward()
    tensors["prompt"] = prompt.detach()
    tensors["prompt.last_hidden_state"] = out.last_hidden_state.detach().contiguous()
    tensors["prompt.grad"] = prompt.grad.detach()

    m.zero_grad()
    n_enc, n_dec = cfg.num_layers, cfg.num_decoder_layers
    kvs = [(torch.randn(b, heads, p, hd, generator=gen, dtype=torch.float64, requires_grad=True),
            torch.randn(b, heads, p, hd, generator=gen, dtype=torch.float64, requires_grad=True))
           for _ in range(n_enc + n_dec)]
    enc_cache = DynamicCache()
    for i, (k, v) in enumerate(kvs[:n_enc]):
        enc_cache.update(k, v, i)
    x = m.shared(ids)
    add = (1.0 - full[:, None, None, :].to(torch.float64)) * torch.finfo(torch.float64).min
    bias = None
    for block in m.encoder.block:
        x, bias, _ = block(x, attention_mask=add, position_bias=bias, cache=enc_cache)
    enc = m.encoder.final_layer_norm(x)
    dec_cache = DynamicCache()
    for i, (k, v) in enumerate(kvs[n_enc:]):
        dec_cache.update(k, v, i)
    out = m.decoder(input_ids=dec_ids, encoder_hidden_states=enc, encoder_attention_mask=mask,
                    cache=EncoderDecoderCache(dec_cache, DynamicCache()), use_cache=True)
    (w * out.last_hidden_state).sum().backward()
    tensors["prefix.last_hidden_state"] = out.last_hidden_state.detach().contiguous()

    def fute_layout(x):  # [B, heads, P, hd] -> [B, P, heads * hd]
        return x.detach().transpose(1, 2).reshape(b, p, heads * hd).contiguous()

    for i, (k, v) in enumerate(kvs):
        for name, x in [("k", k), ("v", v)]:
            tensors[f"prefix.{name}.{i}"] = fute_layout(x)
            tensors[f"prefix.{name}.{i}.grad"] = fute_layout(x.grad)
    save_file(tensors, str(OUT / "hooks.safetensors"))


def t5_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    arch_golden.write_word_tokenizer(path)
    tk = Tokenizer.from_file(str(path))
    tk.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 3)])
    tk.save(str(path))


def main():
    torch.set_num_threads(1)
    arch_golden.float64_t5()
    OUT.mkdir(parents=True, exist_ok=True)
    buckets()
    relu_model()
    hooks()
    t5_tokenizer(FIX / "conformance" / "t5" / "model" / "tokenizer.json")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
