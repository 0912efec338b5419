// Permission requests and what a run changed: a pending request is a panel with Allow / Deny /
// Allow for this session, resolved in place when anyone answers; a run that changed files shows
// the count and its diff on demand. Everything the agent sent (tool input, diff text) goes in as
// text nodes only.

import { h } from './dom.js';

/** A `permission_request` record. */
export function requestPanel(d, ctx) {
  const id = String(d.request_id ?? '');
  const button = (label, decision, cls, remember) => h('button', {
    type: 'button', class: `perm-btn ${cls}`, 'data-request': id, 'data-decision': decision,
    'data-remember': remember ? 'true' : null,
  }, label);
  const el = h('div', { class: 'perm pending', role: 'group', 'aria-label': `Permission request: ${d.summary ?? ''}` },
    h('div', { class: 'perm-title' }, `${d.tool ?? 'A tool'} asks for permission`),
    h('code', { class: 'perm-summary' }, String(d.summary ?? '')),
    change(d.input),
    h('details', {}, h('summary', { class: 'muted small' }, 'Full input'),
      h('pre', {}, JSON.stringify(d.input ?? null, null, 2))),
    h('div', { class: 'perm-actions' },
      button('Allow', 'allow', 'primary'),
      button('Allow for this session', 'allow', '', true),
      button('Deny', 'deny', 'danger')),
    h('p', { class: 'perm-outcome muted small' },
      d.expires_at ? `Denied automatically at ${new Date(d.expires_at).toLocaleTimeString()} if no one answers.` : ''));
  ctx.requests.set(id, el);
  return el;
}

/** The change an edit would make, as - and + lines (Edit's old/new text, Write's content). */
function change(input) {
  if (!input || typeof input !== 'object') return null;
  const lines = [];
  const add = (prefix, text) => {
    for (const l of String(text).split('\n').slice(0, 200)) lines.push(prefix + l);
  };
  if (typeof input.old_string === 'string') add('-', input.old_string);
  if (typeof input.new_string === 'string') add('+', input.new_string);
  else if (typeof input.content === 'string') add('+', input.content);
  return lines.length ? diffText(lines.join('\n')) : null;
}

/** A `permission_resolved` record: its panel says how it ended; a resolution whose request is not
 * on screen is a line of its own. */
export function resolved(d, ctx) {
  const verb = d.decision === 'allow' ? (d.remember ? 'Allowed for this session' : 'Allowed') : 'Denied';
  const by = { timeout: 'no answer in time', run_stopped: 'the run was stopped', shutdown: 'the server shut down', run_ended: 'the run ended' }[d.by] ?? String(d.by ?? '');
  const text = `${verb} (${by})${d.message ? `: ${d.message}` : ''}`;
  const panel = ctx.requests.get(String(d.request_id ?? ''));
  if (!panel) return h('div', { class: `line perm-line perm-${d.decision}` }, h('span', { class: 'tag' }, 'permission'), h('span', { class: 'line-text' }, text));
  panel.classList.remove('pending');
  panel.classList.add(`perm-${d.decision}`);
  panel.querySelector('.perm-actions')?.remove();
  panel.querySelector('.perm-outcome').textContent = text;
  return null;
}

/** The file count of a run that changed files in a git project, with a button for its diff. */
export function changes(d) {
  const c = d.changes;
  if (!c || typeof c !== 'object') return null;
  const files = Number(c.files_changed) || 0;
  if (!files) return h('div', { class: 'changes muted small' }, 'No files changed');
  return h('div', { class: 'changes small' },
    `${files} file${files === 1 ? '' : 's'} changed, +${Number(c.insertions) || 0} −${Number(c.deletions) || 0} `,
    h('button', { type: 'button', class: 'diff-btn', 'data-run': String(d.run_id ?? ''), 'aria-expanded': 'false' }, 'Show diff'));
}

/** A unified diff, one line per element, coloured by kind. */
export function diffText(text, truncated = false) {
  const kind = (l) => {
    if (l.startsWith('+++') || l.startsWith('---') || l.startsWith('diff ')) return 'diff-file';
    if (l.startsWith('@@')) return 'diff-hunk';
    if (l.startsWith('+')) return 'diff-add';
    if (l.startsWith('-')) return 'diff-del';
    return null;
  };
  const pre = h('pre', { class: 'diff-view' });
  for (const l of text.split('\n')) pre.append(h('span', { class: kind(l) }, `${l}\n`));
  if (truncated) pre.append(h('span', { class: 'muted' }, '… (cut: the diff is longer than the daemon sends)'));
  return pre;
}
