#!/usr/bin/env bash
# Makes sure a nats-server with JetStream is installed and prints its path. The cluster tests
# (tests/cluster.rs) run this once when they find no nats-server; .ci/run runs it up front.
set -euo pipefail
. "$(dirname "$0")/lib/nats.sh"
if ! nats_server_path; then
  echo "nats-server is not installed and could not be installed (needs root and apt-get): install the 'nats-server' package" >&2
  exit 1
fi
