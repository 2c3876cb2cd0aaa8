/**
 * The hub's NTP server in a worker thread. In one event loop with the hub's
 * MQTT work, a request that arrives while the loop is busy (a thousand acks
 * parsed, a trigger fanned out) waits in the socket before its receive
 * timestamp is read: that wait lands in one leg of the client's exchange
 * and moves the offset it measures (chronyd -Q saw 150 ms and more at 1,000
 * nodes). The worker's loop only answers NTP; the main thread's Timescale is
 * mirrored to it on every change (the raw clock is one per process).
 *
 * The same contract as NtpServer where the hub uses it: start() resolves to
 * the address or rejects with NtpServerError (reason and errno code), and
 * stats()/reference() answer at once from the worker's latest report (at most
 * STATS_INTERVAL_MS old; stop() refreshes them a last time). A change of the
 * Timescale reaches the worker as a message: a request that overtakes it is
 * answered on the model before (as one stamped just before the change would
 * be in one thread); for a step that lasts until the message is read.
 */
import { Worker } from 'node:worker_threads';
import type { Timescale, TimescaleModel } from '../time/timescale.js';
import { RealClock } from '../time/clock.js';
import { NtpServerError, type NtpServerOptions, type NtpServerStats, type ServerReference, type UpstreamInfo } from './server.js';

/** How often the worker reports its counters, and the main thread looks at the upstream (both change slowly). */
const STATS_INTERVAL_MS = 1_000;
const START_TIMEOUT_MS = 10_000;
/**
 * The worker's heap: it holds a rate limiter's table and garbage of 48-byte
 * packets. V8's defaults (young generation growing to 48 MB) would add tens
 * of MB to the hub's RSS under a thousand clients for nothing.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 };

export interface ServerThreadData {
  options: Omit<NtpServerOptions, 'timescale' | 'upstream'>;
  anchor: { epochNs: bigint; hrtimeNs: bigint };
  model: TimescaleModel;
  hasUpstream: boolean;
  upstream: UpstreamInfo | undefined;
  statsIntervalMs: number;
}

export type ToWorker = { type: 'model'; model: TimescaleModel } | { type: 'upstream'; upstream: UpstreamInfo | undefined } | { type: 'stats' } | { type: 'stop' };
export type FromWorker =
  | { type: 'listening'; address: { address: string; port: number } }
  | { type: 'error'; reason: string; code?: string }
  | { type: 'stats'; stats: NtpServerStats; reference: ServerReference | undefined; trackedClients: number }
  | { type: 'stopped' };

const ZERO_STATS: NtpServerStats = { served: 0, rateLimited: 0, denied: 0, malformed: 0, authFailed: 0, ignored: 0, kodSent: 0, authenticated: 0, errors: 0 };

/** True when this Timescale can be mirrored in a worker (its raw clock is the real one). */
export function canRunInThread(timescale: Timescale): boolean {
  return timescale.clock instanceof RealClock;
}

export class NtpServerThread {
  private worker: Worker | undefined;
  private latest: { stats: NtpServerStats; reference: ServerReference | undefined; trackedClients: number } = { stats: { ...ZERO_STATS }, reference: undefined, trackedClients: 0 };
  private unsubscribe: (() => void) | undefined;
  private upstreamTimer: NodeJS.Timeout | undefined;
  private lastUpstream = '';

  constructor(private readonly options: NtpServerOptions) {
    if (!canRunInThread(options.timescale)) throw new NtpServerError('an NTP server thread needs a Timescale on the real clock');
  }

  async start(): Promise<{ address: string; port: number }> {
    if (this.worker) throw new NtpServerError('the server is already started');
    const { timescale, upstream, ...rest } = this.options;
    const up = upstream?.();
    this.lastUpstream = JSON.stringify(up ?? null);
    const data: ServerThreadData = {
      options: rest,
      anchor: (timescale.clock as RealClock).anchor,
      model: timescale.model(),
      hasUpstream: upstream !== undefined,
      upstream: up,
      statsIntervalMs: STATS_INTERVAL_MS,
    };
    const worker = new Worker(new URL('./server-worker.js', import.meta.url), { workerData: data, resourceLimits: WORKER_LIMITS });
    this.worker = worker;
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'stats') this.latest = { stats: m.stats, reference: m.reference, trackedClients: m.trackedClients };
    });
    worker.on('error', () => undefined);
    let address: { address: string; port: number };
    try {
      address = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new NtpServerError('the NTP server thread did not start')), START_TIMEOUT_MS);
        const done = () => clearTimeout(timer);
        worker.on('message', (m: FromWorker) => {
          if (m.type === 'listening') {
            done();
            resolve(m.address);
          } else if (m.type === 'error') {
            done();
            reject(new NtpServerError(m.reason, m.code));
          }
        });
        worker.once('error', (error) => {
          done();
          reject(new NtpServerError(`the NTP server thread failed: ${error.message}`));
        });
        worker.once('exit', (code) => {
          done();
          reject(new NtpServerError(`the NTP server thread exited (${code}) before listening`));
        });
      });
    } catch (error) {
      this.worker = undefined;
      await worker.terminate().catch(() => undefined);
      throw error;
    }
    this.unsubscribe = timescale.onChange(() => this.post({ type: 'model', model: timescale.model() }));
    if (upstream) {
      this.upstreamTimer = setInterval(() => {
        const now = upstream();
        const text = JSON.stringify(now ?? null);
        if (text !== this.lastUpstream) {
          this.lastUpstream = text;
          this.post({ type: 'upstream', upstream: now });
        }
      }, STATS_INTERVAL_MS);
      this.upstreamTimer.unref();
    }
    // The hub's process lives as long as its MQTT session and timers do: the worker does not hold it up.
    worker.unref();
    return address;
  }

  private post(m: ToWorker): void {
    this.worker?.postMessage(m);
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.unsubscribe?.();
    clearInterval(this.upstreamTimer);
    if (!worker) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'stopped') {
          clearTimeout(timer);
          resolve();
        }
      });
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      worker.postMessage({ type: 'stop' } satisfies ToWorker);
    });
    await worker.terminate().catch(() => undefined);
  }

  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Counters as of the worker's latest report. */
  stats(): NtpServerStats {
    return { ...this.latest.stats };
  }

  get trackedClients(): number {
    return this.latest.trackedClients;
  }

  /** What the worker's replies said about our time at its latest report. */
  reference(): ServerReference {
    if (!this.latest.reference) throw new NtpServerError('the NTP server thread has not reported yet');
    return this.latest.reference;
  }
}
