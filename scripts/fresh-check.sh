#!/usr/bin/env bash
# `make fresh-check`: `make demo`, then `make test`, as root on a fresh Debian 12 (bookworm)
# with the repository's committed HEAD cloned into /root/golden. It ends with the exit code and
# wall time of each (printed, and written to target/fresh-check/summary.txt); each command's
# output goes to target/fresh-check/make-<target>.log as well.
#
# Why it exists: the README promises that both commands work on a fresh Debian 12 machine with
# Rust, and no warm machine notices when that breaks: PostgreSQL, pgvector and the postgres
# user are already there, and a second run hides what failed in the first (the first
# `make demo` in /root/golden once failed because db.sh looked for the postgres user before
# installing PostgreSQL). It is not run by CI (.ci/run runs `make test`): it needs root and
# takes 20 minutes or more of two cores.
#
# The root is made by debootstrap from the Debian mirror this machine's apt uses
# (scripts/debian-mirror.sh), with what any machine with a working Rust also has: a C compiler
# and linker, make, git, ca-certificates. From this machine it gets: its apt configuration
# (apt.conf.d) and local CA certificates, /etc/resolv.conf, its cargo and pip configuration (not the
# registry cache: the root's cargo home starts empty) and its rustup toolchain, bind-mounted
# read-only. No package starts a service in it (policy-rc.d). It shares this machine's
# network, so its server listens on FRESH_PGPORT (54339), not on 54329 where this machine's own
# may run, and DATABASE_URL points golden there too.
#
# FRESH_KEEP=1 keeps the bootstrapped root in target/fresh-check/base for the next FRESH_KEEP=1
# run (every run still works in a fresh copy of it) and leaves the run's root in
# target/fresh-check/root. Without it, each run bootstraps a new root and removes it at the
# end, and nothing is kept. FRESH_STEPS picks the make targets (default "demo test";
# FRESH_STEPS=db checks the mechanics in a few minutes).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
OUT="$REPO/target/fresh-check"
BASE="$OUT/base"
CHROOT="$OUT/root"
PORT="${FRESH_PGPORT:-54339}"
STEPS="${FRESH_STEPS:-demo test}"
KEEP="${FRESH_KEEP:-}"
SUITE=bookworm
PACKAGES=ca-certificates,gcc,libc6-dev,make,git

say() { echo "fresh-check: $*" >&2; }
fail() {
    say "$*"
    STOPPED="$*"
    exit 1
}

SUMMARY=()
STOPPED=""
FAILED=0
STEPS_DONE=""
MOUNTS_MADE=""

# --- checks ------------------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, mounts)"
case "$PORT" in
'' | *[!0-9]* | 0*) fail "FRESH_PGPORT must be a port number, not '$PORT'" ;;
esac
[ "$PORT" != 54329 ] ||
    fail "FRESH_PGPORT must not be 54329: the root shares this machine's network and its server"
MIRROR="$(bash "$REPO/scripts/debian-mirror.sh")"
[ -n "$MIRROR" ] || fail "no Debian mirror in /etc/apt to bootstrap from"
# The mirror's host never goes into a log of this script: `<apt mirror>` stands for it.
MIRROR_HOST="${MIRROR#*://}"
MIRROR_HOST="${MIRROR_HOST%%/*}"
MIRROR_PATTERN="$(printf '%s' "$MIRROR_HOST" | sed 's/[]\\.*^$|[]/\\&/g')"
mask_mirror() { sed -u "s|$MIRROR_PATTERN|<apt mirror>|g"; }

# This machine's Rust: its rustup (home and proxies) when it has one, else the toolchain of
# the rustc on PATH.
RUSTUP_DIR="${RUSTUP_HOME:-$HOME/.rustup}"
CARGO_DIR="${CARGO_HOME:-$HOME/.cargo}"
if command -v rustup >/dev/null && [ -d "$RUSTUP_DIR/toolchains" ]; then
    RUST_KIND=rustup
    RUST_PROXIES="$(dirname "$(command -v rustup)")"
    RUST_TOOLCHAIN="$(cd "$REPO" && rustup show active-toolchain | awk '{print $1; exit}')"
    [ -n "$RUST_TOOLCHAIN" ] || fail "rustup has no active toolchain for $REPO"
