/**
 * NtpClient: the embedded NTP client. It owns the sockets and timers and runs
 * the pipeline of the other files for every reply:
 *
 *   packet ──source.ts──▶ sample ──filter.ts/sourcestats.ts──▶ estimate
 *          ──select.ts/discipline.ts──▶ ClockEstimate ──▶ Timescale.apply
 *
 * T1 and T4 are read from the RAW clock (timescale.clock.nowNs()), so every
 * sample is "server UTC − raw": a wall-clock step cannot corrupt a sample,
 * and a model change never invalidates stored samples.
 *
 * One connected UDP socket per server (udp4 or udp6 by the address): the
 * kernel then drops datagrams from anyone else, and the send needs no lookup.
 * Everything is bounded (samples per source, one request in flight per
 * source) and stop() releases every socket and timer.
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns/promises';
import type { Timescale } from '../time/timescale.js';
import type { SymmetricKey } from './auth.js';
import { formatRefId } from './packet.js';
import { NtpSource, type NtpServerSpec, type Sample } from './source.js';
import { ClockFilter, type FilterOutput } from './filter.js';
import { SourceStats } from './sourcestats.js';
import { discipline, type SourceView } from './discipline.js';

export type { NtpServerSpec } from './source.js';

export type SourceState = 'selected' | 'candidate' | 'falseticker' | 'unreachable';

export interface SourceStatus {
  /** host:port as configured ([v6]:port for IPv6). */
  address: string;
  /** 8-bit reach register: bit 0 = the latest poll was answered validly. */
  reach: number;
  delaySeconds: number;
  offsetSeconds: number;
  jitterSeconds: number;
  state: SourceState;
  stratum?: number;
  refId?: string;
  lastError?: string;
  /** Current poll interval, seconds. */
  pollSeconds: number;
  /** Samples in the source's regression window. */
  samples: number;
  /** The source's own frequency estimate (d offset / d raw), ppm. */
  frequencyPpm?: number;
}

export interface ClientStatus {
  synchronized: boolean;
  /** The model in force: timescale.offsetSeconds() (UTC − raw). */
  offsetSeconds: number;
  frequencyPpm: number;
  /** Uncertainty (3σ) of the frequency of the last estimate applied, ppm. */
  frequencyErrorPpm?: number;
  errorBoundSeconds: number;
  /** The selected source's. */
  stratum?: number;
  refId?: string;
  rootDelaySeconds?: number;
  rootDispersionSeconds?: number;
  lastSampleRawNs?: bigint;
  sources: SourceStatus[];
}

export interface NtpClientOptions {
  servers: NtpServerSpec[];
  timescale: Timescale;
  keys?: Map<number, SymmetricKey>;
  /** Shortest poll interval after the initial burst (default 1 s; sub-second is fine on a LAN). */
  minPollSeconds?: number;
  /** Longest poll interval the schedule backs off to while stable (default 16 s). */
  maxPollSeconds?: number;
  /** Polls in the initial burst (default 4) and their spacing (default 0.25 s). */
  burstPolls?: number;
  burstIntervalSeconds?: number;
  /** Host name resolution; node's dns.lookup by default (tests can inject). */
  lookup?: (host: string) => Promise<{ address: string; family: number }>;
  /**
   * Send from this local address (default: the OS picks). The swarm gives
   * each simulated node its own 127.x.y.z, so the server's per-address rate
   * limit sees a thousand clients, as it would on a LAN, not one flooder.
   */
  localAddress?: string;
}

export const DEFAULT_MIN_POLL_SECONDS = 1;
/**
 * A mesh node's default against its hub: 16 polls a second while it learns
 * the frequency (the hub's server answers 20,000 requests/s, so even 1,000
 * nodes booting together fit), backing off toward maxPoll once settled.
 */
export const LAN_HUB_MIN_POLL_SECONDS = 1 / 16;
export const DEFAULT_MAX_POLL_SECONDS = 16;
/** Bounds on what a caller may ask: below 1/64 s is flooding a server, above 2^17 s is NTP's own limit. */
export const MIN_ALLOWED_POLL_SECONDS = 1 / 64;
export const MAX_ALLOWED_POLL_SECONDS = 131_072;
/** A source not answered for this many polls in a row is unreachable (the reach register is 8 bits). */
const REACH_BITS = 8;
/** Spread the first polls of several sources a little, so their replies do not queue behind each other. */
const START_STAGGER_MS = 20;
/** The first step waits for a bound under the step threshold, but for no more samples than an iburst's. */
const FIRST_STEP_MAX_SAMPLES = 4;
/** Retry a failed name resolution this often. */
const RESOLVE_RETRY_SECONDS = 5;

