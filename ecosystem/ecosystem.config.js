// PM2 ecosystem file for the agentvisor daemon.
//
//   cargo build --release            # builds target/release/agentvisor
//   pm2 start ecosystem/ecosystem.config.js
//   pm2 save && pm2 startup          # start it again at boot
//
// agentvisor is a native binary: PM2 runs it as is (`interpreter: 'none'`, fork mode, one
// instance — the daemon owns its data directory alone, so never use cluster mode or
// `instances > 1`). Every AGENTVISOR_* setting below can be overridden from the shell that runs
// `pm2 start` (this file reads `process.env` first); see docs/operations.md for all of them.

const path = require('path');

// The repository root: this file lives in <root>/ecosystem/.
const root = path.resolve(__dirname, '..');
const env = (name, fallback) => process.env[name] || fallback;
const logDir = env('AGENTVISOR_PM2_LOG_DIR', path.join(root, 'logs'));

module.exports = {
  apps: [
    {
      name: env('AGENTVISOR_PM2_NAME', 'agentvisor'),
      script: path.join(root, 'target', 'release', 'agentvisor'),
      args: [],
      cwd: root,
      interpreter: 'none',
      exec_mode: 'fork',
      instances: 1,

      // Restarts. The daemon restarts its own crashed actors; it exits only on a real failure
      // (70: a core actor is in a crash loop; 1: it could not start or had to kill runs at the
      // shutdown deadline; 2: a configuration error). PM2 then restarts it after 100 ms,
      // ×1.5 per consecutive crash up to 15 s, reset once it has stayed up 30 s.
      autorestart: true,
      exp_backoff_restart_delay: 100,
      // A process that dies within min_uptime counts as unstable; after max_restarts unstable
      // restarts in a row PM2 gives up and shows it `errored` (see `pm2 logs agentvisor`).
      min_uptime: 5000,
      max_restarts: 15,
      // No stop_exit_codes: PM2 reports a process killed by a signal (kill -9, the OOM killer)
      // as exit code 0, so `stop_exit_codes: [0]` would leave a SIGKILLed daemon down.
      // The daemon itself stays small; agents are separate processes that PM2 does not count.
      max_memory_restart: '1G',

      // Readiness: with wait_ready, PM2 keeps the app `launching` until the daemon sends
      // 'ready' on the IPC channel PM2 opened for it (NODE_CHANNEL_FD), which it does once every
      // project is loaded and the port is open. listen_timeout bounds that wait.
      wait_ready: true,
      listen_timeout: 10000,

      // Stopping: PM2 sends SIGINT, which the daemon handles as a graceful shutdown (close
      // clients with 1001, stop every run, flush history) bounded by AGENTVISOR_SHUTDOWN_TIMEOUT
      // (10s). kill_timeout must be longer, or PM2 SIGKILLs a daemon that is still draining.
      kill_signal: 'SIGINT',
      kill_timeout: 15000,
      // PM2 also signals the daemon's descendants (agents, and tools that escaped into their
      // own session), so nothing outlives a stop even when the daemon has to be SIGKILLed.
      treekill: true,

      // Logs. The daemon writes one line per event with its own UTC timestamp (set
      // AGENTVISOR_LOG_FORMAT=json for JSON lines); rotate them with pm2-logrotate.
      out_file: path.join(logDir, 'agentvisor.out.log'),
      error_file: path.join(logDir, 'agentvisor.err.log'),
      merge_logs: true,
      time: false,

      env: {
        AGENTVISOR_LISTEN: env('AGENTVISOR_LISTEN', '127.0.0.1:8080'),
        AGENTVISOR_DATA_DIR: env('AGENTVISOR_DATA_DIR', path.join(root, 'data')),
        AGENTVISOR_PROJECT_ROOTS: env('AGENTVISOR_PROJECT_ROOTS', process.env.HOME || '/srv/projects'),
        AGENTVISOR_SHUTDOWN_TIMEOUT: env('AGENTVISOR_SHUTDOWN_TIMEOUT', '10s'),
        AGENTVISOR_LOG_FORMAT: env('AGENTVISOR_LOG_FORMAT', 'text'),
        AGENTVISOR_LOG_LEVEL: env('AGENTVISOR_LOG_LEVEL', 'info'),
        // No proxy is trusted unless you say so: with nginx on this host, set this to
        // '127.0.0.1,::1' (every local process can then name any client address in
        // X-Forwarded-For, so do it only where the local users are trusted).
        AGENTVISOR_TRUSTED_PROXIES: env('AGENTVISOR_TRUSTED_PROXIES', ''),
        // Keep the ping interval below nginx's proxy_read_timeout (90s in ecosystem/nginx.conf).
        AGENTVISOR_PING_INTERVAL: env('AGENTVISOR_PING_INTERVAL', '30s'),
        AGENTVISOR_BACKOFF_INITIAL: env('AGENTVISOR_BACKOFF_INITIAL', '100ms'),
        AGENTVISOR_BACKOFF_MAX: env('AGENTVISOR_BACKOFF_MAX', '15s'),
        AGENTVISOR_RESTART_LIMIT: env('AGENTVISOR_RESTART_LIMIT', '10'),
        // Agents: a path, or a name looked up on PATH.
        AGENTVISOR_CLAUDE_BIN: env('AGENTVISOR_CLAUDE_BIN', 'claude'),
        AGENTVISOR_CODEX_BIN: env('AGENTVISOR_CODEX_BIN', 'codex'),
        // Required when listening off loopback; prefer a file readable by this user only:
        // AGENTVISOR_TOKEN_FILE: '/etc/agentvisor/token',
      },
    },
  ],
};
