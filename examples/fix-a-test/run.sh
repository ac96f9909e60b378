#!/usr/bin/env bash
# examples/fix-a-test: a tiny repository whose test fails, an intent whose scripted plan fixes
# it, the fix's test run in the sandbox, and the change handed back as a patch.
#
# Needs `sisu` on PATH and git. Uses your SISU_HOME (the embedded database by default) and
# starts its own sandbox worker, which it stops at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill "${worker:-0}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

echo "== a repository with a failing test, in $work/repo"
cp -R "$here/repo" "$work/repo"
git -C "$work/repo" init --quiet
git -C "$work/repo" add .
git -C "$work/repo" -c user.name=sisu -c user.email=sisu@example.invalid \
    commit --quiet -m "calc.sh with a bug"
(cd "$work/repo" && sh test.sh) || echo "(the test fails, as expected)"

echo "== a sandbox worker"
sisu worker --executor sandbox --admin-port 0 --executor-id "fix-a-test-$$" \
    > "$work/worker.log" 2>&1 &
worker=$!

echo "== the intent: the scripted fix, checked by 'sh test.sh' in the sandbox"
intent=$(sisu intent create --goal "$(jq -r .goal "$here/intent.json")" \
    --inputs "$(jq -c .inputs "$here/intent.json")" \
    --constraints "$(jq -c .constraints "$here/intent.json")" \
    --repo "$work/repo")
sisu intent run "$intent" --wait --timeout 120
sisu run logs "$intent"

echo "== the change, as a patch that applies to the repository"
sisu run patch "$intent" | tee "$work/fix.patch"
git -C "$work/repo" apply --check "$work/fix.patch"
echo "the patch applies; the repository itself is unchanged:"
git -C "$work/repo" status --short
echo "apply it with: git -C $work/repo apply $work/fix.patch"
