// Browser tests of the web console: the real daemon binary with the mock agent, and Debian's
// Chromium driven by playwright-core. Run by scripts/test-console.sh, which installs both.
//
// Environment: AGENTVISOR_BIN and MOCK_AGENT (executables), CONSOLE_SHOTS (where screenshots of
// the main views go). Prints PASS/FAIL per scenario and a closing count line; exits 1 on failure.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.AGENTVISOR_BIN;
const MOCK = process.env.MOCK_AGENT;
const SHOTS = process.env.CONSOLE_SHOTS || 'target/console-shots';
const WAIT = 30000;
const TOKEN = 'console-test-token-0123456789';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agentvisor-console-'));
const root = path.join(tmp, 'projects');
fs.mkdirSync(root);
fs.mkdirSync(SHOTS, { recursive: true });

// --- the daemon ---------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitReady(port) {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/ready`)).status === 200) return;
    } catch { /* not listening yet */ }
    await sleep(50);
  }
  throw new Error(`the daemon on ${port} did not become ready`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts the daemon; `d.restart()` stops and starts it again on the same port and data. */
async function startDaemon(name, env = {}) {
  const d = { port: await freePort(), data: path.join(tmp, `data-${name}`), log: path.join(tmp, `${name}.log`) };
  d.start = async () => {
    const out = fs.openSync(d.log, 'a');
    d.child = spawn(BIN, ['--listen', `127.0.0.1:${d.port}`, '--data-dir', d.data], {
      stdio: ['ignore', out, out],
      env: {
        ...process.env, AGENTVISOR_PROJECT_ROOTS: root, AGENTVISOR_CLAUDE_BIN: MOCK,
        AGENTVISOR_CODEX_BIN: MOCK, AGENTVISOR_STATS_INTERVAL: '1s', ...env,
      },
    });
    d.exited = new Promise((r) => d.child.once('exit', r));
    await waitReady(d.port);
  };
  d.stop = async () => {
    d.child.kill('SIGTERM');
    await d.exited;
  };
  d.url = (hash = '') => `http://127.0.0.1:${d.port}/${hash}`;
  await d.start();
  return d;
}

// --- the browser --------------------------------------------------------------------------------

let context;
const problems = [];

async function newPage(viewport) {
  const page = await context.newPage();
  await page.setViewportSize(viewport || { width: 1280, height: 800 });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('crash', () => problems.push('the page crashed'));
  // Errors the page logs, except the browser's own note that a reconnect attempt was refused
  // (expected while the daemon restarts).
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^WebSocket connection to .* failed/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  // The console must never ask another host for anything.
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.hostname !== '127.0.0.1') problems.push(`request to another host: ${r.url()}`);
  });
  return page;
}

const live = (page) => page.waitForSelector('#conn[data-state="live"]', { timeout: WAIT });

/** A new page on the console of `d` (at `hash`), once it is live. */
async function openConsole(d, hash = '', viewport = undefined) {
  const page = await newPage(viewport);
  await page.goto(d.url(hash));
  await live(page);
  return page;
}

async function createProject(page, name, agent = 'claude') {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  await page.fill('#create-path', dir);
  await page.selectOption('#create-agent', agent);
  await page.click('#create-form button[type="submit"]');
  await page.waitForFunction((n) => document.querySelector('#project-title')?.textContent === n, name, { timeout: WAIT });
  return page.evaluate(() => location.hash.slice('#/p/'.length));
}

async function send(page, prompt) {
  await page.fill('#prompt', prompt);
  await page.press('#prompt', 'Enter');
}

/** Waits until `n` run ends are shown; returns the last one's status. */
async function runEnds(page, n) {
  await page.waitForFunction((k) => document.querySelectorAll('.rec-run_finished:not([hidden])').length >= k, n, { timeout: WAIT });
  return page.evaluate(() => [...document.querySelectorAll('.rec-run_finished .badge')].at(-1).textContent);
}

/** The seqs of the records on the page, in order. */
const seqs = (page) => page.evaluate(() => [...document.querySelectorAll('#records [data-seq]')].map((e) => Number(e.dataset.seq)));

