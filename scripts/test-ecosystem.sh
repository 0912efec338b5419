#!/usr/bin/env bash
# Tests the files in ecosystem/ for real, on loopback only:
#   - PM2 (from the npm registry, installed under target/ecosystem/) starts the release binary
#     from ecosystem/ecosystem.config.js, sees it ready (wait_ready), restarts it after kill -9,
#     and stops it gracefully;
#   - nginx (from apt when missing) proxies a WebSocket session that runs the mock agent, a
#     project's event stream (SSE), the web console, and /health, /ready, /metrics, using
#     ecosystem/nginx.conf;
#   - systemd-analyze verifies ecosystem/agentvisor.service;
#   - the Dockerfile is checked for what it must contain (built only with AGENTVISOR_TEST_DOCKER=1
#     and a reachable Docker daemon).
# A part the machine cannot run is skipped with the reason. Exit status: 0 when nothing failed.
#
# Usage: scripts/test-ecosystem.sh          (KEEP=1 keeps the temporary directory)

set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS
LIMIT=${ECOSYSTEM_TIME_LIMIT:-290}

PASSED=0
FAILED=0
SKIPPED=0
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP: $*"; SKIPPED=$((SKIPPED + 1)); }
step() { echo; echo "== $* ($((SECONDS - START))s)"; }
# Seconds left of the time budget (at least 10, so that a last step can still report).
left() {
  local l=$((LIMIT - (SECONDS - START)))
  echo $((l < 10 ? 10 : l))
}

T=$(mktemp -d /tmp/agentvisor-ecosystem.XXXXXX)
# nginx workers run as an unprivileged user: they must be able to reach their files in here.
chmod 711 "$T"
PM2_BIN="$ROOT/target/ecosystem/node_modules/.bin/pm2"
export PM2_HOME="$T/pm2"
PM2_STARTED=
NGINX_CONF=
DIRECT_PID=