export class NtpClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NtpClientError';
  }
}

interface Runner {
  source: NtpSource;
  filter: ClockFilter;
  stats: SourceStats;
  filterOutput?: FilterOutput;
  socket?: Socket;
  timer?: NodeJS.Timeout;
  state: SourceState;
  resolveError?: string;
}

export class NtpClient {
  readonly timescale: Timescale;
  private readonly runners: Runner[];
  private readonly lookup: (host: string) => Promise<{ address: string; family: number }>;
  private readonly listeners = new Set<(s: ClientStatus) => void>();
  private running = false;
  private selectedIndex: number | undefined;
  private lastSampleRawNs: bigint | undefined;
  private lastFrequencyErrorPpm: number | undefined;
  private readonly localAddress: string | undefined;
  /** Counts of what happened, for tests and the status line. */
  readonly counters = { samples: 0, rejected: 0, kisses: 0, updates: 0 };

  constructor(options: NtpClientOptions) {
    if (options.servers.length === 0) throw new NtpClientError('no NTP servers given');
    const minPollSeconds = options.minPollSeconds ?? DEFAULT_MIN_POLL_SECONDS;
    const maxPollSeconds = options.maxPollSeconds ?? Math.max(DEFAULT_MAX_POLL_SECONDS, minPollSeconds);
    for (const [name, v] of [['minPollSeconds', minPollSeconds], ['maxPollSeconds', maxPollSeconds]] as const) {
      if (!(v >= MIN_ALLOWED_POLL_SECONDS && v <= MAX_ALLOWED_POLL_SECONDS)) {
        throw new NtpClientError(`${name} must be from ${MIN_ALLOWED_POLL_SECONDS} to ${MAX_ALLOWED_POLL_SECONDS} s, not ${v}`);
      }
    }
    if (maxPollSeconds < minPollSeconds) throw new NtpClientError('maxPollSeconds must be ≥ minPollSeconds');
    this.timescale = options.timescale;
    this.lookup = options.lookup ?? ((host) => dnsLookup(host));
    this.localAddress = options.localAddress;
    this.runners = options.servers.map((spec) => ({
      source: new NtpSource({
        spec,
        ...(options.keys ? { keys: options.keys } : {}),
        minPollSeconds,
        maxPollSeconds,
        ...(options.burstPolls !== undefined ? { burstPolls: options.burstPolls } : {}),
        ...(options.burstIntervalSeconds !== undefined ? { burstIntervalSeconds: options.burstIntervalSeconds } : {}),
      }),
      filter: new ClockFilter(),
      stats: new SourceStats(),
      state: 'unreachable' as SourceState,
    }));
  }

