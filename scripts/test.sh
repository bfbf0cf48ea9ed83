#!/usr/bin/env bash
# The test command (README): starts a throwaway PostgreSQL (installing it on a fresh machine),
# then runs every test of the workspace against it. SQL Server integration tests run only when
# MSSQL_TEST_URL names a real SQL Server; otherwise they are reported as skipped, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/pg-test-env.sh)"
export PG_TEST_URL

banner() {
    echo "=========================================================================="
    echo "$@"
    echo "=========================================================================="
}

if [ -n "${MSSQL_TEST_URL:-}" ]; then
    banner "MSSQL_TEST_URL is set: the SQL Server integration tests (tests/mssql_*.rs) will run."
    cargo test --workspace -- --include-ignored
else
    banner "SKIPPED: SQL Server integration tests (tests/mssql_*.rs): MSSQL_TEST_URL is not set." \
        "They appear below as 'ignored'. Set MSSQL_TEST_URL to an ADO connection string to run them."
    cargo test --workspace
    banner "SKIPPED: SQL Server integration tests (tests/mssql_*.rs) did not run: no MSSQL_TEST_URL."
fi
