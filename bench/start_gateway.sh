#!/usr/bin/env bash
# Start command for ../shared/bench/run_peer_bench.sh: a Suanli gateway on $PORT whose one operator is the
# harness's upstream ($UPSTREAM_BASE), with a fresh database, a funded account and its key in
# $BENCH_RUN_DIR/key (read back with --key-cmd 'cat $BENCH_RUN_DIR/key'). Metering and durable
# settlement are on, as in production.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
suanli="$here/.venv/bin/suanli"
export SUANLI_DATABASE="$BENCH_RUN_DIR/suanli.db"
export SUANLI_CATALOG="$BENCH_RUN_DIR/catalog.toml"
export SUANLI_ADMIN_KEY=sk-admin-bench
cat > "$SUANLI_CATALOG" <<TOML
[operators.bench]
base_url = "$UPSTREAM_BASE"
[models."deepseek-v3.2"]
[[offers]]
operator = "bench"
model = "deepseek-v3.2"
context_window = 128000
max_output_tokens = 8192
price = { input = "2", cached_input = "0.2", output = "3" }
TOML
"$suanli" account create bench --tier enterprise >/dev/null
"$suanli" wallet topup bench 1000000 >/dev/null
"$suanli" key create bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' > "$BENCH_RUN_DIR/key"
exec "$suanli" serve --port "$PORT"