elif command -v rustc >/dev/null; then
    RUST_KIND=sysroot
    RUST_SYSROOT="$(cd "$REPO" && rustc --print sysroot)"
else
    fail "no Rust toolchain on PATH (rustup or rustc)"
fi

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock -n 9 || fail "another fresh-check runs in $OUT (or what it started)"

# Git as root in a repository another user owns (sudo make fresh-check) needs safe.directory,
# given to these commands only.
repo_git() { git -c safe.directory='*' -C "$REPO" "$@"; }
if [ -n "$(repo_git status --porcelain --untracked-files=no)" ]; then
    say "warning: uncommitted changes are not checked; the root gets the committed HEAD"
fi
HEAD_COMMIT="$(repo_git rev-parse HEAD)"

# --- mounts and cleanup ------------------------------------------------------------------------

# Mount points under a folder, deepest first.
mounts_under() {
    awk -v prefix="$1/" '{ m = $5; gsub(/\\040/, " ", m); if (index(m "/", prefix) == 1) print m }' \
        /proc/self/mountinfo | sort -r
}

unmount_all() {
    local m
    while IFS= read -r m; do
        [ -n "$m" ] || continue
        umount "$m" 2>/dev/null || umount -l "$m" || say "could not unmount $m"
    done < <(mounts_under "$OUT")
}

# mount_at TARGET MOUNT-ARGS...: a private mount (nothing propagates to or from this machine).
mount_at() {
    local target="$1"
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTS_MADE=1
    mount --make-private "$target"
}

# /proc, a read-only /sys, and a /dev of its own (a tmpfs with the usual nodes, its own devpts
# and /dev/shm, which PostgreSQL needs): nothing removed under the root can reach this
# machine's /dev.
mount_system() {
    mount_at "$CHROOT/proc" -t proc -o nosuid,nodev,noexec fresh-check-proc
    mount_at "$CHROOT/sys" -t sysfs -o ro,nosuid,nodev,noexec fresh-check-sys
    local dev="$CHROOT/dev"
    mount_at "$dev" -t tmpfs -o mode=755,nosuid,size=16m fresh-check-dev
    mknod -m 666 "$dev/null" c 1 3
    mknod -m 666 "$dev/zero" c 1 5
    mknod -m 666 "$dev/full" c 1 7
    mknod -m 666 "$dev/random" c 1 8
    mknod -m 666 "$dev/urandom" c 1 9
    mknod -m 666 "$dev/tty" c 5 0
    ln -s /proc/self/fd "$dev/fd"
    ln -s /proc/self/fd/0 "$dev/stdin"
    ln -s /proc/self/fd/1 "$dev/stdout"
    ln -s /proc/self/fd/2 "$dev/stderr"
    ln -s pts/ptmx "$dev/ptmx"
    mount_at "$dev/pts" -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 fresh-check-devpts
    mount_at "$dev/shm" -t tmpfs -o mode=1777,nosuid,nodev fresh-check-shm
}

mount_rust() {
    if [ "$RUST_KIND" = rustup ]; then
        mount_at "$CHROOT/opt/rustup" --bind -o ro "$RUSTUP_DIR"
        mount_at "$CHROOT/opt/cargo-bin" --bind -o ro "$RUST_PROXIES"
    else
        mount_at "$CHROOT/opt/rust" --bind -o ro "$RUST_SYSROOT"
    fi
}

