# Sourced by the test scripts: makes Debian's nats-server (with JetStream) available for the
# cluster tests, installing it when it is missing.
#
# nats_server_path   prints the path of a nats-server, installing the package first when none is
#                    on PATH or in /usr/sbin; returns non-zero (apt's last lines on stderr) when
#                    it cannot be had.

# shellcheck source=apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

nats_server_find() {
  command -v nats-server 2> /dev/null && return 0
  [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server && return 0
  return 1
}

nats_server_path() {
  nats_server_find && return 0
  echo "installing nats-server (Debian package) for the cluster tests" >&2
  apt_install nats-server || return 1
  nats_server_find
}