cleanup() {
  if [ -n "$PM2_STARTED" ]; then
    timeout 30 "$PM2_BIN" kill > /dev/null 2>&1 || true
  fi
  if [ -n "$NGINX_CONF" ] && [ -f "$T/nginx/nginx.pid" ]; then
    kill "$(cat "$T/nginx/nginx.pid")" 2> /dev/null || true
  fi
  if [ -n "$DIRECT_PID" ]; then
    kill "$DIRECT_PID" 2> /dev/null || true
    wait "$DIRECT_PID" 2> /dev/null || true
  fi
  if [ -n "${APT_POLICY_CREATED:-}" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $T"
  else
    rm -rf "$T"
  fi
}
trap cleanup EXIT
trap 'echo "test-ecosystem: interrupted" >&2; exit 130' INT TERM

is_root() { [ "$(id -u)" = 0 ]; }

# shellcheck source=scripts/lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2> /dev/null \
    || node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# HTTP status of a GET on loopback.
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$1$2" || true; }

wait_http_200() { # port path seconds
  local until=$((SECONDS + $3))
  while [ $SECONDS -lt $until ]; do
    [ "$(http_status "$1" "$2")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# Runs one of the #[ignore]d tests of tests/ecosystem.rs.
run_e2e_test() { # name, then VAR=value... for its environment
  local name=$1
  shift
  env "$@" timeout 120 cargo test -q --test ecosystem -- --ignored --exact "$name" \
    > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc != 0 ]; then
    cat "$T/$name.log" >&2
  fi
  return $rc
}

# --- build -------------------------------------------------------------------------------------
step "building the release daemon, the mock agent and the end-to-end tests"
if ! timeout "$(left)" cargo build -q --release -p agentvisor; then
  fail "cargo build --release"
  exit 1
fi
if ! timeout "$(left)" cargo build -q -p agentvisor-mock-agent \
  || ! timeout "$(left)" cargo test -q --test ecosystem --no-run > /dev/null 2>&1; then
  fail "building the mock agent and tests/ecosystem.rs"
  exit 1
fi
DAEMON="$ROOT/target/release/agentvisor"
MOCK="$ROOT/target/debug/mock-agent"
mkdir -p "$T/data" "$T/projects" "$T/logs"

# --- the ecosystem file, read by node as PM2 reads it -------------------------------------------
step "ecosystem.config.js"
if command -v node > /dev/null; then
  if node -e '
    const app = require(process.argv[1]).apps[0];
    const want = (ok, what) => { if (!ok) { console.error("ecosystem.config.js: " + what); process.exitCode = 1; } };
    want(app.script === process.argv[2], "script is " + app.script + ", expected " + process.argv[2]);
    want(app.interpreter === "none", "interpreter must be none");
    want(app.exec_mode === "fork" && app.instances === 1, "one instance in fork mode");
    want(app.autorestart === true && app.exp_backoff_restart_delay === 100, "autorestart with exp_backoff_restart_delay 100");
    want(app.wait_ready === true && app.listen_timeout > 0, "wait_ready with a listen_timeout");
    want(app.kill_timeout > 10000, "kill_timeout must exceed the 10s shutdown timeout");
    want(!!app.max_memory_restart, "max_memory_restart");
    want(!!app.out_file && !!app.error_file, "log files");
    want(Object.keys(app.env).some((k) => k.startsWith("AGENTVISOR_")), "AGENTVISOR_* settings in env");
  ' "$ROOT/ecosystem/ecosystem.config.js" "$DAEMON"; then
    pass "ecosystem.config.js runs the release binary with the required settings"
  else
    fail "ecosystem.config.js"
  fi
else
  skip "ecosystem.config.js: node is not installed"
fi

# --- systemd -----------------------------------------------------------------------------------
step "systemd unit"
if ! command -v systemd-analyze > /dev/null; then
  apt_install systemd > /dev/null 2>&1 || true
fi
if command -v systemd-analyze > /dev/null; then
  # Verified as installed, but with ExecStart pointing at the binary just built.
  sed "s#^ExecStart=/usr/local/bin/agentvisor#ExecStart=$DAEMON#" ecosystem/agentvisor.service \
    > "$T/agentvisor.service"
  out=$(timeout 60 systemd-analyze verify "$T/agentvisor.service" 2>&1)
  rc=$?
  version=$(systemd-analyze --version | awk 'NR==1 {print $2}')
  # RestartSteps and RestartMaxDelaySec came with systemd 254; older ones ignore them.
  if [ "${version:-0}" -lt 254 ] 2> /dev/null; then
    rest=$(printf '%s\n' "$out" | grep -v -E "Unknown key( name)? '(RestartSteps|RestartMaxDelaySec)'" | grep -v '^$')
  else
    rest=$(printf '%s\n' "$out" | grep -v '^$')
  fi
  [ -n "$out" ] && printf '%s\n' "$out"
  if [ $rc = 0 ] && [ -z "$rest" ]; then
    pass "systemd-analyze verify ecosystem/agentvisor.service (systemd $version)"
  else
    fail "systemd-analyze verify: exit $rc: $rest"
  fi
  for key in 'Type=notify' 'NotifyAccess=main' 'WatchdogSec=' 'KillMode=control-group' \
    'Restart=on-failure' 'TimeoutStopSec=' 'RestartSteps=' 'RestartMaxDelaySec=' 'Delegate=yes'; do
    grep -q "^$key" ecosystem/agentvisor.service || fail "agentvisor.service lacks $key"
  done
  # A read-only cgroup tree would leave the runs without cgroups of their own.
  if grep -q '^ProtectControlGroups=yes' ecosystem/agentvisor.service; then
    fail "agentvisor.service has ProtectControlGroups=yes, which forbids the runs' cgroups"
  fi
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' ecosystem/agentvisor.service)
  if [ "${stop:-0}" -le 10 ]; then
    fail "TimeoutStopSec (${stop}s) must exceed the daemon's 10s shutdown timeout"
  fi
else
  skip "systemd unit: systemd-analyze is not installed and could not be installed"
fi

# --- PM2 ---------------------------------------------------------------------------------------
step "PM2"
PORT=$(free_port)
export AGENTVISOR_LISTEN="127.0.0.1:$PORT"
export AGENTVISOR_DATA_DIR="$T/data"
export AGENTVISOR_PROJECT_ROOTS="$T/projects"
export AGENTVISOR_CLAUDE_BIN="$MOCK"
export AGENTVISOR_CODEX_BIN="$MOCK"
export AGENTVISOR_PM2_LOG_DIR="$T/logs"
export AGENTVISOR_STATS_INTERVAL=0
# nginx below proxies from loopback: trust it explicitly (the shipped files trust no proxy).
export AGENTVISOR_TRUSTED_PROXIES=127.0.0.1,::1
DAEMON_LOG=
DAEMON_PORT=

pm2_field() { # field of the agentvisor app in `pm2 jlist`: pid, status, restarts
  timeout 30 "$PM2_BIN" jlist 2> /dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const start = s.indexOf("[");
      const app = JSON.parse(s.slice(start)).find((p) => p.name === "agentvisor");
      if (!app) return console.log("");
      const f = { pid: app.pid, status: app.pm2_env.status, restarts: app.pm2_env.restart_time }[process.argv[1]];
      console.log(f);
    });' "$1"
}