function assertContiguous(list, what) {
  for (let i = 1; i < list.length; i++) {
    if (list[i] !== list[i - 1] + 1) throw new Error(`${what}: seq ${list[i - 1]} then ${list[i]} (${list.join(',')})`);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/** Sends one request over a WebSocket of its own, from inside the page; resolves with the reply
 * (for set-ups the console has no button for, and for waiting on another project's run). */
function wsCall(page, msg, untilType) {
  return page.evaluate(([m, until, wait]) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onopen = () => ws.send(JSON.stringify({ id: 'x', ...m }));
    ws.onmessage = (e) => {
      const r = JSON.parse(e.data);
      if (until ? r.type === until : r.id === 'x') {
        ws.close();
        resolve(r);
      }
    };
    ws.onerror = () => reject(new Error('websocket error'));
    // Settled already when the awaited reply came; otherwise the daemon closed the socket.
    ws.onclose = (e) => reject(new Error(`websocket closed (${e.code} ${e.reason}) before ${until || 'the reply'}`));
    setTimeout(() => reject(new Error(`no ${until || 'reply'} within ${wait} ms`)), wait);
  }), [msg, untilType, WAIT]);
}

// --- scenarios ----------------------------------------------------------------------------------

const scenarios = [];
const scenario = (name, fn) => scenarios.push({ name, fn });
let daemon;
let mainPage;
let projectId;

scenario('open /, create a project, run the mock agent: its text, a tool call and the run end are rendered', async () => {
  const page = mainPage = await openConsole(daemon);
  projectId = await createProject(page, 'shop');
  // Shift+Enter is a new line, not a send.
  await page.fill('#prompt', 'a');
  await page.press('#prompt', 'Shift+Enter');
  await page.type('#prompt', 'b');
  check((await page.inputValue('#prompt')) === 'a\nb', 'Shift+Enter did not add a line');
  check((await page.locator('.rec-prompt').count()) === 0, 'Shift+Enter sent the prompt');
  await send(page, 'mock:tool please');
  check((await runEnds(page, 1)) === 'completed', 'the run did not end completed');
  check((await page.inputValue('#prompt')) === '', 'the prompt box was not cleared');
  check((await page.textContent('.rec-prompt .prompt-text')) === 'mock:tool please', 'the prompt is not shown');
  check((await page.textContent('.tool .tool-name')) === 'Bash', 'no Bash tool line');
  check((await page.textContent('.tool .tool-arg')).includes('touch made-by-tool.txt'), 'the tool line lacks its command');
  await page.click('.tool summary');
  check((await page.textContent('.tool .result pre')).includes('hello-from-tool'), 'the tool result is not attached');
  check((await page.textContent('.agent-text')).includes('tool-result: hello-from-tool'), 'the agent text is missing');
  check(/\$0\.0002/.test(await page.textContent('.rec-run_finished')), 'the run end lacks its cost');
  // The raw JSON of any event is one click away.
  await page.click('.rec-run_finished .raw-btn');
  check((await page.textContent('.rec-run_finished pre.raw')).includes('"status": "completed"'), 'no raw JSON');
  await page.click('.rec-run_finished .raw-btn');
  await page.click('#prompt');
  await page.screenshot({ path: `${SHOTS}/console-desktop.png` });
  await page.emulateMedia({ colorScheme: 'dark' });
  check((await page.evaluate(() => getComputedStyle(document.body).backgroundColor)) === 'rgb(17, 20, 24)', 'no dark theme');
  await page.screenshot({ path: `${SHOTS}/console-dark.png` });
  await page.emulateMedia({ colorScheme: 'light' });
});

