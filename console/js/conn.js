// The WebSocket to the daemon: connect, authenticate, request/reply by id, and reconnect with
// exponential backoff and jitter. Its state is always one of: connecting, live, reconnecting (with
// the time of the next attempt), offline (the browser has no network) or token (waiting for the
// user's token).

const TOKEN_KEY = 'agentvisor.token';
const REQUEST_TIMEOUT_MS = 15000;
const PING_EVERY_MS = 15000;
const SILENCE_LIMIT_MS = 45000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30000;
/** A connection that stayed up this long starts the backoff over. */
const STABLE_AFTER_MS = 10000;

/** The token lives in this tab's sessionStorage only: never in the URL, never in localStorage. */
const tokenStore = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A reply of type `error`, as an exception. */
class ApiError extends Error {
  constructor(data) {
    super(data?.error || 'request failed');
    this.code = data?.code;
    this.details = data?.details;
  }
}

export class Connection extends EventTarget {
  /** `needsToken`: whether the daemon asks for a token (from /console/config.json). */
  constructor(needsToken) {
    super();
    this.needsToken = needsToken;
    this.state = 'connecting';
    this.retryAt = 0;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.timer = null;
    this.tokenError = '';
    this.closeReason = '';
    window.addEventListener('online', () => this.connectNow());
    window.addEventListener('offline', () => { if (this.state !== 'live') this.setState('offline'); });
    setInterval(() => this.keepAlive(), PING_EVERY_MS);
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, retryAt: this.retryAt } }));
  }

  start() {
    if (this.needsToken && !tokenStore.get()) {
      this.setState('token');
      return;
    }
    this.connect();
  }

  /** The user gave a token: try it at once. */
  useToken(token) {
    tokenStore.set(token);
    this.tokenError = '';
    this.connectNow();
  }

  connectNow() {
    clearTimeout(this.timer);
    if (this.ws) return;
    if (this.needsToken && !tokenStore.get()) return this.setState('token');
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    if (!navigator.onLine) return this.setState('offline');
    this.setState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    this.openedAt = 0;
    ws.addEventListener('open', () => this.onOpen(ws));
    ws.addEventListener('message', (e) => this.onMessage(e.data));
    ws.addEventListener('close', (e) => this.onClose(ws, e));
  }

  async onOpen(ws) {
    this.lastHeard = Date.now();
    const token = tokenStore.get();
    if (token) {
      try {
        await this.request('auth', { token });
      } catch {
        return; // the daemon closes the connection; onClose decides what next
      }
    }
    if (this.ws !== ws) return;
    this.openedAt = Date.now();
    this.closeReason = '';
    this.setState('live');
    this.dispatchEvent(new Event('open'));
  }

  onMessage(text) {
    this.lastHeard = Date.now();
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    const waiting = msg.id !== undefined && this.pending.get(msg.id);
    if (waiting) {
      this.pending.delete(msg.id);
      clearTimeout(waiting.timer);
      if (msg.type === 'error') waiting.reject(new ApiError(msg.data));
      else waiting.resolve(msg);
      return;
    }
    this.dispatchEvent(new CustomEvent('message', { detail: msg }));
  }

  onClose(ws, e) {
    if (this.ws !== ws) return;
    this.ws = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('the connection to the daemon was lost'));
    }
    this.pending.clear();
    if (this.openedAt && Date.now() - this.openedAt > STABLE_AFTER_MS) this.attempt = 0;
    this.dispatchEvent(new Event('close'));
    const reason = e.reason || '';
    // Why the daemon closed it (an origin it refuses, a limit, a restart), for the state badge.
    this.closeReason = reason;
    if (e.code === 1008 && /authentication required|invalid token/.test(reason)) {
      tokenStore.clear();
      this.tokenError = this.needsToken ? 'The daemon did not accept that token.' : '';
      this.needsToken = true;
      return this.setState('token');
    }
    this.scheduleRetry();
  }

  /** Exponential backoff with jitter: between half and all of min(30 s, 0.5 s × 2^attempt). */
  scheduleRetry() {
    if (!navigator.onLine) return this.setState('offline');
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.timer = setTimeout(() => this.connect(), delay);
    this.setState('reconnecting');
  }

  /** Pings now and then; a connection silent for too long is dropped and made again. */
  keepAlive() {
    if (this.state !== 'live' || !this.ws) return;
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.ws.close();
      return;
    }
    this.request('ping', {}).catch(() => {});
  }

  /** Sends a request; resolves with its reply, rejects with an ApiError or a lost connection. */
  request(type, data, projectId) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error('not connected to the daemon'));
    }
    const id = `c${this.nextId++}`;
    const msg = { type, id, data };
    if (projectId) msg.project_id = projectId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${type} in time`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify(msg));
    });
  }
}
