#!/usr/bin/env python3
"""Conformance fixtures for every registered architecture (`bert_golden.py --arch NAME`).

For one architecture (bert, roberta, distilbert, gpt2) this makes a tiny random model with PyTorch +
transformers (the reference) and writes, under crates/fute-nn/tests/fixtures/conformance/NAME/:

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
    raise SystemExit(f"unknown --arch {arch}")


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
    state = {k: v.clone() for k, v in base.state_dict().items()}
    prefix = base_cls.base_model_prefix

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
        missing, unexpected = getattr(m, prefix).load_state_dict(state, strict=False)
        assert all("pooler" in k for k in unexpected), unexpected
        assert all("pooler" in k or "position_ids" in k for k in missing), missing
        return m.double().eval()

    def record(tag, m):
        for name, p in m.named_parameters():
            assert p.grad is not None, f"{tag}: {name} has no gradient in torch"
            tensors[f"{tag}.grad.{name}"] = p.grad.detach().to(torch.float64).contiguous()
            if not name.startswith(prefix + "."):
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

    save_file(tensors, str(out_dir / "golden.safetensors"))
    (out_dir / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{arch}: wrote {len(tensors)} tensors to {out_dir}")
