#!/usr/bin/env python3
"""Conformance fixtures for every registered architecture (`bert_golden.py --arch NAME`).

For one architecture (bert, roberta, distilbert, gpt2, llama, t5) this makes a tiny random model with
PyTorch + transformers (the reference) and writes, under crates/fute-nn/tests/fixtures/conformance/NAME/:

  model/config.json, model/model.safetensors   the base model saved by transformers
                                               (`<Arch>Model.save_pretrained`, float32)
  golden.json          the input batches (ids, mask, token types), labels/targets, losses
  golden.safetensors   float64 references for each head (cls: 3 labels on the pair batch, reg on
                       the single batch, qa on the pair batch): the head's fresh weights, the
                       outputs and the gradient of EVERY parameter

All references are float64 (model.double()), eval mode, eager attention. Inputs are explicit id
matrices (no tokenizer), with padding, so RoBERTa's padding-aware positions are exercised with
its usual pad id 1. GPT-2's batches are right-padded with its `pad_token_id` (0, never a real id)
and carry no token types (its tokenizer returns none; transformers would add `wte(token_type_ids)`),
so transformers' last-non-pad-token rule and fute's last-attended-token rule pick the same token.
GPT-2's Conv1D gradients are stored as transformers holds them (`[in, out]`). Nothing is downloaded.

Llama (a decoder: RMSNorm, rotary positions, grouped-query attention with 4 query / 2 key-value
heads, SwiGLU; untied embeddings) is the one architecture whose transformers code computes parts
of a float64 model in float32: `LlamaRMSNorm` casts to float32 for the variance, the eager
attention takes its softmax with `dtype=torch.float32`, and `LlamaRotaryEmbedding` builds cos/sin
in float32. Those casts exist to *raise* half precision; on a float64 model they lower it to ~1e-7,
which would hide any real error below that. For the float64 references only, `float64_llama()`
replaces the three functions with the same formulas in the input's own dtype (the same
operations in the same order; for a float32 model they are exactly transformers' code), so the
f64 parity measures the model and not float32 rounding. `check_saved.py` still loads fute's
saved Llama folders with unmodified transformers in float32. T5's `T5LayerNorm` has the same
float32 cast and gets the same treatment (`float64_t5()`).

T5 (gated-GELU, untied, 2 encoder / 3 decoder blocks, 8 relative-position buckets with max
distance 6 so that logarithmic and clipped buckets occur) is loaded as `T5Model`; its
`T5ForQuestionAnswering` has no base prefix, so there only `qa_outputs.*` count as head weights.
"""

import json
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "fute-nn" / "tests" / "fixtures" / "conformance"

VOCAB, HIDDEN, LAYERS, HEADS, FFN, MAX_POS = 60, 16, 2, 4, 24, 24


