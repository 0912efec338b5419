// The project list (polled while connected, updated by live events), creating projects and
// deleting them after a confirmation.

import { $, h, ago } from './dom.js';

const POLL_MS = 5000;

export class Projects {
  /** `onSelect(id)`: a project was picked; `onChange()`: the list was reloaded. */
  constructor(conn, onSelect, onChange) {
    this.conn = conn;
    this.onSelect = onSelect;
    this.onChange = onChange;
    this.list = [];
    this.selected = null;
    $('create-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.create();
    });
    $('project-list').addEventListener('click', (e) => {
      const item = e.target.closest('[data-project]');
      if (item) this.onSelect(item.dataset.project);
    });
    setInterval(() => this.refresh(), POLL_MS);
  }

  byId(id) {
    return this.list.find((p) => p.id === id);
  }

  async refresh() {
    if (this.conn.state !== 'live') return;
    try {
      const r = await this.conn.request('project_list', {});
      this.list = r.data.projects;
      this.render();
      this.onChange();
    } catch {
      // shown by the connection state; the next poll tries again
    }
  }

  /** A live event changed a project's state or queue. */
  update(id, fields) {
    const p = this.byId(id);
    if (!p) return;
    Object.assign(p, fields);
    this.render();
  }

  select(id) {
    this.selected = id;
    this.render();
  }

  render() {
    const ul = $('project-list');
    ul.replaceChildren(...this.list.map((p) => {
      const current = p.id === this.selected;
      return h('li', {},
        h('button', { type: 'button', class: `project${current ? ' current' : ''}`, 'data-project': p.id, 'aria-current': current ? 'true' : null },
          h('span', { class: 'project-name' }, p.name || p.path),
          h('span', { class: `badge state-${p.state}` }, p.state),
          h('span', { class: 'project-meta muted' },
            [p.agent, p.node ? `on ${p.node}` : null, p.queue_len ? `${p.queue_len} queued` : null, ago(p.last_active)].filter(Boolean).join(' · ')),
          h('span', { class: 'project-path muted' }, p.path)));
    }));
    $('no-projects').hidden = this.list.length > 0;
  }

  async create() {
    const err = $('create-error');
    err.textContent = '';
    const data = { path: $('create-path').value.trim(), agent: $('create-agent').value };
    const name = $('create-name').value.trim();
    if (name) data.name = name;
    try {
      const r = await this.conn.request('project_create', data);
      $('create-form').reset();
      await this.refresh();
      this.onSelect(r.data.project.id);
    } catch (e) {
      err.textContent = e.message;
    }
  }

  /** Asks for a confirmation, then deletes; resolves true once deleted. */
  confirmDelete(id) {
    const p = this.byId(id);
    const dialog = $('confirm-dialog');
    $('confirm-text').textContent =
      `“${p?.name ?? id}” and its whole history will be removed from agentvisor. The directory ${p?.path ?? ''} is not touched.`;
    dialog.showModal();
    return new Promise((resolve) => {
      const done = (ok) => {
        $('confirm-form').removeEventListener('submit', onSubmit);
        $('confirm-cancel').removeEventListener('click', onCancel);
        dialog.removeEventListener('cancel', onCancel);
        if (dialog.open) dialog.close();
        resolve(ok);
      };
      const onSubmit = (e) => {
        e.preventDefault();
        done(true);
      };
      const onCancel = () => done(false);
      $('confirm-form').addEventListener('submit', onSubmit);
      $('confirm-cancel').addEventListener('click', onCancel);
      dialog.addEventListener('cancel', onCancel);
    });
  }
}
