#!/usr/bin/env bash
# The same loop without any HTTP server: the CLI talks to the database directly.
# Needs a worker (`sisu worker` in another terminal), or use `sisu demo`, which starts one.
set -euo pipefail
here=$(dirname "$0")
I_ID=$(sisu intent create --file "$here/intents/hello.json" --json | jq -r .intentId)
sisu intent run "$I_ID" --trace-id ops-cli --wait --json
sisu run show "$I_ID"