def configs(arch):
    """(config, base class, sequence class, qa class, pad id) of a tiny random `arch`."""
    if arch == "bert":
        from transformers import (BertConfig, BertForQuestionAnswering,
                                  BertForSequenceClassification, BertModel)
        cfg = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, intermediate_size=FFN,
                         max_position_embeddings=MAX_POS, type_vocab_size=2, pad_token_id=0,
                         hidden_act="gelu", layer_norm_eps=1e-12)
        return cfg, BertModel, BertForSequenceClassification, BertForQuestionAnswering, 0
    if arch == "roberta":
        from transformers import (RobertaConfig, RobertaForQuestionAnswering,
                                  RobertaForSequenceClassification, RobertaModel)
        # As roberta-base: pad 1, bos 0, eos 2, one token type, positions from pad + 1.
        cfg = RobertaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, intermediate_size=FFN,
                            max_position_embeddings=MAX_POS + 2, type_vocab_size=1,
                            pad_token_id=1, bos_token_id=0, eos_token_id=2,
                            hidden_act="gelu", layer_norm_eps=1e-5)
        return cfg, RobertaModel, RobertaForSequenceClassification, RobertaForQuestionAnswering, 1
    if arch == "distilbert":
        from transformers import (DistilBertConfig, DistilBertForQuestionAnswering,
                                  DistilBertForSequenceClassification, DistilBertModel)
        cfg = DistilBertConfig(vocab_size=VOCAB, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS,
                               hidden_dim=FFN, max_position_embeddings=MAX_POS, pad_token_id=0,
                               activation="gelu")
        return (cfg, DistilBertModel, DistilBertForSequenceClassification,
                DistilBertForQuestionAnswering, 0)
    if arch == "gpt2":
        from transformers import (GPT2Config, GPT2ForQuestionAnswering,
                                  GPT2ForSequenceClassification, GPT2Model)
        # gelu_new, pre-LayerNorm, learned positions; pad 0 so padding is found by id.
        cfg = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                         n_inner=FFN, n_positions=MAX_POS, activation_function="gelu_new",
                         layer_norm_epsilon=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=1)
        return cfg, GPT2Model, GPT2ForSequenceClassification, GPT2ForQuestionAnswering, 0
    if arch == "llama":
        from transformers import (LlamaConfig, LlamaForQuestionAnswering,
                                  LlamaForSequenceClassification, LlamaModel)
        # Grouped-query attention (4 query heads share 2 key/value heads), untied embeddings,
        # a non-default rope theta and eps so that both are read from the config.
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                          num_attention_heads=HEADS, num_key_value_heads=HEADS // 2,
                          intermediate_size=FFN, max_position_embeddings=MAX_POS,
                          rms_norm_eps=1e-5, rope_parameters={"rope_type": "default",
                                                              "rope_theta": 500.0},
                          pad_token_id=0, bos_token_id=1, eos_token_id=3,
                          tie_word_embeddings=False, hidden_act="silu")
        float64_llama()
        return cfg, LlamaModel, LlamaForSequenceClassification, LlamaForQuestionAnswering, 0
    if arch == "t5":
        from transformers import (T5Config, T5ForQuestionAnswering,
                                  T5ForSequenceClassification, T5Model)
        # T5 v1.1's shape: gated-GELU feed-forward, untied embeddings; more decoder than encoder
        # blocks, and few buckets with a short max distance so that the logarithmic buckets and
        # the last (clipped) bucket are reached by these short batches. Pad 0 is the decoder
        # start id (T5's convention); eos 3 ends every row (and splits the pairs).
        cfg = T5Config(vocab_size=VOCAB, d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=FFN,
                       num_layers=LAYERS, num_decoder_layers=LAYERS + 1, num_heads=HEADS,
                       relative_attention_num_buckets=8, relative_attention_max_distance=6,
                       feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                       layer_norm_epsilon=1e-5, pad_token_id=0, eos_token_id=3,
                       decoder_start_token_id=0, dropout_rate=0.1, classifier_dropout=0.0)
        float64_t5()
        return cfg, T5Model, T5ForSequenceClassification, T5ForQuestionAnswering, 0
    raise SystemExit(f"unknown --arch {arch}")


def float64_t5():
    """transformers' T5LayerNorm computes its mean square in float32 whatever the model's dtype
    (for half precision); for the float64 references it is replaced by the same formula in the
    input's own dtype (as `float64_llama`)."""
    from transformers.models.t5 import modeling_t5 as mt

    def t5_layer_norm(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))

    mt.T5LayerNorm.forward = t5_layer_norm


def float64_llama():
    """transformers' Llama RMSNorm, eager attention and rotary tables in the input's dtype
    (see the module docstring): the same formulas without the cast to float32."""
    from transformers.models.llama import modeling_llama as ml

    def rms_norm(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))

    def rotary(self, x, position_ids):
        dim = 2 * self.inv_freq.shape[0]
        base = self.config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=x.dtype) / dim))
        freqs = position_ids[..., None].to(x.dtype) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        key = ml.repeat_kv(key, module.num_key_value_groups)
        value = ml.repeat_kv(value, module.num_key_value_groups)
        weights = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            weights = weights + attention_mask
        weights = torch.softmax(weights, dim=-1)
        out = torch.matmul(weights, value).transpose(1, 2).contiguous()
        return out, weights

    ml.LlamaRMSNorm.forward = rms_norm
    ml.LlamaRotaryEmbedding.forward = rotary
    ml.eager_attention_forward = attention