HAVE_PM2=
if command -v node > /dev/null && command -v npm > /dev/null; then
  if [ ! -x "$PM2_BIN" ]; then
    mkdir -p target/ecosystem
    timeout 180 npm install --prefix target/ecosystem --no-audit --no-fund --loglevel=error pm2@5 \
      > "$T/npm.log" 2>&1 || cat "$T/npm.log" >&2
  fi
  if [ -x "$PM2_BIN" ]; then
    HAVE_PM2=1
  else
    skip "PM2: npm could not install pm2"
  fi
else
  skip "PM2: node and npm are not installed"
fi

if [ -n "$HAVE_PM2" ]; then
  PM2_STARTED=1
  t0=$(date +%s%N)
  if timeout 60 "$PM2_BIN" start ecosystem/ecosystem.config.js > "$T/pm2-start.log" 2>&1; then
    took_ms=$((($(date +%s%N) - t0) / 1000000))
    status=$(pm2_field status)
    pid=$(pm2_field pid)
    # With wait_ready, `pm2 start` returns when the app is ready, or after listen_timeout (10s)
    # without the ready message: well under that means PM2 heard the daemon's 'ready'.
    if [ "$status" = online ] && [ "$took_ms" -lt 7000 ] && [ "$(http_status "$PORT" /ready)" = 200 ]; then
      pass "PM2 started the daemon (pid $pid) and saw it ready in ${took_ms} ms (listen_timeout is 10 s)"
    else
      cat "$T/pm2-start.log"
      fail "PM2 start: status '$status' after ${took_ms} ms (listen_timeout is 10 s)"
    fi
    grep -q "online" "$PM2_HOME/pm2.log" || fail "pm2.log does not say the app is online"
    DAEMON_PORT=$PORT
    DAEMON_LOG="$T/logs/agentvisor.err.log"

    # Control: the same app with its IPC channel closed cannot say it is ready, so PM2 waits
    # out listen_timeout. This shows the timing above really comes from the 'ready' message.
    printf '#!/bin/sh\nexec 3>&-\nexec "%s" "$@"\n' "$DAEMON" > "$T/no-ipc.sh"
    chmod +x "$T/no-ipc.sh"
    cat > "$T/control.config.js" << EOF
