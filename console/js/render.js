// One stored event as people read it. Agent output (Claude Code's stream-json, Codex's exec
// --json) becomes text, compact tool lines and errors; anything unknown is shown as raw JSON,
// never dropped. Every record keeps its `seq` in `data-seq`, and its raw JSON is one click away.

import { h, duration } from './dom.js';
import { markdown } from './markdown.js';
import { changes, requestPanel, resolved } from './approvals.js';

/** The record each rendered element came from, for the raw JSON toggle. */
const recordOf = new WeakMap();

/** Per-view state: tool calls by id, so that results and completions land on their line,
 * prompts whose run has not started yet (shown as queued until it does), and permission requests
 * by id, so that their resolution lands on their panel. */
export function newContext() {
  return { tools: new Map(), waiting: new Map(), requests: new Map() };
}

/** Renders one record; returns its element (hidden when it has nothing to show). */
export function renderRecord(rec, ctx) {
  const body = bodyOf(rec, ctx);
  const el = h('article', { class: `rec rec-${rec.type}` });
  if (rec.seq !== undefined) el.dataset.seq = rec.seq;
  recordOf.set(el, rec);
  if (!body) {
    el.hidden = true;
    return el;
  }
  el.append(h('button', {
    type: 'button', class: 'raw-btn', 'aria-expanded': 'false',
    'aria-label': `Show the raw JSON of event ${rec.seq ?? ''}`.trim(), title: 'Raw JSON',
  }, '{ }'), body);
  return el;
}

/** Shows or hides the raw JSON under a record (called from a click on its button). */
export function toggleRaw(button) {
  const el = button.closest('.rec');
  const open = el.querySelector(':scope > pre.raw');
  if (open) {
    open.remove();
    button.setAttribute('aria-expanded', 'false');
    return;
  }
  el.append(h('pre', { class: 'raw' }, JSON.stringify(recordOf.get(el), null, 2)));
  button.setAttribute('aria-expanded', 'true');
}

function bodyOf(rec, ctx) {
  const d = rec.data || {};
  switch (rec.type) {
    case 'prompt': return prompt(rec, d, ctx);
    case 'run_started':
      started(ctx, d.run_id);
      return divider('Run started', d.resumed_session_id ? 'resuming the session' : 'new session');
    case 'project_state': return null;
    case 'agent_message':
      if (typeof d.raw === 'string') return line('raw', 'output', d.raw + (d.cut ? ' …(cut)' : ''));
      return agentMessage(d.message, ctx);
    case 'agent_stderr': return line('stderr', 'stderr', d.line);
    case 'run_finished':
      started(ctx, d.run_id);
      return runEnd(d);
    case 'session_reset': return divider('New session', 'the next run starts a fresh conversation');
    case 'consult_started': return consultQuestion(d);
    case 'consult_attempt':
      return d.after ? divider(`Consult asked again (attempt ${d.attempt})`, AFTER[d.after] ?? String(d.after)) : null;
    // The consultant's raw lines stay in history (and behind the result's raw JSON): the
    // result is what people read.
    case 'consult_output': return null;
    case 'consult_result': return consultResult(d);
    case 'permission_request': return requestPanel(d, ctx);
    case 'permission_resolved': return resolved(d, ctx);
    case 'error': return line('error', 'error', d.error || 'error');
    default: return unknown(rec);
  }
}

function prompt(rec, d, ctx) {
  const opts = d.options && Object.entries(d.options).map(([k, v]) => `${k}: ${v}`).join(' · ');
  const bubble = h('div', { class: 'bubble waiting' },
    h('div', { class: 'who' }, 'You', rec.ts ? h('time', { datetime: rec.ts }, ` ${time(rec.ts)}`) : null,
      h('span', { class: 'queued' }, ' · queued')),
    h('div', { class: 'prompt-text' }, d.prompt ?? ''),
    opts ? h('div', { class: 'muted small' }, opts) : null);
  if (d.run_id) ctx.waiting.set(d.run_id, bubble);
  return bubble;
}

/** A run started or ended: its prompt is no longer queued. */
function started(ctx, runId) {
  ctx.waiting.get(runId)?.classList.remove('waiting');
  ctx.waiting.delete(runId);
}

function divider(title, note) {
  return h('div', { class: 'divider' }, h('span', {}, title), note ? h('span', { class: 'muted' }, ` · ${note}`) : null);
}

function line(kind, label, text) {
  return h('div', { class: `line line-${kind}` }, h('span', { class: 'tag' }, label), h('span', { class: 'line-text' }, String(text ?? '')));
}

