// PM2 ecosystem file for a small agentvisor cluster on one machine: a nats-server with
// JetStream and two daemons joined to it as nodes `a` and `b` (docs/scaling.md).
//
//   scripts/install-nats.sh          # Debian's nats-server (as root), or install it yourself
//   cargo build --release
//   pm2 start ecosystem/cluster.config.js
//
// On several machines, run the nats-server once (or a NATS cluster), and on each machine one
// daemon with AGENTVISOR_NATS_URL pointing at it and a node name of its own. Each node keeps its
// own data directory and project roots; a client of either node sees the projects of both.

const path = require('path');

const root = path.resolve(__dirname, '..');
const env = (name, fallback) => process.env[name] || fallback;
const state = env('AGENTVISOR_CLUSTER_DIR', path.join(root, 'cluster'));
const natsPort = env('AGENTVISOR_NATS_PORT', '4222');
const natsUrl = `nats://127.0.0.1:${natsPort}`;

// The single daemon of ecosystem.config.js, with its restart, readiness, stop and log settings
// (read it for why), as one node of the cluster.
const single = require('./ecosystem.config.js').apps[0];
const node = (name, port) => ({
  ...single,
  name: `agentvisor-${name}`,
  out_file: path.join(state, name, 'out.log'),
  error_file: path.join(state, name, 'err.log'),
  env: {
    ...single.env,
    AGENTVISOR_LISTEN: `127.0.0.1:${port}`,
    AGENTVISOR_DATA_DIR: path.join(state, name, 'data'),
    AGENTVISOR_NATS_URL: natsUrl,
    AGENTVISOR_CLUSTER: env('AGENTVISOR_CLUSTER', 'default'),
    AGENTVISOR_NODE: name,
    AGENTVISOR_CLUSTER_TTL: env('AGENTVISOR_CLUSTER_TTL', '15s'),
  },
});

module.exports = {
  apps: [
    {
      // NATS keeps the cluster's registry (a JetStream key-value bucket) in its store
      // directory, so a restarted nats-server finds it again.
      name: 'agentvisor-nats',
      script: env('NATS_SERVER_BIN', '/usr/sbin/nats-server'),
      args: ['-js', '-a', '127.0.0.1', '-p', natsPort, '-sd', path.join(state, 'nats')],
      interpreter: 'none',
      exec_mode: 'fork',
      autorestart: true,
      exp_backoff_restart_delay: 100,
      kill_signal: 'SIGTERM',
    },
    node('a', env('AGENTVISOR_A_PORT', '8081')),
    node('b', env('AGENTVISOR_B_PORT', '8082')),
  ],
};
