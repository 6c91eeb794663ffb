#!/usr/bin/env bash
# Start command for ../shared/bench/run_peer_bench.sh: a Suanli gateway on $PORT whose one operator is the
# harness's upstream ($UPSTREAM_BASE), with a fresh database, a funded account and its key in
# $BENCH_RUN_DIR/key (read back with --key-cmd 'cat $BENCH_RUN_DIR/key'). Metering and durable
# settlement are on, as in production. BENCH_PLAN=pack or BENCH_PLAN=subscription funds the calls from a
# token pack or a subscription's allowance instead of the wallet. BENCH_DATABASE_URL=postgresql://… (an
# empty database) serves from PostgreSQL instead of a SQLite file, with BENCH_WORKERS worker processes (1).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
suanli="$here/.venv/bin/suanli"
export SUANLI_DATABASE="$BENCH_RUN_DIR/suanli.db"
if [[ -n ${BENCH_DATABASE_URL:-} ]]; then export SUANLI_DATABASE_URL=$BENCH_DATABASE_URL; fi
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
[products.bench-pack]
kind = "pack"
price = "1"
tokens = 10_000_000_000
models = ["deepseek-v3.2"]
valid_days = 30
[products.bench-plan]
kind = "subscription"
price = "1"
models = ["deepseek-v3.2"]
allowances = [{ window = "5h", requests = 100_000_000 }, { window = "week", requests = 100_000_000 }]
TOML
"$suanli" account create bench --tier enterprise >/dev/null
"$suanli" wallet topup bench 1000000 >/dev/null
case ${BENCH_PLAN:-} in  # fund the calls from a pack or a subscription instead of the wallet
  pack) "$suanli" pack buy bench bench-pack >/dev/null ;;
  subscription) "$suanli" subscribe bench bench-plan >/dev/null ;;
  "") ;;
  *) echo "BENCH_PLAN is pack or subscription" >&2; exit 2 ;;
esac
"$suanli" key create bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' > "$BENCH_RUN_DIR/key"
exec "$suanli" serve --port "$PORT" --workers "${BENCH_WORKERS:-1}"
