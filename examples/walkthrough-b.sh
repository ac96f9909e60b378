#!/usr/bin/env bash
# Walkthrough B of the ops manual, over HTTP, with its own curl commands.
# Start a worker and the api-shim first, each in its own terminal:
#   sisu worker            (admin :3002)
#   sisu serve             (http :3001)
# Note: older curl versions do not expand the manual's `:3001` shorthand; use 127.0.0.1:3001.
set -euo pipefail
API="${API:-127.0.0.1:3001}"

I_ID=$(curl -s -X POST "$API/intents" -d '{"goal":"demo","inputs":{},"constraints":{}}' \
  -H 'Content-Type: application/json' | jq -r .intentId)
echo "intent: $I_ID"

R_ID=$(curl -s -X POST "$API/intents/$I_ID/run" -d '{"traceId":"ops-01"}' \
  -H 'Content-Type: application/json' | jq -r .runId)
echo "run:    $R_ID (same id: the run is the intent's one workflow)"

for _ in $(seq 1 50); do
  status=$(curl -s "$API/runs/$I_ID" | jq -r .status)
  [ "$status" = succeeded ] && break
  sleep 0.2
done
curl -s "$API/runs/$I_ID" | jq '{status, traceId, steps: [.steps[].stepId]}'
