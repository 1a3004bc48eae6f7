#!/usr/bin/env bash
# The web client's one npm dependency, fetched by the project's own files (`make web`):
# tus-js-client, at the version web/package-lock.json pins, copied unmodified (with its
# licence) into the folder the directory serves. npm comes from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=src/geodrop/directory/static
if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "web: npm is missing (run as root, or apt-get install npm)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi
# npm ci only when the lock file changed since the last install.
if [[ ! -f web/node_modules/.package-lock.json || web/package-lock.json -nt web/node_modules/.package-lock.json ]]; then
    npm ci --prefix web --no-audit --no-fund --loglevel=error
fi
cp web/node_modules/tus-js-client/dist/tus.min.js "$target/tus.min.js"
cp web/node_modules/tus-js-client/LICENSE "$target/tus-js-client-LICENSE.txt"
