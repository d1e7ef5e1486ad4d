#!/usr/bin/env bash
# Issue 12, "mixed-architecture store": one FUTE space holding the MTEs of fine-tuned
# classifiers of two architectures — MiniLM (a BERT encoder) and SmolLM2-135M (a Llama
# decoder, LoRA) — each fine-tuned on the same three datasets, beside the DTEs of those
# datasets and two more, all through the real MiniLM surrogate (paper §2: a model's MTE is
# the method applied to the surrogate trained on U labelled by that model).
#
# It uses only the public `fute` commands (train, predict, corpus build, embed, rank, map),
# so it is also an end-to-end check that a saved SmolLM2 classifier folder is an ordinary
# subject model. Every step is cached by fute itself: a rerun, or a run after an
# interruption, redoes only what is missing.
#
# Usage:  scripts/experiments/mixed_arch.sh            # real assets (`fute assets fetch --all` first, or it fetches)
# Environment (defaults in brackets):
#   FUTE          the fute binary [builds `cargo build --release -p fute-cli` and uses it]
#   WS            the workspace [runs/mixed-arch]; results land in $WS/results
#   TRAIN_N       training examples per fine-tuned model [256]
#   MINILM_EPOCHS, MINILM_LR   MiniLM full fine-tuning [3, 2e-4] (the demo's settings)
#   SMOL_EPOCHS, SMOL_LR, SMOL_BATCH   SmolLM2 LoRA fine-tuning [2, 2e-3, 8] (at 5e-4 it
#                 stayed at the majority class on imdb and tweets dev)
#   MAX_LEN       tokens per input everywhere [64]
#   TEST_N        test examples each model is scored on [200]
#   DTE_N         gold examples per DTE [128]
#   U_N           inputs of the corpus U the MTEs are computed on [128]
#   METHODS       embedding methods [fim prefix] (FUTE + TaskEmb, FUTE + TuPaTE)
# Needs jq. Prints the accuracy table, every ranking and the nearness table, and writes them
# (markdown, CSV, JSON) with the maps under $WS/results.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WS="${WS:-$ROOT/runs/mixed-arch}"
TRAIN_N="${TRAIN_N:-256}"
MINILM_EPOCHS="${MINILM_EPOCHS:-3}"
MINILM_LR="${MINILM_LR:-2e-4}"
SMOL_EPOCHS="${SMOL_EPOCHS:-2}"
SMOL_LR="${SMOL_LR:-2e-3}"
SMOL_BATCH="${SMOL_BATCH:-8}"
MAX_LEN="${MAX_LEN:-64}"
TEST_N="${TEST_N:-200}"
DTE_N="${DTE_N:-128}"
U_N="${U_N:-128}"
METHODS="${METHODS:-fim prefix}"
SOURCES=(imdb tweets spam-assassin)
DTE_DATASETS=(imdb tweets spam-assassin rotten-tomatoes lee-similarity)
ARCHS=(minilm smollm2)
CORPUS=mixarch-u
SEED=42

command -v jq >/dev/null || {
    echo "error: this script needs jq (apt-get install jq)" >&2
    exit 1
}
if [[ -z "${FUTE:-}" ]]; then
    (cd "$ROOT" && cargo build --release -p fute-cli)
    FUTE="${CARGO_TARGET_DIR:-$ROOT/target}/release/fute"
fi
[[ -x "$FUTE" ]] || {
    echo "error: FUTE=$FUTE is not an executable fute binary" >&2
    exit 1
}

