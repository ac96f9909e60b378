#!/usr/bin/env bash
# Plan and run an intent with a recorded model run: no model, no key, no network. A worker with
# the replay compiler serves the model responses recorded in calls.json; the run then goes on
# as any run does (the plan's file is written, its two tasks are delivered to the mock system).
# Uses the embedded database of SISU_HOME, or SISU_DATABASE_URL when set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
field() {  # a field of intent.json, as sisu's flags take it
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print(v if isinstance(v, str) else json.dumps(v))' "$here/intent.json" "$1"
}

SISU_COMPILER=replay SISU_REPLAY_FROM="$here/calls.json" sisu worker --admin-port 0 \
  --executor-id "replay-example-$$" &
worker=$!
trap 'kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true' EXIT

I_ID=$(sisu intent create --goal "$(field goal)" --inputs "$(field inputs)" \
  --constraints "$(field constraints)")
sisu intent run "$I_ID" --wait --timeout 120
sisu run show "$I_ID"
sisu run calls "$I_ID"
