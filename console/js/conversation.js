// The open project's conversation: the latest page of history, earlier pages on scrolling up
// (before_seq), then live events, with no gap and no duplicate: every record is taken at most
// once by its seq, and after a reconnect the view joins again from the last seq it has.

import { $ } from './dom.js';
import { newContext, renderRecord, toggleRaw } from './render.js';
import { diffText } from './approvals.js';

const PAGE = 150;
/** Records kept on screen while following live output; older ones are paged back on demand. */
const MAX_ON_SCREEN = 3000;

export class Conversation {
  constructor(conn, onProjectEvent) {
    this.conn = conn;
    this.onProjectEvent = onProjectEvent;
    this.log = $('log');
    this.records = $('records');
    this.projectId = null;
    this.generation = 0;
    this.queue = [];
    this.flushing = false;
    this.records.addEventListener('click', (e) => {
      const b = e.target.closest('.raw-btn, .perm-btn, .diff-btn');
      if (b?.classList.contains('raw-btn')) toggleRaw(b);
      else if (b?.classList.contains('perm-btn')) this.respond(b);
      else if (b) this.toggleDiff(b);
    });
    $('pending-perms').addEventListener('click', () => {
      this.records.querySelector('.perm.pending')?.scrollIntoView({ block: 'center' });
    });
    $('load-older').addEventListener('click', () => this.loadOlder());
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadOlder();
    }, { root: this.log }).observe($('log-top'));
  }

  /** Shows a project: its latest page, then live. */
  open(projectId) {
    if (this.projectId && this.projectId !== projectId && this.conn.state === 'live') {
      this.conn.request('project_leave', {}, this.projectId).catch(() => {});
    }
    this.projectId = projectId;
    this.generation += 1;
    this.records.replaceChildren();
    this.showPending();
    this.queue = [];
    this.ctx = newContext();
    this.firstSeq = null;
    this.lastSeq = null;
    this.hasMore = false;
    this.loadingOlder = false;
    this.showTop();
    if (this.conn.state === 'live') this.sync();
  }

  close() {
    if (this.projectId && this.conn.state === 'live') {
      this.conn.request('project_leave', {}, this.projectId).catch(() => {});
    }
    this.projectId = null;
    this.generation += 1;
  }

  /** (Re)connected: load what is missing and subscribe again. */
  async sync() {
    const gen = this.generation;
    const id = this.projectId;
    if (!id) return;
    try {
      if (this.lastSeq === null) {
        const page = await this.conn.request('get_messages', { limit: PAGE }, id);
        if (gen !== this.generation) return;
        const msgs = page.data.messages;
        this.firstSeq = page.data.before_seq ?? (msgs.length ? msgs[0].seq : null);
        this.hasMore = page.data.has_more;
        this.showTop();
        this.take(msgs);
        this.lastSeq = Math.max(this.lastSeq ?? 0, page.data.next_seq ?? 0);
        this.flush(true);
      }
      await this.conn.request('project_join', { since_seq: this.lastSeq }, id);
    } catch (e) {
      if (gen === this.generation) this.onProjectEvent({ type: 'view_error', error: e.message });
    }
  }

  /** A message from the daemon; only this project's records are taken. */
  onMessage(msg) {
    if (!this.projectId || msg.project_id !== this.projectId) return;
    if (msg.type === 'project_deleted' || msg.type === 'project_joined') return;
    this.take([msg]);
    this.scheduleFlush();
  }

  /** Queues records that are newer than the last one taken. */
  take(msgs) {
    for (const m of msgs) {
      if (typeof m.seq === 'number') {
        if (this.lastSeq !== null && m.seq <= this.lastSeq) continue;
        this.lastSeq = m.seq;
      }
      this.queue.push(m);
      if (m.type === 'project_state' || m.type === 'run_finished' || m.type === 'run_started') {
        this.onProjectEvent(m);
      }
    }
  }

  /** Renders queued records once per frame, however fast they arrive. */
  scheduleFlush() {
    if (this.flushing) return;
    this.flushing = true;
    requestAnimationFrame(() => {
      this.flushing = false;
      this.flush(false);
    });
  }

  flush(toBottom) {
    if (!this.queue.length) return;
    const atBottom = toBottom || this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 60;
    const frag = document.createDocumentFragment();
    for (const m of this.queue) frag.append(renderRecord(m, this.ctx));
    this.queue = [];
    this.records.append(frag);
    this.showPending();
    if (this.firstSeq === null) this.firstSeq = Number(this.records.firstElementChild?.dataset.seq) || null;
    if (atBottom) {
      this.trim();
      this.log.scrollTop = this.log.scrollHeight;
    }
  }

  /** Keeps the page light during a long live run: the oldest records leave the screen (they
   * come back by scrolling up, from history). */
  trim() {
    const extra = this.records.childElementCount - MAX_ON_SCREEN;
    if (extra <= 0) return;
    for (let i = 0; i < extra; i++) this.records.firstElementChild.remove();
    const first = this.records.querySelector('[data-seq]');
    this.firstSeq = first ? Number(first.dataset.seq) : this.firstSeq;
    this.hasMore = true;
    this.showTop();
  }

  /** Prepends the page before the first record shown, keeping the view where it was. */
  async loadOlder() {
    if (!this.hasMore || this.loadingOlder || this.firstSeq === null || this.conn.state !== 'live') return;
    const gen = this.generation;
    this.loadingOlder = true;
    try {
      const page = await this.conn.request('get_messages', { before_seq: this.firstSeq, limit: PAGE }, this.projectId);
      if (gen !== this.generation) return;
      const msgs = page.data.messages;
      const ctx = newContext();
      const frag = document.createDocumentFragment();
      for (const m of msgs) frag.append(renderRecord(m, ctx));
      const before = this.log.scrollHeight;
      this.records.prepend(frag);
      this.log.scrollTop += this.log.scrollHeight - before;
      if (msgs.length) this.firstSeq = msgs[0].seq;
      // The daemon says where to go on before (a page it cut short may even be empty).
      const olderFrom = page.data.before_seq;
      if (typeof olderFrom === 'number') this.firstSeq = olderFrom;
      this.hasMore = page.data.has_more && (msgs.length > 0 || typeof olderFrom === 'number');
      this.showTop();
    } catch (e) {
      this.onProjectEvent({ type: 'view_error', error: e.message });
    } finally {
      if (gen === this.generation) this.loadingOlder = false;
    }
  }

  /** Answers a permission request from its panel; the panel changes when the daemon says it
   * was resolved (by this answer or an earlier one). */
  async respond(button) {
    const panel = button.closest('.perm');
    const buttons = panel.querySelectorAll('.perm-btn');
    buttons.forEach((b) => { b.disabled = true; });
    const data = { request_id: button.dataset.request, decision: button.dataset.decision };
    if (button.dataset.remember) data.remember = true;
    try {
      await this.conn.request('permission_respond', data, this.projectId);
    } catch (e) {
      buttons.forEach((b) => { b.disabled = false; });
      panel.querySelector('.perm-outcome').textContent = e.message;
    }
  }

  /** Shows or hides the diff of a run under its end. */
  async toggleDiff(button) {
    const box = button.closest('.changes');
    const open = box.querySelector('.diff-view');
    if (open) {
      open.remove();
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    try {
      const r = await this.conn.request('run_diff', { run_id: button.dataset.run }, this.projectId);
      box.querySelector('.diff-view')?.remove();
      box.append(r.data.diff === null ? diffText('(the daemon no longer has this run\'s snapshots)') : diffText(r.data.diff, r.data.truncated));
      button.setAttribute('aria-expanded', 'true');
    } catch (e) {
      this.onProjectEvent({ type: 'view_error', error: e.message });
    }
  }

  /** The header's notice of requests waiting for an answer. */
  showPending() {
    const n = this.records.querySelectorAll('.perm.pending').length;
    const notice = $('pending-perms');
    notice.hidden = n === 0;
    notice.textContent = n === 1 ? '1 request waits for approval' : `${n} requests wait for approval`;
  }

  showTop() {
    $('load-older').hidden = !this.hasMore;
    $('log-start').hidden = this.hasMore || this.firstSeq === null;
  }
}
