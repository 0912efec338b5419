#!/usr/bin/env bash
# Browser tests of the web console: the daemon binary with the mock agent, driven in Debian's
# Chromium by playwright-core (never a downloaded browser). Installs what is missing: the
# `chromium` package (apt) and playwright-core (npm, pinned by tests/console/package-lock.json).
# Screenshots of the main views go to $CONSOLE_SHOTS (default target/console-shots; the ones in
# docs/img come from CONSOLE_SHOTS=docs/img). Prints PASS/FAIL per scenario and a count line.
#
# Usage: scripts/test-console.sh          (KEEP=1 keeps the temporary directory)

set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh
if ! [ -x /usr/bin/chromium ]; then
  echo "== installing chromium (apt)"
  apt_install chromium
fi
if ! command -v node > /dev/null; then
  echo "== installing nodejs and npm (apt)"
  apt_install nodejs npm
fi
echo "== installing playwright-core (npm ci)"
(cd tests/console && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

echo "== building the daemon and the mock agent"
cargo build -q -p agentvisor -p agentvisor-mock-agent

echo "== console scenarios in $(/usr/bin/chromium --version 2> /dev/null | head -1)"
AGENTVISOR_BIN="$PWD/target/debug/agentvisor" MOCK_AGENT="$PWD/target/debug/mock-agent" \
  CONSOLE_SHOTS="${CONSOLE_SHOTS:-target/console-shots}" \
  timeout 600 node tests/console/console.test.mjs
