#!/usr/bin/env bash
# The compressed soak, run long: the real binary over the out-of-process SQL Server double and
# the PostgREST test server, changes both ways at a steady rate, a fault every 3 s in turn
# (SIGKILL + restart, PostgREST unreachable, slow link, SQL Server down, SIGTERM + restart),
# then both sides compared row for row and the binary's memory checked (peak <= 64 MB, no
# growth beyond 16 MB from the first quarter of the run to the last).
#
#   scripts/soak.sh            # 10 minutes
#   scripts/soak.sh 3600       # an hour
#
# CI runs the same test for 40 s (`cargo test --test soak`). Needs PostgreSQL: this script
# starts the throwaway server of scripts/pg-test-env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/pg-test-env.sh)"
SOAK_SECS=${1:-600} cargo test --test soak -- --nocapture