OUT="$WS/results"
MODELS="$WS/models"
mkdir -p "$OUT" "$MODELS"
START=$(date +%s)
say() { printf '[%4ds] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
fute() { "$FUTE" --workspace "$WS" "$@"; }

say "settings: train $TRAIN_N examples (MiniLM ${MINILM_EPOCHS} epochs lr $MINILM_LR full; SmolLM2 ${SMOL_EPOCHS} epochs lr $SMOL_LR LoRA batch $SMOL_BATCH), max-len $MAX_LEN, test $TEST_N, DTE $DTE_N, U $U_N, methods: $METHODS"
say "1. assets (fetched once, checksummed) and the corpus U"
fute assets fetch --all >&2
fute corpus build "$CORPUS" --per-source 200 --max-total "$U_N" --seed "$SEED" >&2

# 2. Fine-tune each architecture on each source dataset. A finished folder is kept and
# reused; its parent folder is named after every setting of its training, so a run with
# other settings trains afresh instead of reusing a model made with the old ones.
tag() { printf '%s' "$*" | sha256sum | cut -c1-10; }
MINILM_TAG="minilm-$(tag "$TRAIN_N $MINILM_EPOCHS $MINILM_LR 16 $MAX_LEN $SEED")"
SMOL_TAG="smollm2-$(tag "$TRAIN_N $SMOL_EPOCHS $SMOL_LR $SMOL_BATCH $MAX_LEN $SEED")"
model_dir() { # arch, dataset
    if [[ "$1" == minilm ]]; then
        echo "$MODELS/$MINILM_TAG/$2-$1"
    else
        echo "$MODELS/$SMOL_TAG/$2-$1"
    fi
}
for arch in "${ARCHS[@]}"; do
    for d in "${SOURCES[@]}"; do
        dir="$(model_dir "$arch" "$d")"
        if [[ -f "$dir/fute_train.json" ]]; then
            say "2. $arch on $d: already trained ($dir)"
            continue
        fi
        say "2. fine-tuning $arch on $d"
        if [[ "$arch" == minilm ]]; then
            fute train --base minilm --dataset "$d" --out "$dir" --limit "$TRAIN_N" \
                --epochs "$MINILM_EPOCHS" --lr "$MINILM_LR" --batch 16 --max-len "$MAX_LEN" \
                --eval-limit 64 --seed "$SEED" >&2
        else
            fute train --base smollm2 --method lora --dataset "$d" --out "$dir" --limit "$TRAIN_N" \
                --epochs "$SMOL_EPOCHS" --lr "$SMOL_LR" --batch "$SMOL_BATCH" --max-len "$MAX_LEN" \
                --eval-limit 32 --seed "$SEED" >&2
        fi
    done
done

# 3. Test accuracy of every model, beside the majority class of the same test examples.
say "3. test accuracy ($TEST_N seeded test examples each)"
echo "model,architecture,dataset,test_examples,accuracy,majority_class" >"$OUT/accuracy.csv"
for arch in "${ARCHS[@]}"; do
    for d in "${SOURCES[@]}"; do
        dir="$(model_dir "$arch" "$d")"
        preds="$(dirname "$dir")/predictions-$d-$arch.jsonl"
        json="$(fute predict --model "$dir" --dataset "$d" --split test --limit "$TEST_N" \
            --max-len "$MAX_LEN" --out "$preds" --json)"
        acc="$(jq -r '.metrics.accuracy' <<<"$json")"
        n="$(jq -r '.examples' <<<"$json")"
        majority="$(jq -s '(group_by(.gold) | map(length) | max) / length' "$preds")"
        model_type="$(jq -r '.model_type' "$dir/config.json")"
        echo "$d-$arch,$model_type,$d,$n,$acc,$majority" >>"$OUT/accuracy.csv"
        say "   $d-$arch ($model_type): accuracy $acc on $n test examples (majority class $majority)"
    done
done

# 4–5. DTEs of five datasets and MTEs of the six models, per method, in one store.
embed_id() { jq -r '.id' <<<"$1"; }
for m in $METHODS; do
    declare -A DTE=() MTE=()
    for d in "${DTE_DATASETS[@]}"; do
        say "4. $m DTE of $d ($DTE_N examples)"
        DTE[$d]="$(embed_id "$(fute embed dataset "$d" --method "$m" --limit "$DTE_N" \
            --max-len "$MAX_LEN" --batch 8 --seed "$SEED" --json)")"
    done
    for arch in "${ARCHS[@]}"; do
        for d in "${SOURCES[@]}"; do
            say "5. $m MTE of $d-$arch on U ($U_N inputs)"
            MTE[$d-$arch]="$(embed_id "$(fute embed model "$(model_dir "$arch" "$d")" \
                --corpus "$CORPUS" --method "$m" --max-len "$MAX_LEN" --batch 8 \
                --seed "$SEED" --json)")"
        done
    done
    dte_ids="$(IFS=,; echo "${DTE[*]}")"
    mte_ids="$(IFS=,; echo "${MTE[*]}")"

    # 6. For each dataset, which models are nearest (`fute rank`, centred cosines).
    say "6. $m: fute rank, every DTE against the six model MTEs"
    : >"$OUT/rank-$m.txt"
    for d in "${DTE_DATASETS[@]}"; do
        fute rank --target "${DTE[$d]}" --candidates "$mte_ids" --centre | tee -a "$OUT/rank-$m.txt"
        echo | tee -a "$OUT/rank-$m.txt"
    done

    # 7. One map of the eleven points.
    say "7. $m: fute map"
    # shellcheck disable=SC2086
    fute map ${DTE[*]} ${MTE[*]} --out "$OUT/map-$m" \
        --title "DTEs and the MTEs of MiniLM and SmolLM2 classifiers ($m, MiniLM surrogate)" >&2

    # 8. Nearness: each model's MTE against the five DTEs, raw and centred (minus the
    # DTEs' mean, `fute rank --centre`); the rank of its own dataset's DTE among the five.
    say "8. $m: nearness of each MTE to its own dataset's DTE"
    {
        echo "| model | architecture | own DTE: cosine (rank of 5) | nearest other DTE: cosine | own DTE: centred cosine (rank of 5) | nearest other DTE: centred cosine |"
        echo "| --- | --- | --- | --- | --- | --- |"
    } >"$OUT/nearness-$m.md"
    echo "model,architecture,dte,cosine,centred_cosine" >"$OUT/nearness-$m.csv"
    for arch in "${ARCHS[@]}"; do
        for d in "${SOURCES[@]}"; do
            id="${MTE[$d-$arch]}"
            raw="$(fute rank --target "$id" --candidates "$dte_ids" --json)"
            cen="$(fute rank --target "$id" --candidates "$dte_ids" --centre --json)"
            jq -r --argjson c "$cen" --arg m "$d-$arch" --arg a "$arch" \
                '.[] as $r | ($c[] | select(.id == $r.id) | .score) as $cc
                 | [$m, $a, $r.name, $r.score, $cc] | @csv' <<<"$raw" >>"$OUT/nearness-$m.csv"
            row() { # ranking JSON → "own cosine|its rank|nearest other cosine|its name"
                jq -r --arg own "$d" '
                    (map(.name) | index($own)) as $i
                    | (map(select(.name != $own)) | first) as $o
                    | "\(.[$i].score)|\($i + 1)|\($o.score)|\($o.name)"' <<<"$1"
            }
            IFS='|' read -r own rank other other_name <<<"$(row "$raw")"
            printf -v own_raw '%.5f (%d)' "$own" "$rank"
            printf -v other_raw '%.5f (%s)' "$other" "$other_name"
            IFS='|' read -r own rank other other_name <<<"$(row "$cen")"
            printf -v own_cen '%.3f (%d)' "$own" "$rank"
            printf -v other_cen '%.3f (%s)' "$other" "$other_name"
            echo "| $d-$arch | $arch | $own_raw | $other_raw | $own_cen | $other_cen |" >>"$OUT/nearness-$m.md"
        done
    done
    echo "== nearness ($m): each model's MTE vs the five DTEs" >&2
    cat "$OUT/nearness-$m.md"
    unset DTE MTE
done

echo "== test accuracy" >&2
column -s, -t <"$OUT/accuracy.csv"
say "done; results in $OUT"
