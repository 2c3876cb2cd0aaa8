/**
 * `--http` for `lockstep hub` and `lockstep demo`: puts the page in front of
 * a running MeshHub (its directory, its coordinator, its NTP server's
 * figures). Parsing of the address and the token file lives here too, so
 * both commands refuse bad values alike (message + exit 2).
 */
import { readFileSync } from 'node:fs';
import type { Timescale } from '../../time/timescale.js';
import { UsageError } from '../errors.js';
import type { MeshHub } from '../../mesh/hub.js';
import { GroupBoard, type HubTime } from '../../mesh/board.js';
import { NodeTriggerLog } from '../../mesh/trigger-log.js';
import { PageTriggers } from '../../mesh/page-triggers.js';
import { DashboardServer } from '../../mesh/dashboard.js';
import { LOCKSTEP_VERSION } from '../../mesh/version.js';
import { LOCAL_REFID } from '../../ntp/server.js';

export const DEFAULT_HTTP = '127.0.0.1:8080';
/** A guessable token is no token: 16 characters is 96 bits from `openssl rand -base64 12`. */
const MIN_TOKEN_CHARS = 16;

/** HOST:PORT, [V6]:PORT; port 0 lets the system choose (printed at start). */
export function httpAddress(spec: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(spec) ?? /^([^:[\]]+):(\d+)$/.exec(spec);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new UsageError(`--http '${spec}' must be HOST:PORT, e.g. ${DEFAULT_HTTP} (or 0.0.0.0:8080 for the LAN)`);
  return { host: m[1]!, port };
}

export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read --http-token-file ${path}: ${(error as NodeJS.ErrnoException).code}`);
  }
  const token = text.trim();
  if (token.length < MIN_TOKEN_CHARS || /\s/.test(token)) {
    throw new UsageError(`--http-token-file ${path}: the token must be one line of at least ${MIN_TOKEN_CHARS} characters without spaces (e.g. openssl rand -hex 16 > ${path})`);
  }
  return token;
}

export interface DashboardStartOptions {
  hub: MeshHub;
  timescale: Timescale;
  brokerUrl: string;
  gateThresholdNs: number;
  token?: string;
  host: string;
  port: number;
}

export interface RunningDashboard {
  url: string;
  server: DashboardServer;
  board: GroupBoard;
  stop(): Promise<void>;
}

/** Requests/s over this window: NTP clients poll every 1-8 s, so a shorter window would flicker between 0 and a burst. */
const RATE_WINDOW_MS = 10_000;

/** The hub's own time and its NTP server's load, for the page's header. */
function hubTimeProbe(hub: MeshHub, timescale: Timescale): () => HubTime {
  const window: { atMs: number; served: number }[] = [];
  return () => {
    const ref = hub.ntpReference();
    const stats = hub.ntpStats();
    const out: HubTime = { synchronized: timescale.synchronized, errorBoundNs: timescale.synchronized ? Math.round(timescale.errorBoundNs()) : null };
    if (ref) {
      out.stratum = ref.stratum;
      out.reference = ref.refId === LOCAL_REFID ? 'LOCAL (this machine)' : ref.refId ? [24, 16, 8, 0].map((s) => (ref.refId >>> s) & 255).join('.') : '-';
      if (ref.unsynchronizedReason) out.unsynchronizedReason = ref.unsynchronizedReason;
    }
    if (stats) {
      const now = Date.now();
      window.push({ atMs: now, served: stats.served });
      while (window.length > 2 && now - window[1]!.atMs >= RATE_WINDOW_MS) window.shift();
      const first = window[0]!;
      if (now - first.atMs >= 1000) out.requestsPerSecond = Math.round(((stats.served - first.served) * 10_000) / (now - first.atMs)) / 10;
      out.served = stats.served;
      out.rateLimited = stats.rateLimited;
      out.denied = stats.denied;
    }
    return out;
  };
}

export async function startDashboard(o: DashboardStartOptions): Promise<RunningDashboard> {
  const log = new NodeTriggerLog(o.hub.topics);
  o.hub.session.onMessage((topic, payload) => log.handle(topic, payload));
  const board = new GroupBoard({
    directory: o.hub.directory,
    timescale: o.timescale,
    version: LOCKSTEP_VERSION,
    gateThresholdNs: o.gateThresholdNs,
    brokerUrl: o.brokerUrl,
    brokerConnected: () => o.hub.session.connected,
    hubTime: hubTimeProbe(o.hub, o.timescale),
    triggers: log,
  });
  let server: DashboardServer | undefined;
  const triggers = o.hub.coordinator && o.token ? new PageTriggers(o.hub.coordinator, (id) => server?.triggerChanged(id)) : undefined;
  server = new DashboardServer({ board, timescale: o.timescale, triggers, token: o.token, host: o.host, port: o.port, gateThresholdNs: o.gateThresholdNs });
  const address = await server.start();
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `http://${host}:${address.port}/`, server, board, stop: () => server!.stop() };
}