# The processes whose root is under target/fresh-check (all started by this script: debootstrap's,
# the commands', the server).
processes_in_roots() {
    local p root
    for p in /proc/[0-9]*; do
        root="$(readlink "$p/root" 2>/dev/null)" || continue
        case "$root" in "$OUT"/*) echo "${p#/proc/}" ;; esac
    done
}

end_processes_in_roots() {
    local pids i
    pids="$(processes_in_roots)"
    [ -n "$pids" ] || return 0
    say "ending the processes left in $OUT: $(echo $pids)"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 50); do
        pids="$(processes_in_roots)"
        [ -n "$pids" ] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
}

write_summary() {
    {
        echo "fresh-check of $(repo_git log -1 --format='%h %s' "$HEAD_COMMIT" 2>/dev/null || echo "$HEAD_COMMIT")"
        echo "Debian 12 ($SUITE) root made by debootstrap; as root in /root/golden; GOLDEN_PGPORT=$PORT"
        local line
        for line in "${SUMMARY[@]}"; do echo "  $line"; done
        if [ -n "$STOPPED" ]; then echo "  stopped: $STOPPED"; fi
    } | tee "$OUT/summary.txt"
}

cleanup() {
    local status=$?
    trap '' INT TERM
    set +e
    [ -n "${HEAD_COMMIT:-}" ] || exit "$status"
    if [ -n "$MOUNTS_MADE" ] && [ -f "$CHROOT/root/golden/scripts/db.sh" ] &&
        [ -x "$CHROOT/usr/lib/postgresql/15/bin/pg_ctl" ]; then
        in_root "cd /root/golden && bash scripts/db.sh stop" </dev/null >/dev/null 2>&1
    fi
    end_processes_in_roots
    if [ -d "$OUT" ]; then
        unmount_all
        if [ -n "$(mounts_under "$OUT")" ]; then
            say "mounts remain under $OUT (see findmnt); the root was not removed"
        elif [ -z "$KEEP" ]; then
            rm -rf --one-file-system "$CHROOT"
        fi
    fi
    if [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; then
        STOPPED="${STOPPED:-interrupted}"
    elif [ "$status" -ne 0 ] && [ -z "$STOPPED" ] && [ -z "$STEPS_DONE" ]; then
        STOPPED="failed (exit $status)"
    fi
    echo >&2
    write_summary
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the root ----------------------------------------------------------------------------------

seconds_since() { awk -v start="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - start }'; }
as_duration() { awk -v s="$1" 'BEGIN { printf "%.1f s (%d min %02d s)", s, s / 60, s % 60 }'; }

bootstrap() {
    local target="$1"
    say "bootstrapping Debian 12 ($SUITE) into $target (log: $OUT/debootstrap.log)"
    rm -rf --one-file-system "$target"
    if ! debootstrap --include="$PACKAGES" "$SUITE" "$target" "$MIRROR" 2>&1 9>&- | mask_mirror >"$OUT/debootstrap.log"; then
        tail -n 20 "$OUT/debootstrap.log" >&2
        fail "debootstrap failed (see $OUT/debootstrap.log)"
    fi
}

# The environment of a fresh root login, plus the toolchain, the port, and this machine's
# proxy and cargo registry settings from the environment (never tokens).
CHROOT_ENV=(HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 TERM="${TERM:-dumb}"
    CARGO_HOME=/root/.cargo GOLDEN_PGPORT="$PORT" DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/golden")
SYSTEM_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$RUST_KIND" = rustup ]; then
    CHROOT_ENV+=(PATH="/root/.cargo/bin:/opt/cargo-bin:$SYSTEM_PATH" RUSTUP_HOME=/opt/rustup
        RUSTUP_TOOLCHAIN="$RUST_TOOLCHAIN")
else
    CHROOT_ENV+=(PATH="/root/.cargo/bin:/opt/rust/bin:$SYSTEM_PATH")
fi
while IFS= read -r name; do
    case "$name" in *TOKEN* | *CREDENTIAL* | *SECRET* | *PASSWORD*) continue ;; esac
    CHROOT_ENV+=("$name=${!name}")
done < <(compgen -e | grep -E '^(CARGO_(REGISTRIES|REGISTRY|SOURCE|HTTP|NET)_[A-Z0-9_]+|PIP_(INDEX_URL|EXTRA_INDEX_URL|TRUSTED_HOST|CERT|DEFAULT_TIMEOUT)|https?_proxy|no_proxy|all_proxy|HTTPS?_PROXY|NO_PROXY|ALL_PROXY)$' || true)

# Runs a command line as root in the root, without the lock's descriptor (a server started
# there would hold the lock after this script ends).
in_root() {
    chroot "$CHROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" /bin/bash -c "$1" 9>&-
}

if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# What an earlier run left (one killed before its cleanup, say).
end_processes_in_roots
unmount_all
[ -z "$(mounts_under "$OUT")" ] || fail "mounts under $OUT remain from an earlier run (see findmnt)"
rm -rf --one-file-system "$CHROOT"
[ -n "$KEEP" ] || rm -rf --one-file-system "$BASE"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    fail "something already listens on 127.0.0.1:$PORT; set FRESH_PGPORT to a free port"
fi

started="$(date +%s.%N)"
if [ -n "$KEEP" ]; then
    if [ ! -f "$BASE/.fresh-check-complete" ]; then
        bootstrap "$BASE"
        touch "$BASE/.fresh-check-complete"
        how="bootstrapped into $BASE (kept)"
    else
        how="the kept root of $BASE"
    fi
    cp -a "$BASE" "$CHROOT"
    rm -f "$CHROOT/.fresh-check-complete"
else
    bootstrap "$CHROOT"
    how="new"
fi
SUMMARY+=("root: $how, ready in $(as_duration "$(seconds_since "$started")")")

say "configuring the root"
rm -f "$CHROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$CHROOT/etc/resolv.conf"
for conf in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
    if [ -f "$conf" ]; then cp -L "$conf" "$CHROOT$conf"; fi
done
printf '#!/bin/sh\n# fresh-check: no package starts a service in this root.\nexit 101\n' \
    >"$CHROOT/usr/sbin/policy-rc.d"
chmod 755 "$CHROOT/usr/sbin/policy-rc.d"
mkdir -p "$CHROOT/root/.cargo"
for conf in config.toml config; do
    if [ -f "$CARGO_DIR/$conf" ]; then cp -L "$CARGO_DIR/$conf" "$CHROOT/root/.cargo/$conf"; fi
done
# pip's configuration too (`make model` fetches the local model from the package index).
for conf in /etc/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
    if [ -f "$conf" ]; then
        target="$CHROOT${conf/#$HOME//root}"
        mkdir -p "$(dirname "$target")"
        cp -L "$conf" "$target"
    fi
done

mount_system
mount_rust

if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    cp -a /usr/local/share/ca-certificates/. "$CHROOT/usr/local/share/ca-certificates/"
    in_root "update-ca-certificates >/dev/null 2>&1" </dev/null
fi

say "cloning $(repo_git log -1 --format=%h "$HEAD_COMMIT") into /root/golden"
git clone -q --upload-pack="git -c safe.directory='*' upload-pack" "file://$REPO" "$CHROOT/root/golden"
git -C "$CHROOT/root/golden" reset -q --hard "$HEAD_COMMIT"

rm -f "$OUT"/make-*.log
for step in $STEPS; do
    say "make $step (output also in $OUT/make-$step.log)"
    started="$(date +%s.%N)"
    set +e
    in_root "cd /root/golden && make $step" </dev/null 2>&1 | mask_mirror | tee -a "$OUT/make-$step.log"
    rc=${PIPESTATUS[0]}
    set -e
    elapsed="$(seconds_since "$started")"
    SUMMARY+=("$(printf '%-10s exit %d in %s' "make $step:" "$rc" "$(as_duration "$elapsed")")")
    if [ "$rc" -ne 0 ]; then FAILED=1; fi
done

STEPS_DONE=1
exit "$FAILED"
