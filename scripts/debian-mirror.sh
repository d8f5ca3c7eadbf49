#!/usr/bin/env bash
# Prints the first non-security Debian mirror of this machine's apt sources (deb822 or one-line
# form), or nothing. install-postgres.sh fetches pgvector's source package from it and
# fresh-check.sh bootstraps its Debian root from it.
#
# Why: no mirror is ever written in this repository; each machine uses the one it is
# configured with.
set -euo pipefail

{
    grep -hsE '^\s*URIs:' /etc/apt/sources.list.d/*.sources || true
    grep -hsE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
        sed -E 's/\[[^]]*\]//' || true
} | awk '{print $2}' | grep -v -e security -e '^$' | grep -i debian | head -n 1 || true