scenario('Markdown: headings, lists, code, emphasis, and links only for http(s)', async () => {
  const html = await mainPage.evaluate(async () => {
    const { markdown } = await import('/console/js/markdown.js');
    const box = document.createElement('div');
    box.append(markdown([
      '# Title', '', 'Some *em*, **strong**, `a<b>` and snake_case_name.', '',
      '- one', '- two', '  continued', '', '3. three', '4. four', '',
      '```js', 'let x = "<script>";', '```', '',
      '> quoted', '',
      '[web](https://example.com/a?b=1) [js](javascript:alert(1)) [data](data:text/html,x) [rel](/ws)',
    ].join('\n')));
    return box.innerHTML;
  });
  const expected = [
    '<h3>Title</h3>',
    '<p>Some <em>em</em>, <strong>strong</strong>, <code>a&lt;b&gt;</code> and snake_case_name.</p>',
    '<ul><li>one</li><li>two\ncontinued</li></ul>',
    '<ol start="3"><li>three</li><li>four</li></ol>',
    '<pre><code data-lang="js">let x = "&lt;script&gt;";</code></pre>',
    '<blockquote><p>quoted</p></blockquote>',
    '<p><a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow" target="_blank">web</a> '
      + 'js (javascript:alert(1)) data (data:text/html,x) rel (/ws)</p>',
  ].join('');
  check(html === expected, `got ${html}`);
});

scenario('a second tab on the project sees the same run, live', async () => {
  const other = await openConsole(daemon, `#/p/${projectId}`);
  await other.waitForSelector('.rec-run_finished', { timeout: WAIT });
  await send(mainPage, 'mock:slow interval_ms=300');
  // The second tab shows the new run's output while it is still running.
  await other.waitForFunction(() => document.querySelectorAll('.rec-prompt').length === 2
    && document.querySelectorAll('.agent-text').length >= 2, null, { timeout: WAIT });
  check((await other.locator('.rec-run_finished').count()) === 1, 'the second tab only saw the run once it ended');
  check((await other.textContent('#project-state')) === 'EXECUTING', 'the second tab does not show EXECUTING');
  await runEnds(other, 2);
  await runEnds(mainPage, 2);
  const a = await seqs(mainPage);
  const b = await seqs(other);
  check(JSON.stringify(a) === JSON.stringify(b), `the tabs differ: ${a} / ${b}`);
  assertContiguous(a, 'the first tab');
  await other.close();
});

scenario('Stop ends a long run; New session resets the conversation', async () => {
  await send(mainPage, 'mock:hang');
  await mainPage.waitForFunction(() => document.querySelector('#project-state')?.textContent === 'EXECUTING', null, { timeout: WAIT });
  // A second prompt waits in the queue, and says so.
  await send(mainPage, 'mock:success queued one');
  await mainPage.waitForFunction(() => document.querySelector('#project-queue').textContent === '1 queued'
    && document.querySelectorAll('.rec-prompt').length === 4, null, { timeout: WAIT });
  const queued = await mainPage.evaluate(() => [...document.querySelectorAll('.rec-prompt .queued')].map((q) => q.checkVisibility()));
  check(queued.at(-1) && !queued.slice(0, -1).some(Boolean), `prompts marked queued: ${queued}`);
  await mainPage.check('#clear-queue');
  await mainPage.click('#stop');
  // Both end killed: the active run, and the queued one cleared with it.
  await runEnds(mainPage, 4);
  const statuses = await mainPage.evaluate(() => [...document.querySelectorAll('.rec-run_finished .badge')].slice(-2).map((b) => b.textContent));
  check(statuses.join() === 'killed,killed', `the stopped runs ended ${statuses}`);
  await mainPage.waitForFunction(() => document.querySelector('#project-state')?.textContent === 'IDLE', null, { timeout: WAIT });
  // Stop with nothing running shows the daemon's sentence.
  await mainPage.click('#stop');
  await mainPage.waitForFunction(() => /no active run|nothing/i.test(document.querySelector('#composer-error').textContent), null, { timeout: WAIT });
  // New session: the reset is shown, and the next run starts a fresh conversation.
  await mainPage.click('#new-session');
  await mainPage.waitForSelector('.rec-session_reset:not([hidden])', { timeout: WAIT });
});

