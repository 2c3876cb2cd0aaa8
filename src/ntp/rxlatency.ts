/**
 * Receive-latency compensation.
 *
 * chronyd takes its receive timestamp in the kernel (SO_TIMESTAMP); Node
 * cannot, so our earliest possible reading is in the 'message' handler, after
 * the kernel has woken the event loop and the datagram has travelled through
 * libuv into JavaScript. Measured here (2 shared vCPUs) that is ~100–150 µs,
 * far more than the way back out (~10–20 µs), and the asymmetry shows up in
 * every client's offset as half of it: chronyd -Q saw our time +45–50 µs
 * ahead of truth without compensation.
 *
 * So a worker thread sends the server a stamped probe a few times a second
 * (stamped with the monotonic clock all threads share, just before its
 * send(2)); the handler's reading minus the stamp is what a client's request
 * suffers between reaching the kernel and being read, including any queueing
 * under load. A low quantile of recent probes is subtracted from receive
 * timestamps, and the spread of the probes is added to the root dispersion,
 * so the residual stays inside the error we declare.
 */
import { Worker } from 'node:worker_threads';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { RemoteInfo } from 'node:dgram';

/** 4 probes a second: negligible load, and the estimate follows a change of load within seconds. */
export const PROBE_INTERVAL_MS = 125;
/** Probes remembered: 4 s of history. */
export const PROBE_WINDOW = 32;
/** Probes longer than this are a paused process (GC, a stopped VM), not latency: ignored. */
const MAX_PLAUSIBLE_DELAY_NS = 5_000_000;
const SECRET_BYTES = 16;
const WARM_UP_PROBES = 4;
/**
 * The quantile of a window used as the estimate. chronyd and ntpd prefer their
 * lowest-delay exchanges, i.e. the requests that waited least, so a low
 * quantile matches what they use; the minimum alone would chase one lucky outlier.
 */
const LOW_QUANTILE = 0.1;
/** A probe is 48 bytes: the secret, the stamp, zeros. It is recognised (source port, secret) before anything else. */
const PROBE_LENGTH = 48;

export class ReceiveLatencyProbe {
  private readonly secret = randomBytes(SECRET_BYTES);
  private worker: Worker | undefined;
  private probePort = -1;
  private readonly delays: number[] = [];
  private sorted: number[] = [];
  private pending: { seq: number; before: bigint; handledNs: bigint } | undefined;

  /** Starts the worker sending to host:port; resolves once it is sending. */
  async start(host: string, port: number): Promise<void> {
    const worker = new Worker(new URL('./rxprobe-worker.js', import.meta.url), {
      workerData: { host, port, secret: this.secret, intervalMs: PROBE_INTERVAL_MS, length: PROBE_LENGTH },
    });
    this.worker = worker;
    worker.unref();
    worker.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('receive-latency probe did not start')), 5000);
      worker.once('message', (msg: { port: number }) => {
        clearTimeout(timer);
        this.probePort = msg.port;
        resolve();
      });
      worker.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.probePort = -1;
    if (!worker) return;
    worker.postMessage('stop');
    await worker.terminate().catch(() => undefined);
  }

  /** True (and recorded) if this datagram is our own probe; cheap for anything else. */
  consume(msg: Buffer, rinfo: RemoteInfo, hrtimeNs: bigint): boolean {
    if (rinfo.port !== this.probePort || msg.length !== PROBE_LENGTH) return false;
    if (!timingSafeEqual(msg.subarray(0, SECRET_BYTES), this.secret)) return false;
    const seq = msg.readUInt32BE(SECRET_BYTES);
    const before = msg.readBigUInt64BE(SECRET_BYTES + 4);
    const previousAfter = msg.readBigUInt64BE(SECRET_BYTES + 12);
    const previous = this.pending;
    this.pending = { seq, before, handledNs: hrtimeNs };
    // The previous probe is complete now that we know when its send() returned.
    if (previous && previous.seq + 1 === seq && previousAfter > previous.before) {
      const arrival = previous.before + (previousAfter - previous.before) / 2n;
      const delay = Number(previous.handledNs - arrival);
      // The first probes run cold (JIT, first wake-ups) and say nothing about later requests.
      if (seq > WARM_UP_PROBES && delay >= 0 && delay < MAX_PLAUSIBLE_DELAY_NS) {
        this.delays.push(delay);
        if (this.delays.length > PROBE_WINDOW) this.delays.shift();
        this.sorted = [...this.delays].sort((a, b) => a - b);
      }
    }
    return true;
  }

  /** Probes seen in the window. */
  get samples(): number {
    return this.delays.length;
  }

  /** The latency to subtract from receive readings: a low quantile of the window. */
  get estimateNs(): number {
    if (this.sorted.length === 0) return 0;
    return this.sorted[Math.floor((this.sorted.length - 1) * LOW_QUANTILE)]!;
  }

  /** How far receive latency varied in the window (max − estimate): the residual we cannot remove. */
  get spreadNs(): number {
    if (this.sorted.length === 0) return 0;
    return this.sorted[this.sorted.length - 1]! - this.estimateNs;
  }
}

/**
 * The other half: from our transmit reading to the send(2) that puts the
 * reply on the wire. Node resolves even a literal address on the next tick,
 * so the system call happens after the handler returns; a nextTick queued
 * right after send() runs once it is done. The server echoes each probe
 * through that same path and times it; half a low quantile of the window is
 * added to transmit timestamps (the middle of the bracket, as for the receive
 * probe), like chrony adds the time its MAC computation takes.
 */
export class SendLatencyEstimate {
  private readonly delays: number[] = [];
  private sorted: number[] = [];
  private count = 0;

  /** The first sends run cold (JIT): their latency says nothing about later ones. */
  static readonly WARM_UP = 4;

  record(delayNs: number): void {
    if (++this.count <= SendLatencyEstimate.WARM_UP) return;
    if (!(delayNs >= 0 && delayNs < MAX_PLAUSIBLE_DELAY_NS)) return;
    this.delays.push(delayNs);
    if (this.delays.length > PROBE_WINDOW) this.delays.shift();
    this.sorted = [...this.delays].sort((a, b) => a - b);
  }

  get samples(): number {
    return this.delays.length;
  }

  get estimateNs(): number {
    if (this.sorted.length === 0) return 0;
    return this.sorted[Math.floor((this.sorted.length - 1) * LOW_QUANTILE)]!;
  }
}
