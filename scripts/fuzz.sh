#!/usr/bin/env bash
# Runs every property-test target of the parsers of user files for longer than
# `cargo test` does (64 cases each), outside CI, and prints how long each ran.
#
#   scripts/fuzz.sh                 # PROPTEST_CASES=20000 per target
#   CASES=200000 scripts/fuzz.sh    # more
#   BUDGET=600 scripts/fuzz.sh      # repeat each target (fresh seeds) for ~600 s
#
# No panic anywhere is the property; a failure prints the shrunk input, which
# becomes a named regression test beside the target.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${CASES:-20000}
BUDGET=${BUDGET:-0}
TARGETS=(
  "fute-core fuzz_parsers jsonl_import_never_panics"
  "fute-core fuzz_parsers csv_import_never_panics"
  "fute-core fuzz_parsers dataset_card_never_panics"
  "fute-core fuzz_parsers corpus_folder_never_panics"
  "fute-core fuzz_parsers decoding_keeps_utf8_and_drops_only_a_leading_bom"
  "fute-core fuzz_parsers vector_headers_never_panic"
  "fute-nn fuzz_files config_json_never_panics"
  "fute-nn fuzz_files safetensors_headers_never_panic"
  "fute-nn fuzz_files tokenizer_json_never_panics"
  "fute-nn fuzz_files encoding_respects_the_maximum_length"
  "fute-llm fuzz_prompts prompt_set_files_never_panic"
  "fute-llm fuzz_prompts a_bom_does_not_change_a_prompt_set_file"
  "fute-llm fuzz_gguf gguf_files_never_panic"
  "fute-llm fuzz_gguf gguf_metadata_values_never_panic"
)
for c in fute-core fute-nn fute-llm; do
  cargo test --release -q -p "$c" --no-run >/dev/null 2>&1 || cargo test --release -p "$c" --no-run
done
printf '%-14s %-52s %10s %8s\n' CRATE TARGET CASES SECONDS
for t in "${TARGETS[@]}"; do
  read -r crate file name <<<"$t"
  start=$(date +%s.%N); runs=0
  while :; do
    PROPTEST_CASES=$CASES cargo test --release -q -p "$crate" --test "$file" "$name" -- --exact >/tmp/fuzz-$name.log 2>&1 \
      || { echo "FAILED: $crate $file $name (see /tmp/fuzz-$name.log)"; tail -30 "/tmp/fuzz-$name.log"; exit 1; }
    runs=$((runs + 1))
    now=$(date +%s.%N)
    awk -v s="$start" -v n="$now" -v b="$BUDGET" 'BEGIN { exit !(n - s < b) }' || break
  done
  printf '%-14s %-52s %10d %8.1f\n' "$crate" "$name" $((CASES * runs)) "$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { print n - s }')"
done
