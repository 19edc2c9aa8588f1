#!/bin/sh
# schemathesis against a live connvaultd: both sockets, from docs/openapi-app.json and docs/openapi-admin.json
# (`make fuzz`). Installs schemathesis (a pinned version) into a virtual environment of its own, then runs the
# end-to-end suite that starts the daemon and a Personio stand-in, bridges each Unix socket to a loopback port with
# socat (as root for the admin socket, as a granted uid for the app socket) and runs schemathesis against each.
#
# Needs python3 with venv, socat, and a built tree (`swift build --build-tests`). Environment:
#   CONNVAULT_BIN_DIR                 the built binaries (default .build/debug)
#   CONNVAULT_SCHEMATHESIS_EXAMPLES   generated cases per operation (default 50)
#   CONNVAULT_SCHEMATHESIS_SEED       the generator's seed (default 1)
#   CONNVAULT_SCHEMATHESIS_REPORT     where each socket's output is written (default .build/schemathesis)
#   SCHEMATHESIS_VENV                 the virtual environment (default .build-schemathesis)
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
version=4.32.5
venv=${SCHEMATHESIS_VENV:-$root/.build-schemathesis}
swift=${SWIFT:-swift}

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $version\$"; then
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
command -v socat >/dev/null 2>&1 || { echo "schemathesis.sh: socat is not installed" >&2; exit 1; }

reports=${CONNVAULT_SCHEMATHESIS_REPORT:-$root/.build/schemathesis}
mkdir -p "$reports"
cd "$root"
CONNVAULT_BIN_DIR=${CONNVAULT_BIN_DIR:-$root/.build/debug} \
CONNVAULT_SCHEMATHESIS="$venv/bin/schemathesis" \
CONNVAULT_SCHEMATHESIS_REPORT="$reports" \
	"$swift" test --skip-build --filter SchemathesisEndToEndTests