scenario('hostile lines render inert', async () => {
  const hostile = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
    + '[click](javascript:window.__pwned=3) [safe](https://example.com/docs) **bold** `code`';
  await send(mainPage, `mock:echo text=${encodeURIComponent(hostile)}`);
  await runEnds(mainPage, 5);
  const r = await mainPage.evaluate(() => ({
    pwned: window.__pwned,
    elements: document.querySelectorAll('#records img, #records script, #records iframe').length,
    jsLinks: [...document.querySelectorAll('#records a')].filter((a) => !/^https?:/.test(a.href)).length,
    safe: [...document.querySelectorAll('#records a')].map((a) => a.href),
    text: document.querySelector('#records').textContent,
    bold: document.querySelectorAll('.rec-agent_message strong').length,
  }));
  check(r.pwned === undefined, 'agent output ran as script');
  check(r.elements === 0, 'agent output became elements');
  check(r.jsLinks === 0, 'a non-http link was made');
  check(r.safe.includes('https://example.com/docs'), `the https link is missing: ${r.safe}`);
  check(r.bold >= 1, 'Markdown emphasis is not rendered');
  // Shown as text: in the reply, the tool line, the raw line and stderr.
  const shown = r.text.split('<img src=x onerror="window.__pwned=1">').length - 1;
  check(shown >= 4, `the hostile text is shown ${shown} times, not as text everywhere`);
  await mainPage.screenshot({ path: `${SHOTS}/console-untrusted.png` });
});

scenario('the daemon restarted under an open page: it reconnects and shows the next run, no line lost or repeated', async () => {
  const before = await seqs(mainPage);
  await daemon.stop();
  await mainPage.waitForSelector('#conn[data-state="reconnecting"]', { timeout: WAIT });
  check(/reconnecting in \d+ s/.test(await mainPage.textContent('#conn')), 'no reconnect countdown');
  // While the page waits out its backoff, the daemon comes back and another client runs the
  // agent: the page must show that run too once it is back, then the next one live.
  await sleep(3000);
  await daemon.start();
  const other = await openConsole(daemon, `#/p/${projectId}`);
  await send(other, 'mock:success');
  await runEnds(other, 6);
  await other.close();
  const away = await mainPage.evaluate(() => document.querySelector('#conn').dataset.state !== 'live');
  console.log(`  (the page was ${away ? 'still away' : 'already back'} when the other client's run ended)`);
  await live(mainPage);
  await runEnds(mainPage, 6);
  await send(mainPage, 'mock:success');
  await runEnds(mainPage, 7);
  const after = await seqs(mainPage);
  check(after.length > before.length, 'nothing new after the restart');
  check(JSON.stringify(after.slice(0, before.length)) === JSON.stringify(before), 'the records before the restart changed');
  assertContiguous(after, 'across the restart');
});

scenario('the phone viewport has no horizontal scroll and keeps the prompt box reachable', async () => {
  const phone = await openConsole(daemon, '', { width: 390, height: 844 });
  await phone.waitForSelector('.project', { timeout: WAIT });
  const listWidth = await phone.evaluate(() => document.documentElement.scrollWidth);
  check(listWidth <= 390, `the project list is ${listWidth}px wide`);
  await phone.screenshot({ path: `${SHOTS}/console-phone-projects.png` });
  await phone.click('.project');
  await phone.waitForSelector('.rec-run_finished', { timeout: WAIT });
  const m = await phone.evaluate(() => {
    const box = document.querySelector('#prompt').getBoundingClientRect();
    return { width: document.documentElement.scrollWidth, body: document.body.scrollWidth, bottom: box.bottom, top: box.top };
  });
  check(m.width <= 390 && m.body <= 390, `the conversation is ${m.width}px wide`);
  check(m.top >= 0 && m.bottom <= 844, `the prompt box is off screen (${m.top}..${m.bottom})`);
  await phone.click('.tool summary');
  check((await phone.evaluate(() => document.documentElement.scrollWidth)) <= 390, 'an open tool call scrolls sideways');
  await phone.screenshot({ path: `${SHOTS}/console-phone.png` });
  // Back to the list, by keyboard.
  await phone.focus('#back');
  await phone.keyboard.press('Enter');
  await phone.waitForSelector('#projects-pane', { state: 'visible', timeout: WAIT });
  await phone.close();
});

