#!/usr/bin/env python3
"""Golden fixtures for fute-nn's BERT: PyTorch + transformers are the reference.

How to run (once; the outputs are committed, tests only read them):

    python3 -m venv /tmp/golden-venv            # OUTSIDE the repository
    /tmp/golden-venv/bin/pip install torch transformers safetensors numpy
    /tmp/golden-venv/bin/python scripts/golden/bert_golden.py --arch roberta   # one conformance
                                      # fixture per architecture (bert, roberta, distilbert, gpt2, llama, t5)
    /tmp/golden-venv/bin/python scripts/golden/bert_golden.py \
        --minilm /path/to/minilm      # folder with config.json, model.safetensors, tokenizer.json
                                      # (default: $FUTE_ASSETS/minilm, else /tmp/fute-assets-dev/minilm)

It writes, under crates/fute-nn/tests/fixtures/:

  tiny-bert/                 a tiny random BERT saved as a HF folder (BertModel layout, no
                             `bert.` prefix) with its own WordPiece tokenizer.json + vocab.txt
  tiny-golden.json           inputs (ids from the HF tokenizer), labels, losses, loss-function goldens
  tiny-golden.safetensors    float64 references: hidden states, pooled output, head weights,
                             logits, and the gradient of EVERY parameter for each head
  minilm-golden.json         all-MiniLM-L6-v2: HF token ids/offsets (incl. non-ASCII text and
                             truncation), logits, loss, per-parameter gradient summaries
  minilm-golden.safetensors  the seeded classifier head, first tokens' last hidden states

All references are computed in float64 (model.double()), eval mode (no dropout), eager attention,
so the Rust f64 path can be held to ~1e-9 and the f32 path shows its own rounding error only.
Nothing is downloaded: the MiniLM folder must already be on disk.
"""

import argparse
import json
import os
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    PreTrainedTokenizerFast,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "fute-nn" / "tests" / "fixtures"

TINY_WORDS = (
    "the a an is are was of to and in on for with it this that man woman dog cat "
    "plays playing guitar music market stock fell sharply today sport game men "
    "some soccer multiple males what who where when does did play happy sad good bad "
    "cafe naive resume paris france capital city river big small red blue"
).split()
TINY_PIECES = ["##s", "##ing", "##ed", "##ly", "##er", "##e", "##a", "##o", "##i", "##n",
               "##t", "##r", ".", ",", "?", "!", "'", "-", "é", "ï"]


def tiny_vocab():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TINY_WORDS + TINY_PIECES
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in vocab]
    vocab += letters
    vocab = vocab[:99]
    assert len(vocab) == 99, len(vocab)
    assert len(set(vocab)) == 99
    return vocab


def to_list(t):
    return t.detach().cpu().tolist()


def grads_of(model, prefix):
    out = {}
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} has no gradient in torch"
        out[f"{prefix}.{name}"] = p.grad.detach().to(torch.float64).contiguous()
    return out


def encode(tok, batch, **kw):
    firsts = [b[0] if isinstance(b, (list, tuple)) else b for b in batch]
    seconds = [b[1] for b in batch] if isinstance(batch[0], (list, tuple)) else None
    enc = tok(firsts, seconds, padding="longest", return_tensors="pt", **kw)
    return enc