function runEnd(d) {
  const bits = [duration(d.duration_ms)];
  if (typeof d.cost_usd === 'number') bits.push(`$${d.cost_usd.toFixed(4)}`);
  if (d.exit_code !== null && d.exit_code !== undefined) bits.push(`exit ${d.exit_code}`);
  return h('div', { class: 'run-end' },
    h('span', { class: `badge status-${d.status}` }, String(d.status ?? 'ended')),
    h('span', { class: 'muted' }, ` Run ended ${bits.filter(Boolean).join(' · ')}`),
    d.error ? h('div', { class: 'line-error' }, String(d.error)) : null,
    changes(d));
}

// --- consults ----------------------------------------------------------------------------------

/** Why a consult was asked again, as people say it. */
const AFTER = {
  no_marker: 'the answer did not follow the format',
  incomplete: 'sections were missing',
  timeout: 'no answer in time',
  unrelated: 'the answer did not address the question',
};

const SEVERITIES = ['Critical', 'Important', 'Minor'];

function consultQuestion(d) {
  return h('div', { class: 'bubble consult' },
    h('div', { class: 'who' }, `Consult · ${d.to ?? '?'} · ${d.kind ?? '?'}`),
    h('div', { class: 'prompt-text' }, String(d.question ?? '')),
    d.context ? h('details', { class: 'muted small' }, h('summary', {}, 'Context'), h('div', { class: 'prompt-text' }, String(d.context))) : null);
}

function consultResult(d) {
  const attempts = `${d.attempts ?? 0} attempt${d.attempts === 1 ? '' : 's'}`;
  const box = h('div', { class: 'consult-result' },
    h('div', {},
      h('span', { class: `badge status-${d.status}` }, String(d.status ?? 'ended')),
      h('span', { class: 'muted' }, ` ${d.to ?? '?'} answered the ${d.kind ?? ''} consult · ${attempts}`)),
    d.error ? h('div', { class: 'line-error' }, String(d.error)) : null);
  const issues = Array.isArray(d.issues) ? d.issues : [];
  if (issues.length) {
    const list = h('ul', { class: 'consult-issues' });
    for (const sev of SEVERITIES) {
      for (const i of issues.filter((x) => x?.severity === sev)) {
        list.append(h('li', { class: `issue issue-${sev}` }, h('span', { class: 'badge' }, sev), ' ', String(i.text ?? '')));
      }
    }
    box.append(h('div', { class: 'section-name' }, 'Issues by severity'), list);
  }
  for (const [name, text] of Object.entries(d.sections ?? {})) {
    box.append(h('div', { class: 'section-name' }, name.replaceAll('_', ' ')), h('div', { class: 'agent-text' }, markdown(String(text))));
  }
  return box;
}

function unknown(rec) {
  return h('details', { class: 'unknown' },
    h('summary', {}, `${rec.type ?? 'event'} (not known to this console)`),
    h('pre', {}, JSON.stringify(rec.data ?? rec, null, 2)));
}

function time(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? '' : t.toLocaleTimeString();
}

// --- agent output -----------------------------------------------------------------------------

function agentMessage(m, ctx) {
  if (!m || typeof m !== 'object') return unknown({ type: 'agent_message', data: m });
  switch (m.type) {
    // Claude Code
    case 'system':
      if (m.subtype === 'init') return divider('Agent session', [m.model, m.cwd].filter(Boolean).join(' · '));
      if (m.subtype === 'status') return null;
      return line('system', m.subtype || 'system', JSON.stringify(m));
    case 'assistant': return blocks(m.message?.content, ctx);
    case 'user': return toolResults(m.message?.content, ctx);
    case 'result':
      return m.is_error ? line('error', 'agent error', m.result || m.subtype || 'the agent reported an error') : null;
    case 'stream_event': return null; // partial deltas: the whole message follows
    // Codex
    case 'thread.started': return divider('Agent session', m.thread_id);
    case 'turn.started':
    case 'turn.completed': return null;
    case 'turn.failed': return line('error', 'turn failed', m.error?.message || JSON.stringify(m.error));
    case 'error': return line('error', 'agent error', m.message || JSON.stringify(m));
    case 'item.started':
    case 'item.updated':
    case 'item.completed': return codexItem(m.item, m.type === 'item.completed', ctx);
    default: return unknownMessage(m);
  }
}

function unknownMessage(m) {
  return h('details', { class: 'unknown' },
    h('summary', {}, `${m.type ?? 'output'} (not known to this console)`),
    h('pre', {}, JSON.stringify(m, null, 2)));
}

/** Claude's content blocks: text, tool calls, thinking. */
function blocks(content, ctx) {
  if (typeof content === 'string') return h('div', { class: 'agent-text' }, markdown(content));
  if (!Array.isArray(content)) return null;
  const box = h('div', { class: 'agent' });
  for (const b of content) {
    if (b?.type === 'text') box.append(h('div', { class: 'agent-text' }, markdown(b.text ?? '')));
    else if (b?.type === 'tool_use') box.append(tool(ctx, b.id, b.name, b.input));
    else if (b?.type === 'thinking') box.append(thinking(b.thinking));
    else box.append(unknownMessage(b));
  }
  return box.childElementCount ? box : null;
}

