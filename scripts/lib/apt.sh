# Sourced by the test scripts: installs Debian packages a test needs (nginx, chromium, …) on a
# fresh machine, where the package lists may not have been fetched yet.
#
# apt_install PACKAGE…   returns non-zero (with apt's last lines on stderr) when it cannot
# install: not root, no apt-get, or apt failed. The lists are refreshed once per script. No
# package's install script may start a service meanwhile (nginx would otherwise start on port 80
# of every interface): a policy-rc.d that says no is in place for the install's duration; a
# script interrupted meanwhile removes it in its exit trap when APT_POLICY_CREATED is set.

APT_UPDATED=
APT_POLICY_CREATED=
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null || return 1
  local log rc=0
  log=$(mktemp)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    APT_POLICY_CREATED=1
  fi
  if [ -z "$APT_UPDATED" ]; then
    if timeout 120 apt-get update -qq > "$log" 2>&1; then APT_UPDATED=1; else rc=1; fi
  fi
  if [ "$rc" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends "$@" \
      >> "$log" 2>&1 || rc=1
  fi
  if [ -n "$APT_POLICY_CREATED" ]; then
    rm -f /usr/sbin/policy-rc.d
    APT_POLICY_CREATED=
  fi
  [ "$rc" = 0 ] || tail -20 "$log" >&2
  rm -f "$log"
  return "$rc"
}