  /** Opens the sockets and starts polling; resolves once every source is set up (not synchronized). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await Promise.all(
      this.runners.map(async (runner, i) => {
        await this.open(runner);
        if (!this.running) return;
        this.schedule(runner, (i * START_STAGGER_MS) / 1000);
      }),
    );
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.runners.map((r) => this.close(r)));
  }

  /** Hear of every model update (and of status changes like a dropped source). Returns unsubscribe. */
  onUpdate(listener: (s: ClientStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the status once synchronized; rejects after timeoutMs. */
  waitUntilSynchronized(timeoutMs: number): Promise<ClientStatus> {
    if (this.timescale.synchronized && this.selectedIndex !== undefined) return Promise.resolve(this.status());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new NtpClientError(`not synchronized within ${timeoutMs} ms: ${this.describeProblems()}`));
      }, timeoutMs);
      const off = this.onUpdate((s) => {
        if (!s.synchronized) return;
        clearTimeout(timer);
        off();
        resolve(s);
      });
    });
  }

  status(): ClientStatus {
    const raw = this.timescale.clock.nowNs();
    const selected = this.selectedIndex !== undefined ? this.runners[this.selectedIndex] : undefined;
    const last = selected?.stats.lastSample;
    const status: ClientStatus = {
      synchronized: this.timescale.synchronized,
      offsetSeconds: this.timescale.offsetSeconds(raw),
      frequencyPpm: this.timescale.frequencyPpm,
      errorBoundSeconds: this.timescale.errorBoundNs(raw) / 1e9,
      sources: this.runners.map((r) => this.sourceStatus(r)),
    };
    if (last) {
      status.stratum = last.stratum;
      status.refId = formatRefId(last.refId, last.stratum);
      status.rootDelaySeconds = last.rootDelayNs / 1e9;
      status.rootDispersionSeconds = last.rootDispersionNs / 1e9;
    }
    if (this.lastSampleRawNs !== undefined) status.lastSampleRawNs = this.lastSampleRawNs;
    if (this.lastFrequencyErrorPpm !== undefined) status.frequencyErrorPpm = this.lastFrequencyErrorPpm;
    return status;
  }

  /** The per-source protocol objects, read-only, for tests and diagnostics. */
  get sources(): readonly NtpSource[] {
    return this.runners.map((r) => r.source);
  }

  private sourceStatus(r: Runner): SourceStatus {
    const best = r.filterOutput?.best;
    const est = r.stats.estimate;
    const s: SourceStatus = {
      address: r.source.address,
      reach: r.source.reach,
      delaySeconds: best ? best.delayNs / 1e9 : 0,
      offsetSeconds: est ? Number(est.offsetNs) / 1e9 : best ? Number(best.offsetNs) / 1e9 : 0,
      jitterSeconds: r.filterOutput ? r.filterOutput.jitterNs / 1e9 : 0,
      state: r.state,
      pollSeconds: r.source.poll.intervalSeconds,
      samples: r.stats.size,
    };
    const last = r.stats.lastSample;
    if (last) {
      s.stratum = last.stratum;
      s.refId = formatRefId(last.refId, last.stratum);
    }
    if (est) s.frequencyPpm = est.frequencyPpm;
    const silent = r.source.reach === 0 && r.source.polls >= 2 ? `no valid reply to the last ${Math.min(r.source.polls, REACH_BITS)} polls` : undefined;
    const error = r.source.dropped ?? r.resolveError ?? r.source.lastError ?? silent;
    if (error) s.lastError = error;
    return s;
  }

  private describeProblems(): string {
    return this.runners.map((r) => `${r.source.address}: ${r.source.dropped ?? r.resolveError ?? r.source.lastError ?? `reach ${r.source.reach.toString(8)}`}`).join('; ');
  }

  private async open(runner: Runner): Promise<void> {
    const { host, port } = runner.source.spec;
    let address: string;
    let family: number;
    try {
      ({ address, family } = await this.lookup(host));
      runner.resolveError = undefined;
    } catch (error) {
      runner.resolveError = `cannot resolve '${host}': ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
      return;
    }
    const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
    // T4 first: nothing may run between the datagram's arrival and reading the raw clock.
    socket.on('message', (msg) => {
      const t4 = this.timescale.clock.nowNs();
      this.onReply(runner, msg, t4);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A connected UDP socket reports ICMP "port unreachable" here: reported, never fatal.
      runner.source.lastError = error.code === 'ECONNREFUSED' ? `no NTP server answers at ${runner.source.address} (connection refused)` : error.message;
    });
    try {
      const local = this.localAddress;
      if (local) {
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.bind(0, local, () => {
            socket.off('error', reject);
            resolve();
          });
        });
      }
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.connect(port, address, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      runner.resolveError = `cannot reach ${runner.source.address}: ${(error as Error).message}`;
      socket.close();
      return;
    }
    if (!this.running) {
      socket.close();
      return;
    }
    runner.socket = socket;
  }

  private async close(runner: Runner): Promise<void> {
    if (runner.timer) clearTimeout(runner.timer);
    runner.timer = undefined;
    const socket = runner.socket;
    runner.socket = undefined;
    if (socket) await new Promise<void>((r) => socket.close(() => r()));
  }

  private schedule(runner: Runner, delaySeconds: number): void {
    if (!this.running || runner.source.dropped) return;
    runner.timer = setTimeout(() => void this.poll(runner), Math.max(0, delaySeconds * 1000));
  }

  private async poll(runner: Runner): Promise<void> {
    runner.timer = undefined;
    if (!this.running || runner.source.dropped) return;
    if (!runner.socket) {
      await this.open(runner);
      if (!runner.socket) {
        this.updateStates();
        this.schedule(runner, Math.max(RESOLVE_RETRY_SECONDS, runner.source.poll.intervalSeconds));
        return;
      }
    }
    const bytes = runner.source.buildRequest(this.timescale.clock.nowNs());
    // T1 as late as possible: after the MAC, right before the datagram is handed to the kernel.
    runner.source.restampT1(this.timescale.clock.nowNs());
    runner.socket.send(bytes);
    this.schedule(runner, runner.source.poll.next());
    if (runner.source.reach === 0 && runner.source.polls >= REACH_BITS) this.updateStates();
  }

  private onReply(runner: Runner, msg: Buffer, t4RawNs: bigint): void {
    if (!this.running) return;
    const result = runner.source.handleReply(msg, t4RawNs, (raw) => this.timescale.utcAt(raw));
    if (result.kind === 'rejected') {
      this.counters.rejected++;
      return;
    }
    if (result.kind === 'kiss') {
      this.counters.kisses++;
      if (result.action === 'drop') {
        void this.close(runner);
        runner.stats.clear();
        runner.filter.clear();
        runner.filterOutput = undefined;
        this.update();
      } else if (result.action === 'backoff' && runner.timer) {
        // Honour the new interval from now on, not after the poll already scheduled.
        clearTimeout(runner.timer);
        this.schedule(runner, runner.source.poll.intervalSeconds);
      }
      this.notify();
      return;
    }
    try {
      this.accept(runner, result.sample);
    } catch (error) {
      // A service must outlive one bad sample: report, carry on.
      runner.source.lastError = `sample not used: ${(error as Error).message}`;
      this.counters.rejected++;
    }
  }

  private accept(runner: Runner, sample: Sample): void {
    this.counters.samples++;
    const deviation = runner.stats.deviation(sample);
    const estimate = runner.stats.add(sample);
    runner.filterOutput = runner.filter.add(sample, estimate.frequencyPpm);
    runner.source.poll.noteSample(deviation, estimate.frequencyBoundPpm ?? (estimate.samples >= 2 ? 3 * estimate.frequencySdPpm : undefined));
    this.lastSampleRawNs = sample.rawNs;
    this.update();
  }

  /** Runs selection and, if a majority agrees, applies the estimate to the Timescale. */
  private update(): void {
    const rawNow = this.timescale.clock.nowNs();
    const views: SourceView[] = [];
    const indexOf = new Map<string, number>();
    this.runners.forEach((r, i) => {
      const estimate = r.stats.estimate;
      const lastSample = r.stats.lastSample;
      if (!estimate || !lastSample || r.source.reach === 0 || r.source.dropped) return;
      const id = String(i);
      indexOf.set(id, i);
      views.push({ id, estimate, lastSample });
    });
    const { selection, estimate } = discipline(views, rawNow);
    this.selectedIndex = selection.selectedId !== undefined ? indexOf.get(selection.selectedId) : undefined;
    this.runners.forEach((r, i) => {
      const id = String(i);
      if (!indexOf.has(id)) r.state = 'unreachable';
      else if (i === this.selectedIndex) r.state = 'selected';
      else if (selection.falsetickers.includes(id)) r.state = 'falseticker';
      else r.state = 'candidate';
    });
    // The first step waits until the estimate is known to within the step
    // threshold: then no later correction can exceed it, so a bad first
    // sample (a reply queued for 300 ms) costs a wait, not a second step.
    // A path whose half round trip alone exceeds the threshold (a satellite
    // link) cannot get there: it steps once the burst's samples are in.
    const selectedSamples = this.selectedIndex !== undefined ? this.runners[this.selectedIndex]!.stats.size : 0;
    const mayStep = this.timescale.synchronized || (estimate !== undefined && (estimate.errorBoundNs <= this.timescale.stepThresholdNs || selectedSamples >= FIRST_STEP_MAX_SAMPLES));
    if (estimate && mayStep) {
      this.timescale.apply(estimate, rawNow);
      this.lastFrequencyErrorPpm = estimate.frequencyErrorPpm;
      this.counters.updates++;
    }
    this.notify();
  }

  private updateStates(): void {
    let changed = false;
    for (const r of this.runners) {
      if ((r.source.reach === 0 || r.source.dropped || !r.socket) && r.state !== 'unreachable') {
        r.state = 'unreachable';
        changed = true;
      }
    }
    if (changed) this.update();
  }

  private notify(): void {
    if (this.listeners.size === 0) return;
    const s = this.status();
    for (const listener of [...this.listeners]) {
      try {
        listener(s);
      } catch {
        /* a listener's failure is its own; the client keeps running */
      }
    }
  }
}
