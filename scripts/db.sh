#!/usr/bin/env bash
# The project-local PostgreSQL with pgvector: `start` (install if missing, init, start, create
# the `golden` database), `stop`, `status`, `url`.
#
# Why: tests and `make demo` need a real PostgreSQL with pgvector and nothing installed by
# hand. Its data lives in `.pgdata/` inside the repository (git-ignored) and it listens on
# 127.0.0.1 at its own port, so it never touches a system cluster. initdb refuses to run as
# root, so as root the server runs as the `postgres` system user.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR="${PG_MAJOR:-15}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}"
PORT="${GOLDEN_PGPORT:-54329}"
DB_NAME="${GOLDEN_PGDATABASE:-golden}"
SUPERUSER=postgres
URL="postgres://$SUPERUSER@127.0.0.1:$PORT/$DB_NAME"

say() { echo "db: $*" >&2; }

case "$PORT" in
'' | *[!0-9]* | 0*) bad_port=1 ;;
*) bad_port=$((PORT > 65535)) ;;
esac
if [ "$bad_port" -ne 0 ]; then
    say "GOLDEN_PGPORT must be a port number (1-65535), not '$PORT'"
    exit 2
fi

# Runs a command as the postgres system user, from / : the PostgreSQL programs change back to
# their working folder, and postgres may not be allowed into the caller's (the repository under
# /root, say), which makes each of them print "could not change directory". Every path given
# to them is absolute.
as_postgres() {
    (cd / && runuser -u postgres -- "$@")
}

# Runs a command as the user that owns the cluster.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        as_postgres "$@"
    else
        "$@"
    fi
}

# As root the server runs as `postgres`, which may not be able to reach a repository under a
# private folder (/root, say); then the data goes to a folder of /var/tmp named after it. This
# depends on the postgres user, so `start` decides after installing PostgreSQL and creating
# that user; `stop` and `status` decide the same way and find the same folder.
choose_pgdata() {
    if [ -n "${GOLDEN_PGDATA:-}" ]; then
        case "$GOLDEN_PGDATA" in
        /*) PGDATA_DIR="$GOLDEN_PGDATA" ;;
        *) PGDATA_DIR="$PWD/$GOLDEN_PGDATA" ;;
        esac
    elif [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 &&
        ! as_postgres test -x "$ROOT"; then
        PGDATA_DIR="/var/tmp/golden-pgdata-$(echo -n "$ROOT" | sha256sum | cut -c1-12)"
    else
        PGDATA_DIR="$ROOT/.pgdata"
    fi
}

ensure_postgres_user() {
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

is_running() {
    [ -f "$PGDATA_DIR/PG_VERSION" ] && as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

init_cluster() {
    mkdir -p "$PGDATA_DIR"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$PGDATA_DIR"
        if ! as_postgres test -w "$PGDATA_DIR"; then
            say "the postgres user cannot write $PGDATA_DIR; set GOLDEN_PGDATA to a folder it can use"
            exit 1
        fi
    fi
    chmod 700 "$PGDATA_DIR"
    local errors
    errors="$(mktemp)"
    say "initialising a cluster in $PGDATA_DIR"
    as_owner "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$SUPERUSER" --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null 2>"$errors" || {
        cat "$errors" >&2
        rm -f "$errors"
        exit 1
    }
    rm -f "$errors"
    cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# golden: a local development and test server
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
max_connections = 200
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 2GB
EOF
}

start() {
    bash "$ROOT/scripts/install-postgres.sh"
    ensure_postgres_user
    choose_pgdata
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
        init_cluster
    fi
    if ! is_running; then
        say "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$PORT"
        as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 start >/dev/null || {
            tail -n 20 "$PGDATA_DIR/server.log" >&2
            exit 1
        }
    fi
    local psql=(env PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER" -d postgres -v ON_ERROR_STOP=1)
    if [ -z "$("${psql[@]}" -tAc "select 1 from pg_database where datname = '$DB_NAME'")" ]; then
        "${psql[@]}" -c "create database \"$DB_NAME\""
    fi
    "${psql[@]}" -d "$DB_NAME" -c "create extension if not exists vector"
    say "ready: $URL"
}

stop() {
    choose_pgdata
    if is_running; then
        as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) choose_pgdata; if is_running; then echo "running: $URL"; else echo "stopped"; exit 3; fi ;;
url) echo "$URL" ;;
*)
    echo "usage: $0 start|stop|status|url" >&2
    exit 2
    ;;
esac
