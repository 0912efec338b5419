// The health dialog: the daemon's status, its actors (restarts, backoff, Reset for an errored
// one), the agent CLIs it found, and server stats.

import { $, h, duration } from './dom.js';

const POLL_MS = 5000;

export class Health {
  /** `nameOf(id)`: a project's name, to label its actors. */
  constructor(conn, nameOf) {
    this.conn = conn;
    this.nameOf = nameOf;
    this.stats = null;
    this.timer = null;
    $('health-btn').addEventListener('click', () => this.open());
    $('health-close').addEventListener('click', () => $('health-dialog').close());
    $('health-dialog').addEventListener('close', () => clearInterval(this.timer));
    $('health-body').addEventListener('click', (e) => {
      const b = e.target.closest('[data-reset]');
      if (b) this.reset(b.dataset.reset);
    });
  }

  open() {
    $('health-dialog').showModal();
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.load(), POLL_MS);
  }

  /** A `server_stats` push. */
  onStats(data) {
    this.stats = data;
  }

  async load() {
    try {
      const r = await this.conn.request('health_check', {});
      this.render(r.data);
    } catch (e) {
      $('health-body').replaceChildren(h('p', { class: 'error' }, e.message));
    }
  }

  async reset(name) {
    try {
      await this.conn.request('actor_reset', { actor: name });
    } catch (e) {
      $('health-body').prepend(h('p', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    this.load();
  }

  /** An actor's name, with its project's name when it serves a project. */
  label(a) {
    const id = a.name.replace(/^executor:/, '');
    const name = a.kind === 'project' || a.kind === 'executor' ? this.nameOf(id) : null;
    return name ? `${a.name} (${name})` : a.name;
  }

  // The cluster this daemon is a node of, if any: NATS, the registry and each node's state.
  cluster(c) {
    if (!c) return [];
    const nodes = (c.nodes || []).map((n) => h('li', {}, h('strong', {}, n.node), ' ',
      h('span', { class: `badge node-${n.state}` }, n.state),
      n.projects !== undefined ? ` · ${n.projects} project${n.projects === 1 ? '' : 's'}` : ''));
    return [h('h3', {}, `Cluster “${c.name}”`),
      h('p', {}, `this node: ${c.node} · NATS ${c.nats} · registry ${c.registry}`),
      h('ul', {}, nodes)];
  }

  render(d) {
    const checks = d.checks || {};
    const agents = Object.entries(checks.agents || {}).map(([name, a]) =>
      h('li', {}, h('strong', {}, name), ': ', a.available ? `${a.version ?? 'found'} (${a.path ?? ''})` : 'not found'));
    const rows = (d.actors || []).map((a) => h('tr', {},
      h('td', { class: 'wrap' }, this.label(a)), h('td', {}, a.kind),
      h('td', {}, h('span', { class: `badge actor-${a.status}` }, a.status)),
      h('td', {}, String(a.restarts)), h('td', {}, duration(a.backoff_ms)),
      h('td', {}, a.status === 'errored'
        ? h('button', { type: 'button', 'data-reset': a.name, 'aria-label': `Reset ${a.name}` }, 'Reset') : '')));
    const s = this.stats;
    $('health-body').replaceChildren(
      h('p', {}, h('span', { class: `badge health-${d.status}` }, d.status ?? '?'),
        ` version ${d.version ?? '?'} · up ${duration((d.uptime_s ?? 0) * 1000)}`),
      h('h3', {}, 'Agent CLIs'), h('ul', {}, agents),
      h('h3', {}, 'Server'),
      h('ul', {},
        h('li', {}, `connections: ${checks.connections ?? '?'} · runs active: ${checks.runs_active ?? '?'}`),
        s ? h('li', {}, `runs total: ${s.runs_total} · messages/s: ${s.messages_per_s} · projects: ${s.projects?.total ?? '?'}`) : null,
        checks.disk ? h('li', {}, `disk: ${checks.disk.status} · ${Math.round((checks.disk.free_bytes ?? 0) / 1e9)} GB free`) : null,
        checks.memory ? h('li', {}, `memory: ${Math.round((checks.memory.resident_bytes ?? 0) / 1e6)} MB resident`) : null),
      ...this.cluster(d.cluster),
      h('h3', {}, 'Actors'),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Status', 'Restarts', 'Backoff', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))));
  }
}