scenario('a Codex project renders its output; delete asks for a confirmation; errors show the daemon\'s sentence', async () => {
  const page = await openConsole(daemon);
  await page.fill('#create-path', '/nonexistent/place');
  await page.click('#create-form button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#create-error').textContent.length > 0, null, { timeout: WAIT });
  const doomed = await createProject(page, 'doomed', 'codex');
  check(await page.isVisible('#sandbox-label'), 'a Codex project offers no sandbox option');
  // Codex's output is rendered too: its command as a tool line, its reply as text.
  await page.selectOption('#opt-sandbox', 'read-only');
  await send(page, 'mock:tool');
  check((await runEnds(page, 1)) === 'completed', 'the Codex run did not complete');
  check((await page.textContent('.tool .tool-name')) === 'shell', 'no shell tool line for Codex');
  check((await page.textContent('.tool .tool-arg')).includes('touch made-by-tool.txt'), 'the Codex tool line lacks its command');
  check((await page.textContent('.tool .result pre')).includes('hello-from-tool'), 'the Codex command output is missing');
  check((await page.textContent('.agent-text')).includes('tool-result:'), 'the Codex reply is missing');
  check((await page.textContent('.rec-prompt')).includes('sandbox: read-only'), 'the sandbox option was not sent');
  await page.click('#delete-project');
  await page.waitForSelector('#confirm-dialog[open]', { timeout: WAIT });
  await page.click('#confirm-cancel');
  check(await page.isVisible(`[data-project="${doomed}"]`), 'cancel deleted the project');
  await page.click('#delete-project');
  await page.click('#confirm-form button[type="submit"]');
  await page.waitForSelector(`[data-project="${doomed}"]`, { state: 'detached', timeout: WAIT });
  await page.close();
});

scenario('history of 100 000 records opens at once and pages up without freezing', async () => {
  const page = await openConsole(daemon);
  const big = await createProject(page, 'big');
  // Run it from a socket of its own while the page shows no project, then open it.
  await page.evaluate(() => { location.hash = ''; });
  // The run's 100 000 lines go out live to the client that ran it: the CLI client reads them as
  // fast as they come (a page's socket may fall behind and be closed as a slow client, rightly).
  execFileSync(BIN, ['run', '--json', big, 'mock:lines count=100000 bytes=80'], {
    env: { ...process.env, AGENTVISOR_URL: `ws://127.0.0.1:${daemon.port}/ws` },
    stdio: ['ignore', 'ignore', 'inherit'], timeout: 120000, maxBuffer: 1 << 20,
  });
  const t0 = Date.now();
  await page.evaluate((id) => { location.hash = `#/p/${id}`; }, big);
  await page.waitForSelector('.rec-run_finished', { timeout: WAIT });
  const opened = Date.now() - t0;
  const first = await seqs(page);
  check(first.length <= 400, `${first.length} records rendered at once`);
  check(await page.isVisible('#load-older'), 'no way to load earlier records');
  // Scroll up: earlier pages arrive, in order, with no gap.
  // Each poll scrolls back to the top while nothing new has come: a scroll that lands while a
  // page is still loading is spent on that page, as it is for a person, who scrolls again.
  for (let i = 0; i < 3; i++) {
    const n = (await seqs(page)).length;
    await page.waitForFunction((n) => {
      if (document.querySelectorAll('#records [data-seq]').length > n) return true;
      document.querySelector('#log').scrollTop = 0;
      return false;
    }, n, { timeout: WAIT, polling: 250 });
  }
  const paged = await seqs(page);
  check(paged.length > first.length && paged[0] < first[0], 'scrolling up loaded nothing');
  assertContiguous(paged, 'paged history');
  const t1 = Date.now();
  await page.evaluate(() => 1);
  check(Date.now() - t1 < 2000, 'the page is unresponsive');
  console.log(`  (opened ${paged.at(-1)} records' project in ${opened} ms)`);
  await page.close();
});