const c = require('$ROOT/ecosystem/ecosystem.config.js');
const app = c.apps[0];
app.name = 'agentvisor-control';
app.script = '$T/no-ipc.sh';
app.env.AGENTVISOR_LISTEN = '127.0.0.1:$(free_port)';
app.env.AGENTVISOR_DATA_DIR = '$T/control-data';
module.exports = c;
EOF
    t0=$(date +%s%N)
    timeout 60 "$PM2_BIN" start "$T/control.config.js" > "$T/pm2-control.log" 2>&1
    control_ms=$((($(date +%s%N) - t0) / 1000000))
    timeout 30 "$PM2_BIN" delete agentvisor-control > /dev/null 2>&1
    if [ "$control_ms" -ge 9000 ]; then
      pass "control: without the ready message PM2 waits out listen_timeout (${control_ms} ms)"
    else
      fail "control: PM2 did not wait for the ready message (${control_ms} ms): is wait_ready honoured?"
    fi

    if run_e2e_test under_pm2_the_daemon_has_the_channel_and_its_agents_do_not \
      AGENTVISOR_E2E_DAEMON_PORT="$PORT" AGENTVISOR_E2E_DAEMON_PID="$pid" \
      AGENTVISOR_E2E_PROJECT_ROOT="$T/projects"; then
      pass "under PM2 the daemon has the IPC channel and its agents do not inherit it"
    else
      fail "agents under PM2 (see above)"
    fi
  else
    cat "$T/pm2-start.log" >&2
    fail "pm2 start ecosystem/ecosystem.config.js"
  fi
fi

# Without PM2 the nginx test still needs a daemon.
if [ -z "$DAEMON_PORT" ]; then
  DAEMON_LOG="$T/logs/direct.log"
  "$DAEMON" > "$DAEMON_LOG" 2>&1 &
  DIRECT_PID=$!
  if wait_http_200 "$PORT" /ready 20; then
    DAEMON_PORT=$PORT
  else
    cat "$DAEMON_LOG" >&2
    fail "the daemon did not start"
  fi
fi

# --- nginx -------------------------------------------------------------------------------------
step "nginx"
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
if [ -z "$NGINX" ]; then
  if apt_install nginx; then
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  fi
fi
if [ -z "$NGINX" ] || [ ! -x "$NGINX" ]; then
  skip "nginx: not installed, and apt-get could not install it (needs root)"
elif [ -z "$DAEMON_PORT" ]; then
  skip "nginx: no daemon to proxy to"
else
  NPORT=$(free_port)
  mkdir -p "$T/nginx"
  # The site as shipped, moved to loopback ports.
  sed -e "s#^\( *\)listen 80;#\1listen 127.0.0.1:$NPORT;#" \
    -e '/listen \[::\]:80;/d' \
    -e "s#server 127.0.0.1:8080;#server 127.0.0.1:$DAEMON_PORT;#" \
    ecosystem/nginx.conf > "$T/nginx/site.conf"
  if ! grep -q "listen 127.0.0.1:$NPORT;" "$T/nginx/site.conf" \
    || ! grep -q "server 127.0.0.1:$DAEMON_PORT;" "$T/nginx/site.conf"; then
    fail "nginx.conf: could not move the site to test ports (no 'listen 80;' or 'server 127.0.0.1:8080;')"
  else
    cat > "$T/nginx/nginx.conf" << EOF
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 256; }
http {
    access_log $T/nginx/access.log;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    include $T/nginx/site.conf;
}
EOF
    read_timeout=$(sed -n '/location = \/ws/,/}/s/.*proxy_read_timeout \([0-9]*\)s;.*/\1/p' ecosystem/nginx.conf)
    if [ "${read_timeout:-0}" -le 30 ]; then
      fail "nginx.conf: proxy_read_timeout for /ws (${read_timeout}s) must exceed the 30s ping interval"
    fi
    if ! "$NGINX" -t -q -c "$T/nginx/nginx.conf" -p "$T/nginx" 2> "$T/nginx/t.log"; then
      cat "$T/nginx/t.log" >&2
      fail "nginx -t rejects ecosystem/nginx.conf"
    elif ! "$NGINX" -c "$T/nginx/nginx.conf" -p "$T/nginx" 2> "$T/nginx/start.log"; then
      cat "$T/nginx/start.log" >&2
      fail "nginx did not start"
    else
      NGINX_CONF="$T/nginx/nginx.conf"
      if ! wait_http_200 "$NPORT" /health 10; then
        fail "nginx does not proxy /health"
      elif run_e2e_test through_nginx_a_websocket_session_runs_an_agent \
        AGENTVISOR_E2E_PROXY_PORT="$NPORT" AGENTVISOR_E2E_PROJECT_ROOT="$T/projects"; then
        pass "nginx ($("$NGINX" -v 2>&1 | sed 's/.*version: //')) proxies a WebSocket session that runs an agent, its event stream, the console, and /health, /ready, /metrics"
        # The daemon believed nginx's X-Forwarded-For (the client's own header, then nginx's).
        if grep -q "peer=203.0.113.7" "$DAEMON_LOG"; then
          pass "the daemon sees the client address from X-Forwarded-For"
        else
          fail "the daemon did not log the forwarded client address 203.0.113.7"
        fi
      else
        cat "$T/nginx/error.log" >&2
        fail "WebSocket session through nginx (see above)"
      fi
      kill "$(cat "$T/nginx/nginx.pid")" 2> /dev/null
    fi
  fi
