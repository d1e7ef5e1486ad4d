#!/usr/bin/env bash
# A local OpenAI-compatible LLM server for fute-llm's integration tests:
# llama-cpp-python[server] 0.3.36 serving the packaged SmolLM2-135M-Instruct GGUF
# on 127.0.0.1.
#
#   scripts/llama-server.sh install   build the wheel once (~12-15 min on 2 cores) and
#                                     install it with its [server] extras into a venv
#   scripts/llama-server.sh start     install if missing, start, wait for /v1/models,
#                                     print the base URL (export it as FUTE_LLM_SERVER)
#   scripts/llama-server.sh stop      stop the server this script started
#   scripts/llama-server.sh status
#
# Everything lives outside the clone:
#   FUTE_LLAMA_WHEELS  $HOME/.cache/fute/wheels         (the built wheel)
#   FUTE_LLAMA_VENV    $HOME/.cache/fute/llama-venv     (python -m llama_cpp.server)
#   FUTE_LLAMA_STATE   $HOME/.cache/fute/llama-server   (pid file, log)
#   FUTE_LLM_PORT      8765
#   FUTE_LLM_MODEL     $FUTE_ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail

VERSION=0.3.36
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/fute"
WHEELS="${FUTE_LLAMA_WHEELS:-$CACHE/wheels}"
VENV="${FUTE_LLAMA_VENV:-$CACHE/llama-venv}"
STATE="${FUTE_LLAMA_STATE:-$CACHE/llama-server}"
PORT="${FUTE_LLM_PORT:-8765}"
ASSETS="${FUTE_ASSETS:-$CACHE/assets}"
MODEL="${FUTE_LLM_MODEL:-$ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
PIDFILE="$STATE/server.pid"
LOG="$STATE/server.log"
URL="http://127.0.0.1:$PORT"

wheel() { ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1; }

installed() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import llama_cpp, llama_cpp.server, uvicorn, fastapi, sse_starlette, pydantic_settings; assert llama_cpp.__version__ == '$VERSION'" 2>/dev/null
}

install() {
  if installed; then return 0; fi
  mkdir -p "$WHEELS"
  if [ -z "$(wheel)" ]; then
    echo "building llama-cpp-python $VERSION from the sdist (no wheel exists for this Python; ~12-15 min on 2 cores)" >&2
    local t0=$SECONDS
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
      CMAKE_BUILD_PARALLEL_LEVEL=2 nice -n 19 \
      pip wheel --no-deps -w "$WHEELS" "llama-cpp-python==$VERSION" >&2
    echo "built in $((SECONDS - t0)) s: $(wheel)" >&2
  fi
  # A venv whose creation was interrupted has python but no pip (seen in CI):
  # rebuild it rather than trusting that bin/pip exists.
  if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip --upgrade >&2
  fi
  "$VENV/bin/python" -m pip install -q "$(wheel)[server]" >&2
  installed || { echo "llama-cpp-python[server] did not install into $VENV" >&2; exit 1; }
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  [ -f "$MODEL" ] || { echo "model $MODEL missing; run: cargo run -p fute-cli -- assets fetch smollm2" >&2; exit 1; }
  install
  mkdir -p "$STATE"
  if running; then
    echo "$URL"
    return 0
  fi
  nohup "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --model_alias smollm2 \
    --host 127.0.0.1 --port "$PORT" --n_ctx 2048 --n_threads 2 >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 240); do
    if curl -sf "$URL/v1/models" >/dev/null 2>&1; then
      echo "$URL"
      return 0
    fi
    running || { echo "llama server exited; log $LOG:" >&2; tail -20 "$LOG" >&2; exit 1; }
    sleep 0.5
  done
  echo "llama server did not answer $URL/v1/models within 120 s; log $LOG" >&2
  stop
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    local pid
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running: $URL (pid $(cat "$PIDFILE"))"; else echo "stopped"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