def make_tiny():
    out_dir = FIXTURES / "tiny-bert"
    out_dir.mkdir(parents=True, exist_ok=True)
    # Built with the `tokenizers` library directly (transformers 5 ignores `vocab_file`).
    vocab = {t: i for i, t in enumerate(tiny_vocab())}
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tk.decoder = decoders.WordPiece()
    tk.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tk.save(str(out_dir / "tokenizer.json"))
    (out_dir / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(out_dir / "tokenizer.json"), pad_token="[PAD]",
                                  unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                  mask_token="[MASK]",
                                  model_input_names=["input_ids", "token_type_ids", "attention_mask"])

    cfg = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=40, type_vocab_size=2,
        hidden_act="gelu", initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    base = BertModel(cfg, add_pooling_layer=True)
    with torch.no_grad():  # make every parameter (LayerNorm too) non-trivial
        for p in base.parameters():
            p.add_(0.3 * torch.randn_like(p))
    base.save_pretrained(out_dir, safe_serialization=True)
    # Keep the committed config minimal and deterministic.
    saved_cfg = json.loads((out_dir / "config.json").read_text())
    keep = ["architectures", "attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
            "hidden_size", "initializer_range", "intermediate_size", "layer_norm_eps",
            "max_position_embeddings", "model_type", "num_attention_heads", "num_hidden_layers",
            "pad_token_id", "position_embedding_type", "type_vocab_size", "vocab_size"]
    (out_dir / "config.json").write_text(json.dumps({k: saved_cfg[k] for k in keep if k in saved_cfg},
                                                    indent=2, sort_keys=True) + "\n")
    state = {k: v.clone() for k, v in base.state_dict().items()}

    single = ["The man is playing guitar.", "A dog!", "Some men play a sport with a big red cat today."]
    pairs = [("Who plays guitar?", "The man is playing guitar in Paris."),
             ("Where is the market?", "The stock market fell sharply today, said the happy woman."),
             ("What fell?", "The stock fell.")]
    enc_s = encode(tok, single)
    enc_p = encode(tok, pairs)
    tensors = {}
    meta = {"single_texts": single, "pair_texts": [list(p) for p in pairs]}
    for name, enc in [("single", enc_s), ("pair", enc_p)]:
        meta[name] = {k: to_list(enc[k]) for k in ["input_ids", "token_type_ids", "attention_mask"]}

    def load_base(model):
        missing, unexpected = model.bert.load_state_dict(state, strict=False)
        assert not unexpected, unexpected
        assert all("pooler" in m or "position_ids" in m for m in missing), missing

    base64 = BertModel(cfg, add_pooling_layer=True)
    base64.load_state_dict(state)
    base64 = base64.double().eval()
    for name, enc in [("single", enc_s), ("pair", enc_p)]:
        out = base64(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                     attention_mask=enc["attention_mask"])
        tensors[f"{name}.last_hidden_state"] = out.last_hidden_state.detach()
        tensors[f"{name}.pooler_output"] = out.pooler_output.detach()

    # Classification, 3 labels, on the pair batch.
    cls_cfg = BertConfig(**cfg.to_dict())
    cls_cfg.num_labels = 3
    cls_cfg._attn_implementation = "eager"
    torch.manual_seed(1)
    cls = BertForSequenceClassification(cls_cfg)
    load_base(cls)
    cls = cls.double().eval()
    labels = torch.tensor([2, 0, 1])
    out = cls(**{k: enc_p[k] for k in ["input_ids", "token_type_ids", "attention_mask"]}, labels=labels)
    loss = F.cross_entropy(out.logits, labels)
    assert torch.allclose(loss, out.loss)
    out.loss.backward()
    tensors["cls.logits"] = out.logits.detach()
    tensors["cls.head.classifier.weight"] = cls.classifier.weight.detach()
    tensors["cls.head.classifier.bias"] = cls.classifier.bias.detach()
    tensors.update(grads_of(cls, "cls.grad"))
    meta["cls"] = {"labels": to_list(labels), "loss": out.loss.item()}

    # Regression on the single batch.
    reg_cfg = BertConfig(**cfg.to_dict())
    reg_cfg.num_labels = 1
    reg_cfg.problem_type = "regression"
    reg_cfg._attn_implementation = "eager"
    torch.manual_seed(2)
    reg = BertForSequenceClassification(reg_cfg)
    load_base(reg)
    reg = reg.double().eval()
    targets = torch.tensor([0.5, -1.25, 2.0], dtype=torch.float64)
    out = reg(**{k: enc_s[k] for k in ["input_ids", "token_type_ids", "attention_mask"]}, labels=targets)
    assert torch.allclose(F.mse_loss(out.logits.squeeze(-1), targets), out.loss)
    out.loss.backward()
    tensors["reg.scores"] = out.logits.detach().squeeze(-1)
    tensors["reg.head.classifier.weight"] = reg.classifier.weight.detach()
    tensors["reg.head.classifier.bias"] = reg.classifier.bias.detach()
    tensors.update(grads_of(reg, "reg.grad"))
    meta["reg"] = {"targets": to_list(targets), "loss": out.loss.item()}

    # Extractive QA on the pair batch (question, context).
    qa_cfg = BertConfig(**cfg.to_dict())
    qa_cfg._attn_implementation = "eager"
    torch.manual_seed(3)
    qa = BertForQuestionAnswering(qa_cfg)
    missing, unexpected = qa.bert.load_state_dict(state, strict=False)
    assert all("pooler" in k for k in unexpected), unexpected
    qa = qa.double().eval()
    starts = torch.tensor([6, 9, 5])
    ends = torch.tensor([7, 11, 6])
    out = qa(**{k: enc_p[k] for k in ["input_ids", "token_type_ids", "attention_mask"]},
             start_positions=starts, end_positions=ends)
    span = (F.cross_entropy(out.start_logits, starts) + F.cross_entropy(out.end_logits, ends)) / 2
    assert torch.allclose(span, out.loss)
    out.loss.backward()
    tensors["qa.start_logits"] = out.start_logits.detach()
    tensors["qa.end_logits"] = out.end_logits.detach()
    tensors["qa.head.qa_outputs.weight"] = qa.qa_outputs.weight.detach()
    tensors["qa.head.qa_outputs.bias"] = qa.qa_outputs.bias.detach()
    tensors.update(grads_of(qa, "qa.grad"))
    meta["qa"] = {"start_positions": to_list(starts), "end_positions": to_list(ends),
                  "loss": out.loss.item()}

    # Loss functions on fixed logits: value and gradient w.r.t. the logits.
    torch.manual_seed(4)
    logits = (2.0 * torch.randn(4, 3, dtype=torch.float64)).requires_grad_(True)
    soft = torch.softmax(torch.randn(4, 3, dtype=torch.float64), dim=-1)
    soft[0] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # exercise 0*log(0)
    losses = {}
    for name, fn in [
        ("bce_with_logits", lambda x: F.binary_cross_entropy_with_logits(x, soft)),
        ("soft_cross_entropy", lambda x: -(soft * F.log_softmax(x, -1)).sum(-1).mean()),
        ("kl_to_targets", lambda x: F.kl_div(F.log_softmax(x, -1), soft, reduction="batchmean")),
        ("cross_entropy", lambda x: F.cross_entropy(x, torch.tensor([0, 2, 1, 2]))),
        ("mse", lambda x: F.mse_loss(x, soft)),
    ]:
        logits.grad = None
        value = fn(logits)
        value.backward()
        losses[name] = {"value": value.item(), "grad": to_list(logits.grad)}
    meta["losses"] = {"logits": to_list(logits), "soft_targets": to_list(soft),
                      "hard_labels": [0, 2, 1, 2], "results": losses}

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(FIXTURES / "tiny-golden.safetensors"))
    (FIXTURES / "tiny-golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("tiny: wrote", len(tensors), "tensors")


def make_minilm(minilm_dir):
    tok = BertTokenizerFast(tokenizer_file=str(minilm_dir / "tokenizer.json"))
    batch = [
        ["A man is playing a guitar.", None],
        ["The stock market fell sharply today.", None],
        ["A soccer game with multiple males playing.", "Some men are playing a sport."],
        ["Café naïve résumé — déjà vu in Zürich.", None],
    ]
    meta = {"batch": batch, "encodings": []}
    for first, second in batch:
        enc = tok(first, second, return_offsets_mapping=True)
        meta["encodings"].append({"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                                  "offsets": enc["offset_mapping"],
                                  "sequence_ids": enc.sequence_ids()})
    # Truncation rules.
    q = "Where did the naïve café owner move?"
    c = ("The naïve café owner moved from Zürich to Paris in 1999, after selling the café to "
         "a résumé-writing company that later became famous.")
    meta["truncation"] = []
    for strategy, max_len in [("longest_first", 12), ("only_second", 16), ("longest_first", 40)]:
        enc = tok(q, c, truncation=strategy, max_length=max_len, return_offsets_mapping=True)
        meta["truncation"].append({"first": q, "second": c, "strategy": strategy, "max_length": max_len,
                                   "input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                                   "offsets": enc["offset_mapping"]})
    long_single = " ".join(["word"] * 50)
    enc = tok(long_single, truncation=True, max_length=10)
    meta["truncation"].append({"first": long_single, "second": None, "strategy": "longest_first",
                               "max_length": 10, "input_ids": enc["input_ids"],
                               "token_type_ids": enc["token_type_ids"], "offsets": None})

    # One HF batch call cannot mix single texts and pairs: pad the encodings above by hand.
    seqs = meta["encodings"]
    t = max(len(e["input_ids"]) for e in seqs)
    ids = torch.zeros(len(seqs), t, dtype=torch.long)
    types = torch.zeros(len(seqs), t, dtype=torch.long)
    mask = torch.zeros(len(seqs), t, dtype=torch.long)
    for i, e in enumerate(seqs):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        types[i, :n] = torch.tensor(e["token_type_ids"])
        mask[i, :n] = 1

    model = BertForSequenceClassification.from_pretrained(
        str(minilm_dir), num_labels=3, attn_implementation="eager")
    torch.manual_seed(1234)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.02)
        model.classifier.bias.normal_(0.0, 0.02)
    head = {"classifier.weight": model.classifier.weight.detach().clone().float().contiguous(),
            "classifier.bias": model.classifier.bias.detach().clone().float().contiguous()}
    model = model.double().eval()
    labels = torch.tensor([0, 2, 1, 1])
    out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels,
                output_hidden_states=True)
    out.loss.backward()
    grads = {}
    cls_row = 101
    for name, p in model.named_parameters():
        g = p.grad.detach()
        entry = {"shape": list(g.shape), "sum": g.sum().item(), "norm": g.norm().item(),
                 "first8": g.flatten()[:8].tolist()}
        if name.endswith("word_embeddings.weight"):
            entry["row101_first8"] = g[cls_row, :8].tolist()
        grads[name] = entry
    meta.update({
        "labels": to_list(labels), "loss": out.loss.item(), "logits": to_list(out.logits),
        "padded": {"input_ids": to_list(ids), "token_type_ids": to_list(types),
                   "attention_mask": to_list(mask)},
        "grads": grads,
    })
    tensors = dict(head)
    tensors["last_hidden_state_first4"] = out.hidden_states[-1][:, :4, :].detach().contiguous()
    tensors["pooler_output"] = model.bert.pooler(out.hidden_states[-1]).detach().contiguous()
    save_file(tensors, str(FIXTURES / "minilm-golden.safetensors"))
    (FIXTURES / "minilm-golden.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print("minilm: loss", out.loss.item(), "logits", to_list(out.logits))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = pathlib.Path(os.environ.get("FUTE_ASSETS", "/tmp/fute-assets-dev")) / "minilm"
    ap.add_argument("--minilm", type=pathlib.Path, default=default)
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--arch", choices=["bert", "roberta", "distilbert", "gpt2", "llama", "t5"],
                    help="only write the conformance fixture of this architecture "
                         "(scripts/golden/arch_golden.py)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.arch:
        import arch_golden
        arch_golden.run(args.arch)
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    make_tiny()
    if not args.skip_minilm:
        if not (args.minilm / "model.safetensors").is_file():
            raise SystemExit(f"{args.minilm} has no model.safetensors; pass --minilm DIR or --skip-minilm")
        make_minilm(args.minilm)


if __name__ == "__main__":
    main()
