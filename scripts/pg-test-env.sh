#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for syncbridge's tests and prints the line that points the
# tests at it:
#
#   eval "$(scripts/pg-test-env.sh)"     # start (or reuse) it; exports PG_TEST_URL
#   scripts/pg-test-env.sh stop          # stop it
#
# Idempotent: when the server already answers on the port, it only prints the export line.
# Installs PostgreSQL with apt when no server binaries are found (fresh CI machines).
# The cluster is disposable: trust authentication on 127.0.0.1 only, fsync off.
#
# Settings (environment):
#   SYNCBRIDGE_PG_DIR   where the cluster lives   (default /tmp/syncbridge-pg)
#   SYNCBRIDGE_PG_PORT  TCP port on 127.0.0.1     (default 55432)
#
# Only the export line goes to stdout; everything else goes to stderr so that eval stays safe.
set -euo pipefail

PG_DIR=${SYNCBRIDGE_PG_DIR:-/tmp/syncbridge-pg}
PG_PORT=${SYNCBRIDGE_PG_PORT:-55432}
DATA_DIR="$PG_DIR/data"
LOG_FILE="$PG_DIR/postgres.log"
START_TIMEOUT_SECS=60

say() { echo "pg-test-env: $*" >&2; }

# Newest installed server version's bin directory (Debian layout), or nothing.
find_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
    fi
}

install_postgres() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin and no apt-get to install them"
        exit 1
    fi
    if [ "$(id -u)" != 0 ]; then
        say "PostgreSQL is not installed; run this script as root once so it can apt-get install it"
        exit 1
    fi
    say "installing PostgreSQL with apt-get (one-time)"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
}

# postgres refuses to run as root, so root hands the cluster to the postgres user.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

print_export() {
    echo "export PG_TEST_URL=postgres://postgres@127.0.0.1:${PG_PORT}/postgres"
}

is_up() {
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres
}

init_cluster() {
    say "creating a throwaway cluster in $DATA_DIR"
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$PG_DIR"
    fi
    # C collation keeps text ordering byte-wise and identical on every machine.
    as_owner "$BIN/initdb" -D "$DATA_DIR" -U postgres --auth=trust --encoding=UTF8 --no-locale >&2
    as_owner tee -a "$DATA_DIR/postgresql.conf" >/dev/null <<EOF

# --- syncbridge test cluster (scripts/pg-test-env.sh) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
max_connections = 200
# Disposable data: durability only costs time here.
fsync = off
synchronous_commit = off
full_page_writes = off
# Supabase runs in UTC; rendering timestamps the same way keeps expectations portable.
timezone = 'UTC'
log_timezone = 'UTC'
EOF
    as_owner tee "$DATA_DIR/pg_hba.conf" >/dev/null <<EOF
# Throwaway test cluster: trust, reachable from this machine only.
local all all trust
host  all all 127.0.0.1/32 trust
EOF
}

start_cluster() {
    as_owner "$BIN/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -W start >&2
    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    until is_up; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "PostgreSQL did not accept connections within ${START_TIMEOUT_SECS}s; last log lines:"
            tail -n 30 "$LOG_FILE" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    say "PostgreSQL is up on 127.0.0.1:$PG_PORT (data in $DATA_DIR)"
}

stop_cluster() {
    if [ -f "$DATA_DIR/postmaster.pid" ]; then
        as_owner "$BIN/pg_ctl" -D "$DATA_DIR" -m fast -w stop >&2
    else
        say "no running cluster in $DATA_DIR"
    fi
}

BIN=$(find_bindir)
if [ -z "$BIN" ]; then
    install_postgres
    BIN=$(find_bindir)
    if [ -z "$BIN" ]; then
        say "apt-get install finished but no pg_ctl was found under /usr/lib/postgresql/*/bin"
        exit 1
    fi
fi

case "${1:-start}" in
    start)
        if is_up; then
            print_export
            exit 0
        fi
        if [ ! -f "$DATA_DIR/PG_VERSION" ]; then
            init_cluster
        fi
        start_cluster
        print_export
        ;;
    stop)
        stop_cluster
        ;;
    *)
        say "usage: $0 [start|stop]"
        exit 2
        ;;
esac
