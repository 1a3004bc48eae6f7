#!/usr/bin/env bash
# What `make bench` needs beyond the venv, installed on a fresh machine:
#   nginx, wrk, aria2c, curl from Debian (nginx's WebDAV PUT is ngx_http_dav_module,
#   compiled into Debian's nginx package: no extra module needed);
#   @tus/server + @tus/file-store from npm into bench/node (versions pinned by the
#   committed package-lock.json); Node >= 20.19 must already be there (Debian 12's
#   nodejs is 18, too old for @tus/server 2).
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
    echo "bench: installing ${need[*]} from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v node >/dev/null 2>&1; then
    echo "bench: node (>= 20.19) is required for the @tus/server comparisons" >&2
    exit 1
fi
node -e '
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  console.error(`bench: node ${process.versions.node} is too old; @tus/server needs >= 20.19`);
  process.exit(1);
}'

# npm ci only when the lock file changed since the last install.
if [[ ! -f node/node_modules/.package-lock.json || node/package-lock.json -nt node/node_modules/.package-lock.json ]]; then
    echo "bench: npm ci in bench/node" >&2
    npm ci --prefix node --no-audit --no-fund --loglevel=error
fi
