/**
 * The hub's page and API against the real thing: a `lockstep hub --http`
 * process, `lockstep node` processes with simulated clocks syncing to it over
 * NTP, a real Mosquitto, and a real headless Chromium (one launch for the
 * file). The API is also tested without a browser.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { MeshHub } from '../../src/mesh/hub.js';
import { Topics } from '../../src/mesh/topics.js';
import { encodeMessage, type StateMessage } from '../../src/mesh/messages.js';
import { realClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { startDashboard } from '../../src/cli/mesh/dashboard.js';
import { OFFLINE_AFTER_PERIODS, DEFAULT_NODE_STATE_PERIOD_MS } from '../../src/mesh/board.js';
import { PUSH_PERIOD_MS } from '../../src/mesh/dashboard.js';
import { freeTcpPort, freeUdpPort } from '../support/ports.js';
import { CLI_PATH, runCli } from '../support/cli.js';
import { track, untrack, waitFor } from '../support/processes.js';
import { findChromium, launchBrowser, type TestBrowser } from '../support/browser.js';

const TOKEN = 'test-token-0123456789abcdef';
const HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
const NODES = ['n1', 'n2', 'n3'];

interface NodeJson {
  id: string;
  online: boolean;
  synchronized: boolean;
  ready: boolean;
  offlineWhy?: string;
  hubOffsetNs?: number;
  version?: string;
  versionMismatch: boolean;
  warnings: string[];
  lastTrigger?: { triggerId: string; fires: number; expectedFires?: number; ack?: string };
}

describe('mesh: the hub page and its API (hub --http, node processes, mosquitto, headless Chromium)', function () {
  this.timeout(60_000);
  const broker = new PrivateBroker();
  const group = `dash${process.pid}`;
  const topics = new Topics(group);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-dashboard-test-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  let hub: ChildProcess;
  let hubLog = '';
  let base = '';
  const nodes = new Map<string, ChildProcess>();
  let watcher: MqttSession;
  let browser: TestBrowser | undefined;
  let page: Page | undefined;
  const chromiumPath = findChromium();

  const api = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(base + path, init);
    const text = await res.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body };
  };
  const post = (path: string, body: unknown, headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}` }) =>
    api(path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const nodesNow = async () => (await api('/api/nodes')).body.nodes as NodeJson[];

  function startNode(id: string, offsetSeconds: number, driftPpm: number, ntpPort: number): void {
    const child = spawn(
      process.execPath,
      // --state-period 1s: the offline tests below count missed periods of 1 s (nodes default to a 5 s heartbeat).
      [CLI_PATH, 'node', '--id', id, '--broker', broker.url, '--group', group, '--ntp', `127.0.0.1:${ntpPort}`, '--min-poll', '1', '--max-poll', '2', '--state-period', '1s',
        '--driver', 'sim', `--sim-offset=${offsetSeconds}`, `--sim-drift=${driftPpm}`, '--state-file', join(dir, `${id}.json`), '--exit-with-stdin', '--quiet'],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    track(child.pid!);
    nodes.set(id, child);
  }

  async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 4000);
    await exited;
    clearTimeout(timer);
    untrack(child.pid!);
  }

  before(async function () {
    this.timeout(90_000);
    const { pid } = await broker.start();
    track(pid);
    const [httpPort, ntpPort] = await Promise.all([freeTcpPort(), freeUdpPort()]);
    base = `http://127.0.0.1:${httpPort}`;
    hub = spawn(
      process.execPath,
      [CLI_PATH, 'hub', '--http', `127.0.0.1:${httpPort}`, '--http-token-file', tokenFile, '--ntp-port', String(ntpPort), '--ntp-bind', '127.0.0.1',
        '--system-error', '50us', '--broker', broker.url, '--group', group, '--ready-within', '5ms'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    track(hub.pid!);
    hub.stderr!.on('data', (d: Buffer) => (hubLog += d.toString()));
    await waitFor(() => /page on http/.test(hubLog), 15_000, `the hub's page (hub said: ${hubLog})`);
    startNode('n1', 0.5, 40, ntpPort);
    startNode('n2', -0.5, -40, ntpPort);
    startNode('n3', 2, 80, ntpPort);
    // A stranger's retained state: markup everywhere text goes, an old timestamp (so: offline by the period rule).
    watcher = new MqttSession({ url: broker.url, clientId: `dash-test-${process.pid}` });
    await watcher.waitConnected(10_000);
    const evil: StateMessage = {
      v: 1, type: 'state', node: 'evil', status: 'online', seq: 1, updatedNs: realClock().nowNs() - 60_000_000_000n, synchronized: true,
      errorBoundNs: 1000, version: HOSTILE, warnings: [HOSTILE], rejections: { '<b>x</b>': 1 },
      sources: [{ address: '<i>host</i>', reach: 255, state: 'selected', delayNs: 1, offsetNs: 1, jitterNs: 1, lastError: HOSTILE }],
    };
    await watcher.publish(topics.node('evil', 'state'), encodeMessage(evil), { qos: 1, retain: true });
    await watcher.subscribe([topics.trigger, topics.allNodes('trigger')]);
    await waitFor(async () => {
      const list = await nodesNow().catch(() => []);
      return NODES.every((id) => list.find((n) => n.id === id)?.ready);
    }, 40_000, 'every node online, synchronized and within the gate');
    if (chromiumPath) {
      browser = await launchBrowser(chromiumPath);
      // bypassCSP: the test's polling needs eval, and the hostile-text test then proves the page safe without its CSP.
      page = await browser.browser.newPage({ viewport: { width: 1400, height: 1200 }, bypassCSP: true });
      await page.goto(base + '/');
    }
  });

  after(async () => {
    await browser?.close();
    await watcher?.publish(topics.node('evil', 'state'), '', { qos: 1, retain: true }).catch(() => undefined);
    await watcher?.close(true).catch(() => undefined);
    await Promise.all([...nodes.values()].map((c) => stop(c)));
    if (hub) await stop(hub);
    await broker.dispose();
    untrack(broker.pid ?? 0);
    rmSync(dir, { recursive: true, force: true });
  });

  function needBrowser(ctx: Mocha.Context): Page {
    if (!page) ctx.skip(); // .ci/ensure-deps installs chromium-headless-shell; LOCKSTEP_CHROMIUM=PATH for another
    return page!;
  }

  it('GET /api/nodes: every node with presence, clock, offset to the hub, version; the header counts them', async () => {
    const { status, body } = await api('/api/nodes');
    expect(status).to.equal(200);
    const list = body.nodes as NodeJson[];
    expect(list.map((n) => n.id)).to.include.members([...NODES, 'evil']);
    for (const id of NODES) {
      const n = list.find((x) => x.id === id)!;
      expect(n.online && n.synchronized, id).to.equal(true);
      expect(n.hubOffsetNs, `${id} offset to the hub`).to.be.a('number');
      expect(Math.abs(n.hubOffsetNs!)).to.be.below(5_000_000);
      expect(n.versionMismatch).to.equal(false);
    }
    const evil = list.find((x) => x.id === 'evil')!;
    expect(evil.online, 'a state 60 s old is offline').to.equal(false);
    expect(evil.offlineWhy).to.match(/no state for/);
    expect(evil.versionMismatch).to.equal(true);
    type Header = { counts: { online: number; ready: number }; broker: { connected: boolean }; hub: { stratum?: number } };
    let header = body.header as Header;
    expect(header.counts.online).to.equal(3);
    // "ready" is each node's bound against the gate right now: one fresh process's bound can be out for a
    // moment (a clean-clone run sampled 2 of 3 once), so the count must reach 3 again, not be 3 at one sample.
    await waitFor(async () => {
      header = (await api('/api/nodes')).body.header as Header;
      return header.counts.ready === 3;
    }, 10_000, 'the header counting 3 nodes within the gate');
    expect(header.broker.connected).to.equal(true);
    expect(header.hub.stratum).to.be.a('number');
    expect(body.control).to.equal(true);
  });

  it('bad requests get a clear 4xx JSON error, and the hub keeps serving', async () => {
    const cases: [Promise<{ status: number; body: Record<string, unknown> }>, number, RegExp][] = [
      [api('/api/nope'), 404, /no API/],
      [api('/api/trigger'), 405, /POST/],
      [api('/api/nodes', { method: 'POST' }), 405, /GET/],
      [api('/api/trigger', { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'text/plain' }, body: '{}' }), 415, /application\/json/],
      [api('/api/trigger', { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: '{nope' }), 400, /not JSON/],
      [api('/api/trigger', { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: 'x'.repeat(20_000) }), 413, /bytes/],
      [post('/api/trigger', { action: { kind: 'command', argv: ['rm', '-rf', '/'] } }), 400, /not accepted/],
      [post('/api/trigger', { action: { kind: 'blink', line: 17, onNs: 1e8, periodNs: 5e7, count: 1 } }), 400, /.+/],
      [post('/api/trigger', { action: { kind: 'capture' }, nodes: ['ghost'] }), 400, /not online/],
      [post('/api/trigger', { action: { kind: 'capture' }, readyWithin: 'soon' }), 400, /readyWithin/],
      [post('/api/cancel', { id: 'p-none' }), 404, /no trigger/],
      [api('/api/triggers/p-none'), 404, /no trigger/],
      [post('/api/identify', { node: '../etc' }), 400, /node id/],
    ];
    for (const [request, status, message] of cases) {
      const { status: got, body } = await request;
      expect(got, JSON.stringify(body)).to.equal(status);
      expect(body.error).to.be.a('string');
      expect(String(body.message)).to.match(message);
    }
    expect((await api('/api/nodes')).status).to.equal(200);
  });

  it('a POST without the token (or with a wrong one) gets 401 and fires nothing', async () => {
    const published: string[] = [];
    const off = watcher.onMessage((topic) => published.push(topic));
    const action = { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: 200_000_000, count: 1 };
    const before = ((await api('/api/triggers')).body.triggers as unknown[]).length;
    const none = await post('/api/trigger', { action }, {});
    const wrong = await post('/api/trigger', { action }, { Authorization: 'Bearer wrong-token-wrong-token' });
    const header = await post('/api/identify', { node: 'n1' }, { 'X-Lockstep-Token': 'nope' });
    expect([none.status, wrong.status, header.status]).to.deep.equal([401, 401, 401]);
    await new Promise((r) => setTimeout(r, 1000));
    off();
    expect(published, 'no trigger reached the broker').to.deep.equal([]);
    expect(((await api('/api/triggers')).body.triggers as unknown[]).length).to.equal(before);
  });

  it('lockstep hub refuses a bad --http address or a weak token file (message, exit 2)', async () => {
    const weak = join(dir, 'weak');
    writeFileSync(weak, 'short\n');
    const [address, token] = await Promise.all([
      runCli(['hub', '--no-ntp', '--http', 'nonsense', '--broker', broker.url]),
      runCli(['hub', '--no-ntp', '--http', '127.0.0.1:0', '--http-token-file', weak, '--broker', broker.url]),
    ]);
    expect([address.code, token.code]).to.deep.equal([2, 2]);
    expect(address.stderr).to.match(/--http 'nonsense' must be HOST:PORT/);
    expect(token.stderr).to.match(/at least 16 characters/);
  });

  it('a read-only hub (no token file) refuses every POST with 403 and says how to allow it', async () => {
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
    const ro = new MeshHub({ topics, mqtt: { url: broker.url, clientId: `dash-ro-${process.pid}` }, timescale, watchTriggers: true });
    await ro.session.waitConnected(10_000);
    await ro.start();
    const dash = await startDashboard({ hub: ro, timescale, brokerUrl: broker.url, gateThresholdNs: 1_000_000, host: '127.0.0.1', port: 0 });
    try {
      const res = await fetch(`${dash.url}api/trigger`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` }, body: '{"action":{"kind":"capture"}}' });
      expect(res.status).to.equal(403);
      expect(((await res.json()) as { message: string }).message).to.match(/--http-token-file/);
      const snapshot = (await (await fetch(`${dash.url}api/nodes`)).json()) as { control: boolean; nodes: unknown[] };
      expect(snapshot.control).to.equal(false);
      expect(snapshot.nodes.length).to.be.at.least(3);
    } finally {
      await dash.stop();
      await ro.stop();
    }
  });

  it('POST /api/trigger then /api/cancel: a running train turns pending → cancelled on every node', async () => {
    const started = await post('/api/trigger', { action: { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: 200_000_000, count: 40 }, in: '700ms' });
    expect(started.status, JSON.stringify(started.body)).to.equal(202);
    const id = started.body.id as string;
    await waitFor(async () => (await api(`/api/triggers/${id}`)).body.status === 'pending', 10_000, 'pending');
    await waitFor(async () => ((await api(`/api/triggers/${id}`)).body.acked as number) === 3, 10_000, 'all acks');
    const cancelled = await post('/api/cancel', { id });
    expect(cancelled.status, JSON.stringify(cancelled.body)).to.equal(200);
    expect(cancelled.body.status).to.equal('cancelled');
    const answers = cancelled.body.cancelAnswers as { node: string; status: string }[];
    expect(answers.filter((a) => a.status === 'cancelled').map((a) => a.node).sort()).to.deep.equal(NODES);
  });

  it('POST /api/identify blinks one node a few times (the others get nothing)', async () => {
    const started = await post('/api/identify', { node: 'n1', line: 17 });
    expect(started.status, JSON.stringify(started.body)).to.equal(202);
    expect(started.body.nodes).to.deep.equal(['n1']);
    const id = started.body.id as string;
    await waitFor(async () => ((await api(`/api/triggers/${id}`)).body.acked as number) === 1, 10_000, 'the ack of n1');
    const detail = (await api(`/api/triggers/${id}`)).body as { kind: string; targets: string[]; rows: { node: string; expectedFires: number }[] };
    expect(detail.kind).to.equal('identify');
    expect(detail.rows.map((r) => [r.node, r.expectedFires])).to.deep.equal([['n1', 6]]);
  });

  it('the page lists every node with its state (online, synchronized; the stale stranger offline)', async function () {
    const p = needBrowser(this);
    await p.waitForFunction(`document.querySelectorAll('#nodes tbody tr[data-node]').length >= ${NODES.length + 1}`, undefined, { timeout: 10_000 });
    for (const id of NODES) {
      const row = p.locator(`#nodes tr[data-node="${id}"]`);
      await expect(await row.locator('td.status').textContent()).to.match(/^online/);
      expect(await row.locator('td.sync').textContent()).to.equal('yes');
      expect(await row.locator('td.offset').textContent()).to.match(/[µn]s|ms/);
    }
    expect(await p.locator('#nodes tr[data-node="evil"] td.status').textContent()).to.match(/offline/);
    expect(await p.locator('#summary').textContent()).to.match(/online3 \/ 4/);
  });

  it('hostile node fields (version, warnings, NTP source) are shown as text, never as HTML', async function () {
    const p = needBrowser(this);
    const row = p.locator('#nodes tr[data-node="evil"]');
    expect(await row.locator('td.warnings').textContent()).to.contain('<img src=x onerror=');
    expect(await row.textContent()).to.contain('<i>host</i>');
    // Page code as strings: this suite compiles without the DOM's types.
    const injected = await p.evaluate(`({ elements: document.querySelectorAll('#nodes img, #nodes script, #nodes i, #nodes b').length, pwned: window.__pwned ?? null })`);
    expect(injected).to.deep.equal({ elements: 0, pwned: null });
  });

  it("the offset chart has drawn each node's offset (coloured pixels on its canvas, not only a DOM node)", async function () {
    const p = needBrowser(this);
    const count = () =>
      p.evaluate<number>(`(() => {
        const canvas = document.querySelector('#offsets-chart canvas');
        if (!canvas) return 0;
        const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        let n = 0;
        // Axes, grid and labels are grey or black: a saturated pixel is a series line.
        for (let i = 0; i < data.length; i += 4) {
          const r = data[i], g = data[i + 1], b = data[i + 2], a = data[i + 3];
          if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 80) n++;
        }
        return n;
      })()`);
    await waitFor(async () => (await count()) > 200, 10_000, 'series pixels on the offset chart');
  });

  it('a trigger fired from the page fires every node, and its result stays on the page', async function () {
    const p = needBrowser(this);
    await p.fill('#f-token', TOKEN);
    await p.fill('#f-count', '1');
    await p.fill('#f-on', '50ms');
    await p.fill('#f-every', '200ms');
    await p.click('#f-fire');
    await p.waitForFunction(`document.querySelector('#triggers li .badge')?.textContent === 'fired'`, undefined, { timeout: 20_000 });
    expect(await p.locator('#triggers li').first().textContent()).to.match(/fired 3\/3/);
    expect(await p.locator('#fire-error').textContent()).to.equal('');
    const id = await p.locator('#triggers li').first().getAttribute('data-trigger');
    const detail = (await api(`/api/triggers/${id}`)).body as { status: string; rows: { node: string; fires: number; expectedFires: number }[] };
    expect(detail.status).to.equal('fired');
    expect(detail.rows.map((r) => [r.node, r.fires, r.expectedFires])).to.deep.equal(NODES.map((n) => [n, 1, 1]));
    for (const id of NODES) {
      await p.waitForFunction(`/fired 1\\/1/.test(document.querySelector('#nodes tr[data-node="${id}"] td.last-trigger')?.textContent ?? '')`, undefined, { timeout: 5_000 });
    }
    await p.waitForSelector('#spread-chart canvas', { timeout: 5_000 });
  });

  const offlineBoundMs = OFFLINE_AFTER_PERIODS * DEFAULT_NODE_STATE_PERIOD_MS + PUSH_PERIOD_MS;
  // The last state may have left just before the stop: up to one period more; the rest is slack for a loaded machine.
  const offlineSlackMs = DEFAULT_NODE_STATE_PERIOD_MS + 2_000;
  const statusOf = (p: Page, id: string) => p.locator(`#nodes tr[data-node="${id}"] td.status`).textContent();

  it(`a node that goes silent (SIGSTOP: a hang, a lost Wi-Fi) turns offline after ${OFFLINE_AFTER_PERIODS} missed state periods, then back online`, async function () {
    const p = needBrowser(this);
    const child = nodes.get('n2')!;
    const stoppedAt = Date.now();
    child.kill('SIGSTOP');
    try {
      // Its TCP connection stays open: the broker would send the will only after 1.5 × the 10 s keep-alive.
      await p.waitForFunction(`/offline/.test(document.querySelector('#nodes tr[data-node="n2"] td.status')?.textContent ?? '')`, undefined, { timeout: offlineBoundMs + offlineSlackMs + 3_000 });
      expect(Date.now() - stoppedAt).to.be.below(offlineBoundMs + offlineSlackMs);
      expect(await statusOf(p, 'n2')).to.match(/no state for \d+\.\d s \(3 × 1000 ms\)/);
    } finally {
      child.kill('SIGCONT');
    }
    await p.waitForFunction(`/^online/.test(document.querySelector('#nodes tr[data-node="n2"] td.status')?.textContent ?? '')`, undefined, { timeout: 10_000 });
  });

  it('a node killed with SIGKILL turns offline within the same bound (here its last will comes at once: the kernel closes its socket)', async function () {
    const p = needBrowser(this);
    const killedAt = Date.now();
    await stop(nodes.get('n3')!, 'SIGKILL');
    await p.waitForFunction(`/offline/.test(document.querySelector('#nodes tr[data-node="n3"] td.status')?.textContent ?? '')`, undefined, { timeout: offlineBoundMs + offlineSlackMs + 3_000 });
    expect(Date.now() - killedAt).to.be.below(offlineBoundMs + offlineSlackMs);
    expect(await statusOf(p, 'n3')).to.match(/last will|no state for/);
    expect((await nodesNow()).find((n) => n.id === 'n3')!.online).to.equal(false);
    // The page keeps refreshing after a node is gone.
    const before = await p.locator('#stream').textContent();
    await p.waitForFunction(`document.querySelector('#stream').textContent !== ${JSON.stringify(before)}`, undefined, { timeout: 5_000 });
  });
});