def decoder_hooks(base, pair, tensors):
    """A decoder's soft prompt and key/value prefixes, as fute's hooks define them, made with
    transformers' own machinery (float64, the pair batch, base model only):

    * prompt: `inputs_embeds` = [P soft tokens; the token embeddings], the attention mask with P
      ones in front, positions 0..P+T; the reference is the last hidden state of the T real tokens;
    * prefix: a cache pre-filled with P keys/values per layer (not rotated), the real tokens at
      positions 0..T (passed explicitly: transformers would otherwise start them at P, as PEFT's
      prefix tuning does), every query seeing all P prefix keys. The cache holds one prefix per
      key/value head; fute's prefix has one per query head, so the test repeats each over its
      group (`prefix.k.N` / `prefix.v.N` are fute's `[B, P, hidden]` layout).
    """
    from transformers import DynamicCache
    m = base.double().eval()
    ids, _, mask = pair
    b, t = ids.shape
    cfg = m.config
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = cfg.hidden_size // heads
    p = 3
    gen = torch.Generator().manual_seed(11)
    prompt = torch.randn(b, p, cfg.hidden_size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        emb = torch.cat([prompt, m.embed_tokens(ids)], dim=1)
        full = torch.cat([torch.ones(b, p, dtype=mask.dtype), mask], dim=1)
        out = m(inputs_embeds=emb, attention_mask=full)
    tensors["hooks.prompt"] = prompt
    tensors["hooks.prompt.last_hidden_state"] = out.last_hidden_state[:, p:].contiguous()

    cache = DynamicCache(config=cfg)
    for layer in range(cfg.num_hidden_layers):
        k = torch.randn(b, kv, p, hd, generator=gen, dtype=torch.float64)
        v = torch.randn(b, kv, p, hd, generator=gen, dtype=torch.float64)
        cache.update(k, v, layer)
        # [B, kv, P, hd] -> one copy per query head -> [B, P, heads * hd]
        for name, x in [("k", k), ("v", v)]:
            per_head = x.repeat_interleave(heads // kv, dim=1)
            tensors[f"hooks.prefix.{name}.{layer}"] = (
                per_head.transpose(1, 2).reshape(b, p, heads * hd).contiguous())
    with torch.no_grad():
        out = m(input_ids=ids, attention_mask=torch.cat([torch.ones(b, p, dtype=mask.dtype), mask], 1),
                cache=cache, position_ids=torch.arange(t).unsqueeze(0), use_cache=True)
    tensors["hooks.prefix.last_hidden_state"] = out.last_hidden_state.contiguous()


def write_word_tokenizer(path):
    """A word-level tokenizer.json over VOCAB ids (pad 0, unk 1, bos 2, eos 3, then words), so the
    GPT-2 folder also serves as a surrogate or base model in fute's pipeline tests."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    words = ("the a an cat dog mat sat man woman good bad great awful fine poor nice movie film "
             "plot is was very so and it this that really quite who what where plays play music "
             "market stock fell today game sport red blue big small city river paris").split()
    vocab = ["<pad>", "<unk>", "<s>", "</s>"] + words
    vocab += [f"w{i}" for i in range(VOCAB - len(vocab))]
    assert len(vocab) == VOCAB and len(set(vocab)) == VOCAB
    tk = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.add_special_tokens(["<pad>", "<unk>", "<s>", "</s>"])
    tk.save(str(path))


def batch(pad, lengths, pairs, gen):
    """Random ids (3..VOCAB) with [CLS]-like 2 first and separators 3, padded with `pad`."""
    t = max(lengths)
    ids = torch.full((len(lengths), t), pad, dtype=torch.long)
    types = torch.zeros((len(lengths), t), dtype=torch.long)
    mask = torch.zeros((len(lengths), t), dtype=torch.long)
    for i, n in enumerate(lengths):
        row = torch.randint(4, VOCAB, (n,), generator=gen)
        row[0] = 2 if pad != 2 else 0
        row[-1] = 3
        if pairs:
            row[n // 2] = 3
            types[i, n // 2 + 1:n] = 1
        ids[i, :n] = row
        mask[i, :n] = 1
    return ids, types, mask


def run(arch):
    torch.set_num_threads(1)
    cfg, base_cls, seq_cls, qa_cls, pad = configs(arch)
    cfg._attn_implementation = "eager"
    out_dir = OUT / arch
    (out_dir / "model").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    base = base_cls(cfg)
    with torch.no_grad():  # make every parameter (LayerNorm too) non-trivial
        for p in base.parameters():
            p.add_(0.3 * torch.randn_like(p))
    base.save_pretrained(out_dir / "model", safe_serialization=True)
    if arch == "gpt2":
        write_word_tokenizer(out_dir / "model" / "tokenizer.json")
    state = {k: v.clone() for k, v in base.state_dict().items()}

    gen = torch.Generator().manual_seed(7)
    single = batch(pad, [7, 4, 6], False, gen)
    pair = batch(pad, [9, 8, 5], True, gen)
    if arch == "gpt2":  # transformers' last-non-pad token is fute's last attended token
        for ids, _, mask in (single, pair):
            steps = torch.arange(ids.shape[1])
            assert torch.equal((steps * (ids != pad)).argmax(-1), (steps * mask).argmax(-1))
    has_types = arch == "bert"
    meta = {"arch": arch, "pad_token_id": pad}
    for name, (ids, types, mask) in [("single", single), ("pair", pair)]:
        meta[name] = {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}
        if has_types:
            meta[name]["token_type_ids"] = types.tolist()

    def inputs(b):
        ids, types, mask = b
        kw = {"input_ids": ids, "attention_mask": mask}
        if has_types:
            kw["token_type_ids"] = types
        return kw

    tensors = {}

    def head_model(cls, seed, **cfg_kw):
        c = type(cfg)(**cfg.to_dict())
        for k, v in cfg_kw.items():
            setattr(c, k, v)
        c._attn_implementation = "eager"
        torch.manual_seed(seed)
        m = cls(c)
        # The base sits under the class's own prefix (`model`, or `transformer` in
        # LlamaForQuestionAnswering).
        missing, unexpected = m.base_model.load_state_dict(state, strict=False)
        assert all("pooler" in k for k in unexpected), unexpected
        # T5ForQuestionAnswering has no base prefix: its base model is itself, head included.
        assert all("pooler" in k or "position_ids" in k or k.startswith("qa_outputs.")
                   for k in missing), missing
        return m.double().eval()

    def record(tag, m):
        for name, p in m.named_parameters():
            assert p.grad is not None, f"{tag}: {name} has no gradient in torch"
            tensors[f"{tag}.grad.{name}"] = p.grad.detach().to(torch.float64).contiguous()
            if not name.startswith(m.base_model_prefix + ".") and (
                    m.base_model is not m or name.startswith("qa_outputs.")):
                tensors[f"{tag}.head.{name}"] = p.detach().contiguous()

    cls = head_model(seq_cls, 1, num_labels=3)
    labels = torch.tensor([2, 0, 1])
    out = cls(**inputs(pair), labels=labels)
    assert torch.allclose(F.cross_entropy(out.logits, labels), out.loss)
    out.loss.backward()
    tensors["cls.logits"] = out.logits.detach()
    record("cls", cls)
    meta["cls"] = {"labels": labels.tolist(), "loss": out.loss.item()}

    reg = head_model(seq_cls, 2, num_labels=1, problem_type="regression")
    targets = torch.tensor([0.5, -1.25, 2.0], dtype=torch.float64)
    out = reg(**inputs(single), labels=targets)
    assert torch.allclose(F.mse_loss(out.logits.squeeze(-1), targets), out.loss)
    out.loss.backward()
    tensors["reg.scores"] = out.logits.detach().squeeze(-1)
    record("reg", reg)
    meta["reg"] = {"targets": targets.tolist(), "loss": out.loss.item()}

    qa = head_model(qa_cls, 3)
    starts, ends = torch.tensor([5, 6, 3]), torch.tensor([7, 6, 4])
    out = qa(**inputs(pair), start_positions=starts, end_positions=ends)
    out.loss.backward()
    tensors["qa.start_logits"] = out.start_logits.detach()
    tensors["qa.end_logits"] = out.end_logits.detach()
    record("qa", qa)
    meta["qa"] = {"start_positions": starts.tolist(), "end_positions": ends.tolist(),
                  "loss": out.loss.item()}

    if arch == "llama":
        decoder_hooks(base, pair, tensors)

    save_file(tensors, str(out_dir / "golden.safetensors"))
    (out_dir / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{arch}: wrote {len(tensors)} tensors to {out_dir}")
