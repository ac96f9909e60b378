#!/bin/sh
# The repository's test: exits non-zero when calc.sh adds wrong.
set -eu
got=$(sh calc.sh 2 2)
if [ "$got" != 4 ]; then
    echo "FAIL: calc.sh 2 2 printed $got, expected 4" >&2
    exit 1
fi
echo "ok: calc.sh 2 2 = 4"