function thinking(text) {
  return h('details', { class: 'thinking' }, h('summary', {}, 'Thinking'), h('div', { class: 'agent-text' }, markdown(text ?? '')));
}

/** Claude's tool results: attached to their call's line when it is on screen. */
function toolResults(content, ctx) {
  if (!Array.isArray(content)) return null;
  const loose = h('div', { class: 'agent' });
  for (const b of content) {
    if (b?.type !== 'tool_result') continue;
    const text = resultText(b.content);
    const known = ctx.tools.get(b.tool_use_id);
    if (known) setResult(known, text, b.is_error);
    else {
      const t = tool(ctx, b.tool_use_id, 'Tool result', null);
      setResult(t, text, b.is_error);
      loose.append(t);
    }
  }
  return loose.childElementCount ? loose : null;
}

function resultText(c) {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.map((x) => (typeof x?.text === 'string' ? x.text : JSON.stringify(x))).join('\n');
  return JSON.stringify(c, null, 2);
}

/** Codex items; a started item's line is completed in place. */
function codexItem(item, done, ctx) {
  if (!item || typeof item !== 'object') return unknownMessage({ type: 'item', item });
  switch (item.type) {
    case 'agent_message': return done ? h('div', { class: 'agent-text' }, markdown(item.text ?? '')) : null;
    case 'reasoning': return done ? thinking(item.text) : null;
    case 'command_execution': return codexTool(ctx, item, 'shell', { command: item.command }, done,
      () => `${item.aggregated_output ?? ''}${item.exit_code !== null && item.exit_code !== undefined ? `\n(exit ${item.exit_code})` : ''}`,
      item.exit_code ? true : false);
    case 'file_change': return codexTool(ctx, item, 'edit',
      { path: (item.changes || []).map((c) => `${c.kind ?? ''} ${c.path ?? ''}`.trim()).join(', ') }, done,
      () => JSON.stringify(item.changes ?? [], null, 2), item.status === 'failed');
    case 'mcp_tool_call': return codexTool(ctx, item, `${item.server ?? 'mcp'}.${item.tool ?? ''}`, item.arguments ?? {}, done,
      () => JSON.stringify(item.result ?? item.error ?? null, null, 2), item.status === 'failed');
    case 'web_search': return codexTool(ctx, item, 'web search', { query: item.query }, done, () => '', false);
    case 'todo_list': return h('ul', { class: 'todo' }, (item.items || []).map((t) => h('li', {}, `${t.completed ? '☑' : '☐'} ${t.text ?? ''}`)));
    case 'error': return line('error', 'error', item.message ?? JSON.stringify(item));
    default: return unknownMessage(item);
  }
}

function codexTool(ctx, item, name, input, done, result, failed) {
  const existing = ctx.tools.get(item.id);
  const t = existing || tool(ctx, item.id, name, input);
  if (done) setResult(t, result(), failed);
  return existing ? null : t;
}

/** The argument people recognise a call by: the command, the file, the pattern… */
function keyArg(input) {
  if (!input || typeof input !== 'object') return '';
  for (const k of ['command', 'file_path', 'path', 'notebook_path', 'pattern', 'url', 'query', 'description', 'prompt']) {
    if (typeof input[k] === 'string' && input[k]) return input[k];
  }
  const first = Object.values(input).find((v) => typeof v === 'string');
  return first ?? '';
}

/** A tool call as one compact line, expandable to its full input and result. */
function tool(ctx, id, name, input) {
  const status = h('span', { class: 'tool-status', 'aria-label': 'running' }, '…');
  const body = h('div', { class: 'tool-body' });
  if (input !== null && input !== undefined) {
    body.append(h('div', { class: 'label' }, 'Input'), h('pre', {}, JSON.stringify(input, null, 2)));
  }
  const el = h('details', { class: 'tool' },
    h('summary', {}, h('span', { class: 'tool-name' }, String(name ?? 'tool')), ' ',
      h('code', { class: 'tool-arg' }, keyArg(input).slice(0, 300)), ' ', status),
    body);
  if (id) ctx.tools.set(id, el);
  return el;
}

function setResult(el, text, isError) {
  const body = el.querySelector('.tool-body');
  body.querySelector('.result')?.remove();
  body.append(h('div', { class: 'result' }, h('div', { class: 'label' }, isError ? 'Result (error)' : 'Result'), h('pre', {}, text)));
  const status = el.querySelector('.tool-status');
  status.textContent = isError ? '✗' : '✓';
  status.setAttribute('aria-label', isError ? 'failed' : 'done');
  el.classList.toggle('tool-failed', !!isError);
}
