#!/usr/bin/env bash
# Installs what the local database and the build need and is missing: the PostgreSQL server,
# libpq-dev, pgvector, and git.
#
# Why a script: a fresh Debian 12 machine has PostgreSQL 15 but no pgvector package for it.
# Where the distribution ships `postgresql-NN-pgvector` we install that; otherwise we build the
# `pgvector` source package of the next Debian release (trixie), fetched from the same mirror
# this machine's apt already uses (never a host name written here), verified by apt against
# the Debian archive keyring. Idempotent: it does nothing when pgvector is already installed.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}"
PGVECTOR_SUITE="${PGVECTOR_SUITE:-trixie}"

say() { echo "install-postgres: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else say "need root to run: $*"; exit 1
    fi
}

apt_updated=""
apt_update_once() {
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
}

apt_install() {
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pgvector_installed() {
    [ -x "$PG_BIN/pg_config" ] &&
        [ -f "$("$PG_BIN/pg_config" --sharedir)/extension/vector.control" ]
}

build_pgvector_from_source() {
    local mirror work
    mirror="$(bash "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh")"
    if [ -z "$mirror" ]; then
        say "no Debian mirror found in /etc/apt; cannot fetch the pgvector source package"
        exit 1
    fi
    apt_install "postgresql-server-dev-$PG_MAJOR" make gcc dpkg-dev
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources.list.d"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $PGVECTOR_SUITE main" \
        >"$work/sources.list"
    # A private apt state so the machine's own sources and lists are left alone.
    local apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/sources.list.d"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
    say "fetching the pgvector source package of Debian $PGVECTOR_SUITE"
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" source -qq pgvector >/dev/null)
    local src
    src="$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)"
    say "building $(basename "$src") against PostgreSQL $PG_MAJOR"
    # OPTFLAGS="" keeps the build portable (no -march=native) and quiet.
    make -s -C "$src" PG_CONFIG="$PG_BIN/pg_config" OPTFLAGS="" >/dev/null
    as_root make -s -C "$src" PG_CONFIG="$PG_BIN/pg_config" install >/dev/null
}

if [ ! -x "$PG_BIN/postgres" ]; then
    say "installing the PostgreSQL $PG_MAJOR server"
    apt_install "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR"
fi

# golden links against libpq (diesel's PostgreSQL backend): its headers and the unversioned
# library come with libpq-dev, which nothing else here is sure to pull in.
if [ ! -f /usr/include/postgresql/libpq-fe.h ]; then
    say "installing libpq-dev (golden links against libpq)"
    apt_install libpq-dev
fi

# The tests of `golden diff`, `merge` and `git-setup` run real git repositories, and
# `golden diff REV:path` reads through `git show`.
if ! command -v git >/dev/null; then
    say "installing git (golden reads revisions through it; its tests make repositories)"
    apt_install git
fi

if pgvector_installed; then
    exit 0
fi

apt_update_once
if apt-cache show "postgresql-$PG_MAJOR-pgvector" >/dev/null 2>&1; then
    say "installing postgresql-$PG_MAJOR-pgvector"
    apt_install "postgresql-$PG_MAJOR-pgvector"
else
    build_pgvector_from_source
fi

if ! pgvector_installed; then
    say "pgvector is still missing after the install; see the messages above"
    exit 1
fi
say "pgvector installed"