fi

# --- PM2 restarts and stops --------------------------------------------------------------------
if [ -n "$HAVE_PM2" ] && [ "$(pm2_field status)" = online ]; then
  step "PM2 restart after kill -9"
  old=$(pm2_field pid)
  kill -9 "$old"
  t0=$SECONDS
  new=
  while [ $((SECONDS - t0)) -lt 30 ]; do
    pid=$(pm2_field pid)
    if [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$pid" != "$old" ] && [ "$(pm2_field status)" = online ]; then
      new=$pid
      break
    fi
    sleep 0.2
  done
  if [ -n "$new" ] && wait_http_200 "$PORT" /health 15 && wait_http_200 "$PORT" /ready 15; then
    pass "PM2 restarted the daemon after kill -9 (pid $old -> $new, restarts $(pm2_field restarts)) and it serves again"
  else
    fail "PM2 did not bring the daemon back after kill -9 (pid now '$(pm2_field pid)', status '$(pm2_field status)')"
  fi
  if ls "$T/data/projects" 2> /dev/null | grep -q . \
    && grep -q "loaded [1-9][0-9]* project(s)" "$DAEMON_LOG"; then
    pass "the restarted daemon loaded the projects it had before"
  else
    fail "the restarted daemon did not load its projects"
  fi

  step "PM2 graceful stop"
  pid=$(pm2_field pid)
  if timeout 30 "$PM2_BIN" stop agentvisor > "$T/pm2-stop.log" 2>&1; then
    if ! kill -0 "$pid" 2> /dev/null \
      && tail -n 20 "$DAEMON_LOG" | grep -q "received SIGINT: shutting down gracefully" \
      && tail -n 20 "$DAEMON_LOG" | grep -q "shutdown complete"; then
      pass "pm2 stop: the daemon shut down gracefully on SIGINT"
    else
      tail -n 20 "$DAEMON_LOG" >&2
      fail "pm2 stop: no graceful shutdown in the log"
    fi
  else
    cat "$T/pm2-stop.log" >&2
    fail "pm2 stop agentvisor"
  fi
fi

# --- Docker ------------------------------------------------------------------------------------
step "Dockerfile"
df=ecosystem/Dockerfile
if [ "$(grep -c '^FROM ' $df)" -ge 2 ] && grep -q '^USER agentvisor' $df \
  && grep -q '^HEALTHCHECK .*' $df && grep -q '/health' $df; then
  pass "Dockerfile: multi-stage, non-root, with a HEALTHCHECK on /health"
else
  fail "Dockerfile: needs two stages, USER agentvisor and a HEALTHCHECK on /health"
fi
if [ "${AGENTVISOR_TEST_DOCKER:-0}" = 1 ] && timeout 10 docker info > /dev/null 2>&1; then
  if timeout "$(left)" docker build -q -f $df -t agentvisor-test . > "$T/docker.log" 2>&1; then
    pass "docker build"
  else
    tail -30 "$T/docker.log" >&2
    fail "docker build"
  fi
else
  skip "docker build: set AGENTVISOR_TEST_DOCKER=1 on a machine with a Docker daemon and access to its base images"
fi

echo
echo "ecosystem: $PASSED passed, $FAILED failed, $SKIPPED skipped ($((SECONDS - START))s)"
[ "$FAILED" = 0 ]
