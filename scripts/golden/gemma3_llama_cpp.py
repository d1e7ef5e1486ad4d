"""llama.cpp's view of the packaged Gemma-3-270M GGUF, for fute's parity test.

Records, with llama-cpp-python 0.3.36 (the venv of scripts/llama-server.sh),
for the packaged Q4_K_M file and for its F32 copy (gemma3_f32_gguf.py: the
same weight values without llama.cpp's 8-bit activation rounding):
- token ids of varied texts, control tokens parsed (`special=True`) and not;
- for a few completion prompts (BOS + literal text): the prompt ids, the
  greedy continuation ids, and the top log-probabilities of the next token
  after the prompt (log-softmax over the whole vocabulary, in float64);
- the log-probability of every token of one text given its prefix (the
  perplexity pass).

Run (writes crates/fute-llm/tests/fixtures/gemma3-llama-cpp.json):
    /work/venv-torch/bin/python scripts/golden/gemma3_f32_gguf.py \
        $FUTE_ASSETS/gemma3/gemma-3-270m-q4_k_m.gguf /tmp/gemma-3-270m-f32.gguf
    ~/.cache/fute/llama-venv/bin/python scripts/golden/gemma3_llama_cpp.py \
        $FUTE_ASSETS/gemma3/gemma-3-270m-q4_k_m.gguf /tmp/gemma-3-270m-f32.gguf
"""

import json
import os
import sys

import llama_cpp
import numpy as np

GREEDY_TOKENS = 16
TOP_K = 10

TEXTS = [
    "The capital of France is",
    "Hello  world!\n\n  Tabs\tand 12345 numbers, 3.14 and 1,000,000.",
    "It's a don't-miss film; I'd say it's GREAT!!! 10/10 :)",
    "Café naïve résumé — “quoted” ‘text’ … 日本語 😀",
    "<start_of_turn>user\nHi<end_of_turn>\n<eos>",
    "   leading spaces and trailing   ",
    "<table><tr>cell</tr></table>\n\n\n",
    "𓀀𓀁 rare glyphs 🧬",
    "yes",
    "Yes",
    "positive",
    "contradiction",
]

# Completion prompts as fute's completion template renders them (a user
# message, then "Answer:" and a newline), plus a plain text.
PROMPTS = [
    "The capital of France is",
    "Does the movie review below make someone want to watch it? \n\n"
    "A wonderful, moving film with great acting.\n"
    "Write your answer (yes, Yes, no, No) in lower case without any explanation.\n"
    "Answer:\n",
    "Boring, predictable and far too long. I walked out. How does the viewer feel about the movie? \n"
    "Write your answer (good, Good, positive, bad, Bad, negative) in lower case without any explanation.\n"
    "Answer:\n",
]

PERPLEXITY_TEXT = "The quick brown fox jumps over the lazy dog. It was not amused."


def log_softmax(row):
    row = np.asarray(row, dtype=np.float64)
    m = row.max()
    return row - (m + np.log(np.exp(row - m).sum()))


def load(path):
    return llama_cpp.Llama(
        model_path=path,
        n_ctx=1024,
        n_threads=2,
        logits_all=True,
        verbose=False,
    )


def tokenize(llm, text, special):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)


def run(llm):
    """Prompts (ids, greedy continuation, top next-token log-probs) and the
    per-token log-probs of PERPLEXITY_TEXT."""
    bos = llm.token_bos()
    prompts = []
    for prompt in PROMPTS:
        ids = [bos] + tokenize(llm, prompt, False)
        llm.reset()
        llm.eval(ids)
        first = log_softmax(llm.scores[llm.n_tokens - 1])
        top = np.argsort(-first, kind="stable")[:TOP_K]
        greedy = []
        logits = llm.scores[llm.n_tokens - 1]
        for _ in range(GREEDY_TOKENS):
            nxt = int(np.argmax(logits))
            greedy.append(nxt)
            llm.eval([nxt])
            logits = llm.scores[llm.n_tokens - 1]
        prompts.append(
            {
                "prompt": prompt,
                "ids": ids,
                "greedy": greedy,
                "top_ids": [int(i) for i in top],
                "top_logprobs": [float(first[i]) for i in top],
            }
        )
    ids = [bos] + tokenize(llm, PERPLEXITY_TEXT, False)
    llm.reset()
    llm.eval(ids)
    token_logprobs = [
        float(log_softmax(llm.scores[i])[ids[i + 1]]) for i in range(len(ids) - 1)
    ]
    return {
        "prompts": prompts,
        "perplexity": {"text": PERPLEXITY_TEXT, "ids": ids, "token_logprobs": token_logprobs},
    }


def main():
    quantized, f32 = sys.argv[1], sys.argv[2]
    llm = load(quantized)
    texts = [
        {"text": t, "special": tokenize(llm, t, True), "literal": tokenize(llm, t, False)}
        for t in TEXTS
    ]
    out = {
        "source": f"llama-cpp-python {llama_cpp.__version__}, CPU, n_threads=2, "
        "scripts/golden/gemma3_llama_cpp.py",
        "bos": llm.token_bos(),
        "texts": texts,
        "q4_k_m": run(llm),
    }
    del llm
    out["f32"] = run(load(f32))
    dest = os.path.join(
        os.path.dirname(__file__),
        "../../crates/fute-llm/tests/fixtures/gemma3-llama-cpp.json",
    )
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(dest))


if __name__ == "__main__":
    main()