scenario('health shows actors and agents; Reset brings back an errored actor', async () => {
  const page = await openConsole(daemon);
  const p = await createProject(page, 'fragile');
  // Crash the project's actor past the restart limit (2 with AGENTVISOR_RESTART_LIMIT=1).
  // While it restarts, an injection is refused; once errored, it is refused for good.
  for (let i = 0; i < 50; i++) {
    const r = await wsCall(page, { type: 'fault_inject', project_id: p, data: { actor: 'project' } });
    if (r.type === 'error' && /crashed too often/.test(r.data.error)) break;
    await sleep(200);
  }
  await page.click('#health-btn');
  await page.waitForSelector(`[data-reset="${p}"]`, { timeout: WAIT });
  check((await page.textContent('#health-body')).includes('broadcast'), 'no broadcast actor listed');
  check(/claude: .*mock|claude: /.test(await page.textContent('#health-body')), 'no agent CLIs listed');
  await page.screenshot({ path: `${SHOTS}/console-health.png` });
  await page.click(`[data-reset="${p}"]`);
  await page.waitForSelector(`[data-reset="${p}"]`, { state: 'detached', timeout: WAIT });
  await page.keyboard.press('Escape');
  await page.close();
});

scenario('a permission request is a panel with Allow / Allow for this session / Deny; Allow lets the tool run', async () => {
  const page = await openConsole(daemon);
  await createProject(page, 'asks');
  await page.check('#opt-approvals');
  await send(page, 'mock:ask');
  await page.waitForSelector('.perm.pending', { timeout: WAIT });
  check((await page.textContent('.perm.pending .perm-summary')) === 'Run: echo approved', 'the panel lacks the command');
  check((await page.textContent('#pending-perms')).includes('1 request waits'), 'the header does not say a request waits');
  check((await page.locator('.perm.pending .perm-btn').count()) === 3, 'the panel lacks its three answers');
  await page.screenshot({ path: `${SHOTS}/console-approval.png` });
  await page.click('.perm.pending .perm-btn[data-decision="allow"]:not([data-remember])');
  check((await runEnds(page, 1)) === 'completed', 'the run did not complete');
  await page.waitForSelector('.perm.perm-allow', { timeout: WAIT });
  check((await page.textContent('.perm .perm-outcome')).startsWith('Allowed'), 'the panel does not say it was allowed');
  check(await page.isHidden('#pending-perms'), 'the header still says a request waits');
  await page.click('.tool summary');
  check((await page.textContent('.tool .result pre')) === 'approved', 'the allowed tool did not run');
  await page.close();
});

scenario('a run in a git repository shows what it changed and its diff', async () => {
  const dir = path.join(root, 'repo');
  fs.mkdirSync(dir, { recursive: true });
  const git = (...args) => execFileSync('git', args, { cwd: dir, env: { ...process.env,
    GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } });
  git('init', '-q');
  fs.writeFileSync(path.join(dir, 'edit.txt'), 'first\n');
  fs.writeFileSync(path.join(dir, 'remove.txt'), 'gone\n');
  git('add', '-A');
  git('commit', '-q', '-m', 'start');
  const page = await openConsole(daemon);
  await createProject(page, 'repo');
  await send(page, 'mock:edit');
  check((await runEnds(page, 1)) === 'completed', 'the run did not complete');
  check((await page.textContent('.rec-run_finished .changes')).includes('3 files changed, +2 −1'), 'the run end lacks its changes');
  await page.click('.diff-btn');
  await page.waitForSelector('.diff-view', { timeout: WAIT });
  const diff = await page.textContent('.diff-view');
  check(diff.includes('+a line the agent added') && diff.includes('added.txt') && diff.includes('-gone'), `the diff is wrong: ${diff}`);
  check((await page.locator('.diff-view .diff-add').count()) >= 2, 'added lines are not marked');
  await page.click('.diff-btn');
  check((await page.locator('.diff-view').count()) === 0, 'the diff did not close');
  await page.close();
});

