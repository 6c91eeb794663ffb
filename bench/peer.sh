#!/usr/bin/env bash
# Side by side, in one run: the peer gateway (LiteLLM) and Suanli through ../shared/bench's harness.
# Needs: apt-get install nginx-light libnginx-mod-http-js wrk curl; ../shared/bench/litellm/setup.sh once.
#   bench/peer.sh [harness options, e.g. --duration 15]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
harness=${PEER_BENCH:-$here/../../shared/bench/run_peer_bench.sh}
[[ -x $harness ]] || harness=$here/../shared/bench/run_peer_bench.sh
"$(dirname "$here")/scripts/setup-venv"
if [[ -x ${LITELLM_VENV:-$HOME/.cache/peer-bench/litellm}/bin/litellm ]]; then
  "$harness" --name litellm --port 4100 --start "$(dirname "$harness")/litellm/start.sh" --key sk-bench-master "$@"
else
  echo "# litellm not set up: run $(dirname "$harness")/litellm/setup.sh for the peer's figures" >&2
fi
"$harness" --name suanli --port 4200 --start "$here/start_gateway.sh" --key-cmd 'cat $BENCH_RUN_DIR/key' "$@"
