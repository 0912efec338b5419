// The console's wiring: the connection state, the project list, the open conversation, the
// prompt box and its controls, and the health dialog.

import { $ } from './dom.js';
import { Connection } from './conn.js';
import { Projects } from './projects.js';
import { Conversation } from './conversation.js';
import { Health } from './health.js';

async function needsToken() {
  try {
    const r = await fetch('/console/config.json', { cache: 'no-store' });
    return (await r.json()).auth === 'token';
  } catch {
    return false; // the connection will say so if it is wrong
  }
}

const conn = new Connection(await needsToken());
const projects = new Projects(conn, (id) => { location.hash = `#/p/${id}`; }, () => showProject());
const conversation = new Conversation(conn, onProjectEvent);
const health = new Health(conn, (id) => projects.byId(id)?.name);
let current = null;

// --- connection state ---------------------------------------------------------------------------

function showState() {
  const el = $('conn');
  const { state, retryAt } = conn;
  el.dataset.state = state;
  const why = conn.closeReason ? ` (${conn.closeReason})` : '';
  const text = {
    connecting: 'connecting…',
    live: 'live',
    offline: 'offline',
    token: 'token needed',
    reconnecting: `reconnecting in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s${why}`,
  }[state];
  // Rewriting the same text would make screen readers announce it again.
  if (el.textContent !== text) el.textContent = text;
  document.body.classList.toggle('disconnected', state !== 'live');
}

conn.addEventListener('state', () => {
  showState();
  if (conn.state === 'token') askToken();
});
setInterval(() => { if (conn.state === 'reconnecting') showState(); }, 500);

conn.addEventListener('open', () => {
  projects.refresh();
  conversation.sync();
});

conn.addEventListener('message', (e) => {
  const msg = e.detail;
  if (msg.type === 'server_stats') return health.onStats(msg.data);
  if (msg.type === 'project_deleted') {
    if (msg.project_id === current) location.hash = '';
    projects.refresh();
    return;
  }
  conversation.onMessage(msg);
});

function askToken() {
  const dialog = $('token-dialog');
  $('token-error').textContent = conn.tokenError;
  if (!dialog.open) dialog.showModal();
  $('token-input').focus();
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) return;
  $('token-input').value = '';
  $('token-dialog').close();
  conn.useToken(token);
});
// The dialog cannot be dismissed without a token: there is nothing to show without one.
$('token-dialog').addEventListener('cancel', (e) => e.preventDefault());

// --- the open project ---------------------------------------------------------------------------

function onProjectEvent(m) {
  if (m.type === 'view_error') {
    $('composer-error').textContent = m.error;
    return;
  }
  if (m.type === 'project_state') {
    projects.update(m.project_id, { state: m.data.state, queue_len: m.data.queue_len, last_active: m.ts });
  }
  if (m.project_id === current) showProject();
}

function showProject() {
  const p = projects.byId(current);
  if (!p) return;
  $('project-title').textContent = p.name || p.path;
  $('project-title').title = p.path;
  const state = $('project-state');
  state.textContent = p.state;
  state.className = `badge state-${p.state}`;
  $('project-queue').textContent = [p.node ? `on node ${p.node}` : null, p.queue_len ? `${p.queue_len} queued` : null].filter(Boolean).join(' · ');
  const codex = p.agent === 'codex';
  $('perm-label').hidden = codex;
  $('approvals-label').hidden = codex;
  $('sandbox-label').hidden = !codex;
}

function route() {
  const m = /^#\/p\/([\w-]+)$/.exec(location.hash);
  const id = m ? m[1] : null;
  if (id === current) return;
  current = id;
  projects.select(id);
  $('composer-error').textContent = '';
  $('project-view').hidden = !id;
  $('empty-view').hidden = !!id;
  document.body.dataset.pane = id ? 'conversation' : 'projects';
  if (id) {
    conversation.open(id);
    showProject();
    projects.refresh();
  } else {
    conversation.close();
  }
}
window.addEventListener('hashchange', route);
$('back').addEventListener('click', () => { location.hash = ''; });

// --- driving the agent --------------------------------------------------------------------------

/** Runs a request for the open project; shows its error, and the project's new state. */
async function act(what) {
  $('composer-error').textContent = '';
  try {
    return await what();
  } catch (e) {
    $('composer-error').textContent = e.message;
    return null;
  } finally {
    projects.refresh();
  }
}

function options() {
  const p = projects.byId(current);
  const o = {};
  const model = $('opt-model').value.trim();
  if (model) o.model = model;
  if (p?.agent === 'codex') {
    if ($('opt-sandbox').value) o.sandbox = $('opt-sandbox').value;
  } else {
    if ($('opt-permission').value) o.permission_mode = $('opt-permission').value;
    if ($('opt-approvals').checked) o.approvals = true;
  }
  return o;
}

async function send() {
  const box = $('prompt');
  const prompt = box.value;
  if (!prompt.trim() || !current) return;
  const data = { prompt };
  const o = options();
  if (Object.keys(o).length) data.options = o;
  const r = await act(() => conn.request('execute', data, current));
  if (r) box.value = '';
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
$('stop').addEventListener('click', () =>
  act(() => conn.request('agent_kill', { clear_queue: $('clear-queue').checked }, current)));
$('new-session').addEventListener('click', () =>
  act(() => conn.request('agent_new_session', {}, current)));
$('delete-project').addEventListener('click', async () => {
  const id = current;
  if (!(await projects.confirmDelete(id))) return;
  const r = await act(() => conn.request('project_delete', {}, id));
  if (r) {
    location.hash = '';
    projects.refresh();
  }
});

showState();
route();
conn.start();