scenario('a token-protected daemon asks for the token and keeps it for the tab only', async () => {
  const guarded = await startDaemon('token', { AGENTVISOR_TOKEN: TOKEN });
  try {
    const page = await newPage();
    await page.goto(guarded.url());
    await page.waitForSelector('#token-dialog[open]', { timeout: WAIT });
    await page.screenshot({ path: `${SHOTS}/console-token.png` });
    await page.fill('#token-input', 'not-the-token-at-all');
    await page.press('#token-input', 'Enter');
    await page.waitForFunction(() => document.querySelector('#token-dialog').open
      && /did not accept/.test(document.querySelector('#token-error').textContent), null, { timeout: WAIT });
    await page.fill('#token-input', TOKEN);
    await page.press('#token-input', 'Enter');
    await live(page);
    const kept = await page.evaluate(() => ({ session: sessionStorage.getItem('agentvisor.token'), local: localStorage.length, url: location.href }));
    check(kept.session === TOKEN && kept.local === 0 && !kept.url.includes(TOKEN), `token kept wrongly: ${JSON.stringify(kept)}`);
    await createProject(page, 'guarded');
    await page.close();
  } finally {
    await guarded.stop();
  }
});

// --- run ----------------------------------------------------------------------------------------

let profiles = 0;

/** Starts Chromium with a fresh profile. */
scenario('a consult shows its question, why it was asked again, its sections and the review\'s issues by severity', async () => {
  const page = await openConsole(daemon);
  const id = await createProject(page, 'consulted');
  const question = 'Review the parser change mock:consult answer=incomplete';
  const r = await wsCall(page, { type: 'consult', project_id: id, data: { to: 'codex', kind: 'review', question } }, 'consult_result');
  check(r.data.status === 'complete', `the consult ended ${r.data.status}`);
  await page.waitForSelector('.rec-consult_result:not([hidden])', { timeout: WAIT });
  const asked = await page.textContent('.rec-consult_started');
  check(asked.includes(question) && asked.includes('codex · review'), `the question is not shown: ${asked}`);
  check((await page.textContent('.rec-consult_attempt:not([hidden])')).includes('sections were missing'), 'the follow-up is not shown');
  const issues = await page.$$eval('.consult-issues li', (els) => els.map((e) => e.textContent));
  check(issues.length === 2 && issues[0].startsWith('Critical') && issues[1].startsWith('Minor'), `issues: ${issues.join(' | ')}`);
  const names = await page.$$eval('.consult-result .section-name', (els) => els.map((e) => e.textContent));
  for (const n of ['STRENGTHS', 'ISSUES', 'SUGGESTIONS']) check(names.includes(n), `section ${n} missing: ${names.join(', ')}`);
  check((await page.$$('.rec-consult_output:not([hidden])')).length === 0, 'the consultant\'s raw lines are shown');
  await page.screenshot({ path: path.join(SHOTS, 'consult.png') });
  await page.close();
});

async function launch() {
  profiles += 1;
  context = await chromium.launchPersistentContext(path.join(tmp, `chromium-profile-${profiles}`), {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const mine = context;
  mine.on('close', () => {
    if (context === mine) context = null;
  });
}

/** One scenario's limit: a hang fails that scenario (and restarts the browser), not the suite. */
const SCENARIO_MS = 150000;

function inTime(work, ms) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const stuck = context;
      context = null;
      stuck?.close().catch(() => {});
      reject(new Error(`still running after ${ms / 1000} s`));
    }, ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

let passed = 0;
let failed = 0;
try {
  daemon = await startDaemon('main', { AGENTVISOR_FAULT_INJECTION: '1', AGENTVISOR_RESTART_LIMIT: '1' });
  for (const s of scenarios) {
    // A browser that died in one scenario (it says so there) is started afresh for the next.
    if (!context) await launch();
    problems.length = 0;
    try {
      await inTime(s.fn(), SCENARIO_MS);
      if (problems.length) throw new Error(problems.join('; '));
      console.log(`PASS: ${s.name}`);
      passed++;
    } catch (e) {
      console.log(`FAIL: ${s.name}: ${e.message.split('\n')[0]}`);
      failed++;
    }
  }
} finally {
  await context?.close();
  await daemon?.stop().catch(() => {});
  if (!failed && !process.env.KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  else console.log(`kept ${tmp}`);
}
console.log(`console: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
