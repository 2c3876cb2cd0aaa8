/**
 * The hub's page over node:http: static files (HTML, JS, CSS shipped in the
 * package, uPlot from node_modules), a JSON API the page itself uses, and
 * Server-Sent Events that push the group's state once a second. The browser
 * talks only to this server, never to the nodes or the broker, so thirty
 * open pages cost thirty cheap streams, not thirty polls of every node.
 *
 * State-changing requests are POSTs with a token in a header (never a
 * cookie: another site cannot make the browser send it); without a token the
 * server is read-only. Every bad request gets a 4xx JSON error and the hub
 * keeps running.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { timingSafeEqual, createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { Timescale } from '../time/timescale.js';
import { parseDurationNs, DurationSyntaxError } from '../time/units.js';
import { validateAction } from '../schedule/actions.js';
import type { GroupBoard } from './board.js';
import { PageTriggers, TriggerNotFound, TooManyRunning, NotCancellable, type PageTriggerRequest } from './page-triggers.js';
import { checkId, TopicError } from './topics.js';
import { MAX_TRIGGER_NODES } from './messages.js';

/** Requests are a few hundred bytes; anything much larger is not ours. */
const MAX_BODY_BYTES = 16 * 1024;
/** Open event streams: each costs one snapshot a second; a runaway client must not multiply that. */
const MAX_STREAMS = 64;
/** How often the page is pushed the group's state (and the history gains a point). */
export const PUSH_PERIOD_MS = 1_000;
/** A gate that never opens gives up after this long by default (the page shows who held it up). */
const DEFAULT_READY_TIMEOUT_MS = 10_000;
const MAX_READY_TIMEOUT_MS = 120_000;
/** The page's "identify": a few quick pulses, unmistakable on a headset's LED. */
const IDENTIFY = { onNs: 100_000_000, periodNs: 250_000_000, count: 6 };
/** Action kinds the page may send: `command` runs programs and stays a CLI-only, explicit act. */
const PAGE_KINDS = ['blink', 'capture'] as const;

/** Static files: the ones shipped beside this module, and uPlot from its package. */
const WEB_DIR = (() => {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/src/mesh/web (copied by `npm run build`), else the sources' copy (src/mesh/web).
  for (const dir of [join(here, 'web'), join(here, '..', '..', '..', 'src', 'mesh', 'web')]) if (existsSync(join(dir, 'index.html'))) return dir;
  return join(here, 'web');
})();
const UPLOT_DIR = (() => {
  try {
    return dirname(createRequire(import.meta.url).resolve('uplot'));
  } catch {
    return undefined;
  }
})();

