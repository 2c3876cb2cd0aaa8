/**
 * A one-shot measurement, like ntpdig: a few exchanges with one server, the
 * minimum-delay sample reported. The same validation as the disciplined
 * client (source.ts), so a query never reports what the client would refuse.
 */
import { createSocket } from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns/promises';
import type { RawClock } from '../time/clock.js';
import type { SymmetricKey } from './auth.js';
import { formatRefId } from './packet.js';
import { NtpSource, type NtpServerSpec, type Sample } from './source.js';

export interface QueryOptions {
  /** Exchanges to make (the least delayed wins); default 4. */
  samples?: number;
  /** Wait this long for each reply, ms (default 1000). */
  timeoutMs?: number;
  /** Pause between exchanges, ms (default 100): a burst, but no flood. */
  intervalMs?: number;
  /** The clock T1/T4 are read from; its reading is taken as UTC for the era pivot. */
  clock: RawClock;
  keys?: Map<number, SymmetricKey>;
}

export interface QueryResult {
  address: string;
  /** Answers accepted / requests sent. */
  accepted: number;
  sent: number;
  /** From the minimum-delay sample; absent when nothing valid came back. */
  offsetSeconds?: number;
  delaySeconds?: number;
  stratum?: number;
  refId?: string;
  leap?: number;
  rootDelaySeconds?: number;
  rootDispersionSeconds?: number;
  /** Why the last reply was refused, or why there was none. */
  error?: string;
}

export const DEFAULT_QUERY_SAMPLES = 4;
const DEFAULT_TIMEOUT_MS = 1000;
const DEFAULT_INTERVAL_MS = 100;

export async function queryServer(spec: NtpServerSpec, options: QueryOptions): Promise<QueryResult> {
  const samples = options.samples ?? DEFAULT_QUERY_SAMPLES;
  const source = new NtpSource({ spec, ...(options.keys ? { keys: options.keys } : {}), minPollSeconds: 1, maxPollSeconds: 1 });
  const result: QueryResult = { address: source.address, accepted: 0, sent: 0 };
  let resolved: { address: string; family: number };
  try {
    resolved = await dnsLookup(spec.host);
  } catch (error) {
    result.error = `cannot resolve '${spec.host}': ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
    return result;
  }
  const socket = createSocket(resolved.family === 6 ? 'udp6' : 'udp4');
  let waiting: ((sample: Sample | undefined) => void) | undefined;
  let socketError: string | undefined;
  socket.on('message', (msg) => {
    const t4 = options.clock.nowNs();
    const reply = source.handleReply(msg, t4, (raw) => raw);
    if (reply.kind === 'sample') waiting?.(reply.sample);
    else if (reply.kind === 'kiss' && reply.action === 'drop') waiting?.(undefined);
  });
  socket.on('error', (error: NodeJS.ErrnoException) => {
    socketError = error.code === 'ECONNREFUSED' ? 'connection refused (no NTP server on that port)' : error.message;
  });
  let best: Sample | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(spec.port, resolved.address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    for (let i = 0; i < samples && !source.dropped; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, options.intervalMs ?? DEFAULT_INTERVAL_MS));
      const bytes = source.buildRequest(options.clock.nowNs());
      const got = new Promise<Sample | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
        waiting = (s) => {
          clearTimeout(timer);
          resolve(s);
        };
      });
      source.restampT1(options.clock.nowNs());
      socket.send(bytes);
      result.sent++;
      const sample = await got;
      waiting = undefined;
      if (!sample) continue;
      result.accepted++;
      if (!best || sample.delayNs < best.delayNs) best = sample;
    }
  } catch (error) {
    socketError = (error as Error).message;
  } finally {
    await new Promise<void>((r) => socket.close(() => r()));
  }
  if (best) {
    result.offsetSeconds = Number(best.offsetNs) / 1e9;
    result.delaySeconds = best.delayNs / 1e9;
    result.stratum = best.stratum;
    result.refId = formatRefId(best.refId, best.stratum);
    result.leap = best.leap;
    result.rootDelaySeconds = best.rootDelayNs / 1e9;
    result.rootDispersionSeconds = best.rootDispersionNs / 1e9;
  }
  const why = source.dropped ?? source.lastError ?? socketError ?? (result.accepted === 0 ? `no reply within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms` : undefined);
  if (why && result.accepted < result.sent) result.error = why;
  return result;
}