const STATIC: Record<string, { file: () => string | undefined; type: string }> = {
  '/': { file: () => join(WEB_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: () => join(WEB_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: () => join(WEB_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.iife.min.js': { file: () => UPLOT_DIR && join(UPLOT_DIR, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { file: () => UPLOT_DIR && join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** A request the server refuses, with its HTTP status and a reason a person can act on. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface DashboardOptions {
  board: GroupBoard;
  timescale: Timescale;
  /** Present: triggers from the page (needs `token` too). */
  triggers?: PageTriggers;
  /** The secret a POST must carry; undefined: read-only. */
  token?: string;
  host: string;
  port: number;
  /** The gate's default threshold, ns (the page's form starts from it). */
  gateThresholdNs: number;
}

function json(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class DashboardServer {
  private readonly server: Server;
  private readonly streams = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;
  private readonly tokenDigest: Buffer | undefined;
  private readonly staticCache = new Map<string, Buffer>();
  readonly triggers: PageTriggers | undefined;

  constructor(private readonly o: DashboardOptions) {
    this.tokenDigest = o.token ? digest(o.token) : undefined;
    this.triggers = o.token ? o.triggers : undefined;
    this.server = createServer((req, res) => {
      this.route(req, res).catch((error: unknown) => this.fail(res, error));
    });
    // Slow-loris and idle sockets: a page's requests are small and quick.
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 10_000;
  }

  get control(): boolean {
    return this.triggers !== undefined;
  }

  async start(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.o.board.sample();
    this.timer = setInterval(() => this.tick(), PUSH_PERIOD_MS);
    this.timer.unref?.();
    return this.server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const s of this.streams) s.end();
    this.streams.clear();
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** A trigger record changed: its detail goes to every open page at once (no wait for the tick). */
  triggerChanged(id: string): void {
    if (!this.triggers) return;
    let detail;
    try {
      detail = this.triggers.detail(id);
    } catch {
      return;
    }
    this.broadcast('trigger', detail);
  }

  private tick(): void {
    this.o.board.sample();
    if (this.streams.size === 0) return;
    const h = this.o.board.history();
    const last = h.t.length - 1;
    const point = { t: h.t[last], agreementUs: h.agreementUs[last], nodes: Object.fromEntries(Object.entries(h.nodes).map(([id, s]) => [id, s[last]])) };
    this.broadcast('state', { ...this.snapshot(), point });
  }

  private broadcast(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${json(data)}\n\n`;
    for (const s of this.streams) s.write(frame);
  }

  private snapshot(): Record<string, unknown> {
    const nodes = this.o.board.nodes();
    return { header: this.o.board.header(nodes), nodes, triggers: this.triggers?.list() ?? [], control: this.control, gateThresholdNs: this.o.gateThresholdNs };
  }

  // ------------------------------------------------------------ routing

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://hub');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path.startsWith('/api/')) {
      const post = path === '/api/trigger' || path === '/api/cancel' || path === '/api/identify';
      if (post && method !== 'POST') throw new HttpError(405, 'method', `${path} takes POST (with the token in an Authorization: Bearer or X-Lockstep-Token header)`);
      if (!post && method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method', `${path} takes GET`);
      if (post) return this.post(req, res, path);
      if (path === '/api/nodes') return this.send(res, 200, this.snapshot());
      if (path === '/api/history') return this.send(res, 200, this.o.board.history());
      if (path === '/api/events') return this.events(req, res);
      if (path === '/api/triggers') return this.send(res, 200, { triggers: this.triggers?.list() ?? [] });
      const m = /^\/api\/triggers\/([^/]+)$/.exec(path);
      if (m) {
        if (!this.triggers) throw new HttpError(404, 'not-found', 'this hub is read-only: it runs no triggers of its own');
        return this.send(res, 200, this.triggers.detail(decodeURIComponent(m[1]!)));
      }
      throw new HttpError(404, 'not-found', `no API ${path} (see the README: /api/nodes, /api/history, /api/events, /api/triggers/ID, POST /api/trigger, /api/cancel, /api/identify)`);
    }
    const entry = STATIC[path === '/index.html' ? '/' : path];
    if (!entry || (method !== 'GET' && method !== 'HEAD')) throw new HttpError(entry ? 405 : 404, entry ? 'method' : 'not-found', entry ? 'static files take GET' : `no page ${path}`);
    const file = entry.file();
    if (!file) throw new HttpError(500, 'missing', 'uPlot is not installed (npm install: it is a dependency of lockstep)');
    let body = this.staticCache.get(file);
    if (!body) {
      body = await readFile(normalize(file));
      this.staticCache.set(file, body);
    }
    res.writeHead(200, { ...this.securityHeaders(), 'Content-Type': entry.type, 'Content-Length': body.length, 'Cache-Control': 'no-cache' });
    res.end(method === 'HEAD' ? undefined : body);
  }

  private securityHeaders(): Record<string, string> {
    return {
      // Only our own files run: a node id that sneaks markup into the page still cannot load or run a script.
      'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    };
  }

  private send(res: ServerResponse, status: number, body: unknown): void {
    const text = json(body);
    res.writeHead(status, { ...this.securityHeaders(), 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private fail(res: ServerResponse, error: unknown): void {
    const e =
      error instanceof HttpError ? error
      : error instanceof TriggerNotFound ? new HttpError(404, 'not-found', error.message)
      : error instanceof TooManyRunning ? new HttpError(429, 'busy', error.message)
      : error instanceof NotCancellable ? new HttpError(409, 'not-cancellable', error.message)
      : new HttpError(500, 'internal', `internal error: ${(error as Error).message}`);
    if (res.headersSent) {
      res.end();
      return;
    }
    this.send(res, e.status, { error: e.code, message: e.message });
  }

  private events(req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= MAX_STREAMS) throw new HttpError(503, 'busy', `${MAX_STREAMS} pages are already open on this hub`);
    // X-Accel-Buffering: nginx (the README's reverse proxy) passes the stream through instead of holding it.
    res.writeHead(200, { ...this.securityHeaders(), 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    // The browser reconnects by itself after 2 s if the stream drops (a hub restart): the page keeps refreshing.
    res.write(`retry: 2000\nevent: history\ndata: ${json(this.o.board.history())}\n\n`);
    res.write(`event: state\ndata: ${json(this.snapshot())}\n\n`);
    this.streams.add(res);
    req.socket.setTimeout(0);
    const drop = () => this.streams.delete(res);
    req.on('close', drop);
    res.on('error', drop);
  }

  // ------------------------------------------------------------ state-changing requests

  private authorize(req: IncomingMessage): void {
    if (!this.tokenDigest || !this.triggers) {
      throw new HttpError(403, 'read-only', 'this hub is read-only: start it with --http-token-file FILE to fire from the page');
    }
    const auth = req.headers.authorization;
    const given = typeof auth === 'string' && /^Bearer /i.test(auth) ? auth.slice(7).trim() : req.headers['x-lockstep-token'];
    if (typeof given !== 'string' || given === '') throw new HttpError(401, 'unauthorized', 'a token is needed: Authorization: Bearer TOKEN (or X-Lockstep-Token), the content of the hub\'s --http-token-file');
    // Digests compared in constant time: no length or prefix leaks through timing.
    if (!timingSafeEqual(digest(given), this.tokenDigest)) throw new HttpError(401, 'unauthorized', 'wrong token');
  }

  private async body(req: IncomingMessage): Promise<Record<string, unknown>> {
    const type = req.headers['content-type'] ?? '';
    // JSON only: a form post from another site (no preflight) cannot be one.
    if (!/^application\/json\b/i.test(type)) throw new HttpError(415, 'content-type', 'send Content-Type: application/json');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) throw new HttpError(413, 'too-large', `body over ${MAX_BODY_BYTES} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY_BYTES) throw new HttpError(413, 'too-large', `body over ${MAX_BODY_BYTES} bytes`);
      chunks.push(chunk as Buffer);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new HttpError(400, 'bad-json', 'the body is not JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new HttpError(400, 'bad-request', 'the body must be a JSON object');
    return parsed as Record<string, unknown>;
  }

  private async post(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    this.authorize(req);
    const body = await this.body(req);
    const triggers = this.triggers!;
    if (path === '/api/cancel') {
      if (typeof body.id !== 'string' || body.id === '') throw new HttpError(400, 'bad-request', "'id' must name a trigger (the record id or the trigger id)");
      return this.send(res, 200, await triggers.cancel(body.id));
    }
    const request = path === '/api/identify' ? this.identifyRequest(body) : this.triggerRequest(body);
    const summary = triggers.start(request, this.o.timescale.nowNs());
    this.send(res, 202, summary);
  }

  private nodeList(value: unknown): string[] | undefined {
    if (value === undefined || value === null) return undefined;
    if (!Array.isArray(value) || value.length === 0 || value.length > MAX_TRIGGER_NODES) throw new HttpError(400, 'bad-request', `'nodes' must be a non-empty array of at most ${MAX_TRIGGER_NODES} node ids (or absent: every online node)`);
    const known = new Set(this.o.board.onlineIds());
    return value.map((id) => {
      if (typeof id !== 'string') throw new HttpError(400, 'bad-request', "'nodes' must hold strings");
      try {
        checkId('node id', id);
      } catch (error) {
        if (error instanceof TopicError) throw new HttpError(400, 'bad-request', error.message);
        throw error;
      }
      if (!known.has(id)) throw new HttpError(400, 'unknown-node', `node '${id}' is not online in this group`);
      return id;
    });
  }

  private duration(body: Record<string, unknown>, key: string): bigint | undefined {
    const v = body[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new HttpError(400, 'bad-request', `'${key}' must be a duration string such as "1ms" or "2s"`);
    try {
      return parseDurationNs(v);
    } catch (error) {
      if (error instanceof DurationSyntaxError) throw new HttpError(400, 'bad-request', `'${key}': ${error.message}`);
      throw error;
    }
  }

  private gate(body: Record<string, unknown>): { readyWithinNs: number; readyTimeoutMs: number } {
    const within = this.duration(body, 'readyWithin');
    const timeout = this.duration(body, 'readyTimeout');
    const readyWithinNs = within === undefined ? this.o.gateThresholdNs : Number(within);
    if (!(readyWithinNs > 0)) throw new HttpError(400, 'bad-request', "'readyWithin' must be more than 0");
    const readyTimeoutMs = timeout === undefined ? DEFAULT_READY_TIMEOUT_MS : Number(timeout / 1_000_000n);
    if (readyTimeoutMs < 0 || readyTimeoutMs > MAX_READY_TIMEOUT_MS) throw new HttpError(400, 'bad-request', `'readyTimeout' must be at most ${MAX_READY_TIMEOUT_MS / 1000} s`);
    return { readyWithinNs, readyTimeoutMs };
  }

  private triggerRequest(body: Record<string, unknown>): PageTriggerRequest {
    const checked = validateAction(body.action, { allowKinds: PAGE_KINDS, allowOutDir: false });
    if (!checked.ok) throw new HttpError(400, 'bad-action', checked.reason);
    if (checked.action.kind === 'blink' && checked.action.count === 'forever') {
      throw new HttpError(400, 'bad-action', "a train 'forever' is not started from the page (give a count; cancel stops it early)");
    }
    const request: PageTriggerRequest = { kind: 'trigger', action: checked.action, ...this.gate(body) };
    // "Every online node" is the page's list, by the page's rule (a node silent for K periods is out), named
    // explicitly: the gate must not wait for a node the page already shows offline.
    const nodes = this.nodeList(body.nodes) ?? this.o.board.onlineIds();
    if (nodes.length === 0) throw new HttpError(409, 'no-nodes', 'no node is online in this group');
    request.nodes = nodes;
    const inNs = this.duration(body, 'in');
    if (inNs !== undefined) {
      if (inNs < 100_000_000n || inNs > 3_600_000_000_000n) throw new HttpError(400, 'bad-request', "'in' must be from 100ms to 1h");
      request.inNs = inNs;
    }
    return request;
  }

  private identifyRequest(body: Record<string, unknown>): PageTriggerRequest {
    if (typeof body.node !== 'string') throw new HttpError(400, 'bad-request', "'node' must name the node to identify");
    const nodes = this.nodeList([body.node])!;
    const checked = validateAction({ kind: 'blink', line: body.line ?? 17, ...IDENTIFY }, { allowKinds: PAGE_KINDS });
    if (!checked.ok) throw new HttpError(400, 'bad-action', checked.reason);
    // Identify is for finding a node, not for agreeing on an instant: any synchronized clock will do.
    return { kind: 'identify', action: checked.action, nodes, readyWithinNs: 1_000_000_000, readyTimeoutMs: DEFAULT_READY_TIMEOUT_MS };
  }
}
