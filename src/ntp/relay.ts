/**
 * A user-space UDP relay that stands in for Wi-Fi between an NTP client and
 * server: fixed delay, exponential jitter, extra one-way delay (asymmetry)
 * and loss, each way. The kernel here has no netem, so this is how tests,
 * benchmarks and `lockstep demo --wifi` get a bad network on loopback.
 *
 * Each client address gets its own upstream socket, so replies find their
 * way back; both maps are bounded and idle entries are closed.
 */
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';

export interface UdpRelayOptions {
  listenHost?: string;
  /** 0 (default): a free port chosen by the OS. */
  listenPort?: number;
  targetHost: string;
  targetPort: number;
  /** Fixed delay added each way, ms. */
  delayMs?: number;
  /** Mean of an exponential delay added each way, ms (Wi-Fi's long tail). */
  jitterMeanMs?: number;
  /** Extra delay on the client→server way only, ms: the error NTP cannot see. */
  asymmetryMs?: number;
  /** Probability of dropping a datagram, each way independently. */
  lossRate?: number;
  /** Seed for the delay and loss draws, so a run can be repeated. */
  seed?: number;
}

export interface UdpRelayStats {
  toServer: number;
  toClient: number;
  dropped: number;
  clients: number;
}

/** More distinct clients than this and the oldest upstream socket is closed. */
const MAX_CLIENTS = 256;
/** libuv's timer clock ticks in whole milliseconds. */
const TIMER_GRANULARITY_MS = 1;
/** An upstream socket unused this long is closed. */
const IDLE_CLOSE_MS = 60_000;

/** mulberry32: a small seeded PRNG; quality is ample for delay draws. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Upstream {
  socket: Socket;
  client: RemoteInfo;
  lastUsedMs: number;
}

export class UdpRelay {
  private readonly options: Required<Omit<UdpRelayOptions, 'seed'>>;
  private readonly random: () => number;
  private listener: Socket | undefined;
  private readonly upstreams = new Map<string, Upstream>();
  private readonly pending = new Set<NodeJS.Timeout>();
  private readonly pendingImmediates = new Set<NodeJS.Immediate>();
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly counters = { toServer: 0, toClient: 0, dropped: 0 };

  constructor(options: UdpRelayOptions) {
    for (const key of ['delayMs', 'jitterMeanMs', 'asymmetryMs'] as const) {
      const v = options[key];
      if (v !== undefined && !(v >= 0 && Number.isFinite(v))) throw new RangeError(`${key} must be ≥ 0`);
    }
    if (options.lossRate !== undefined && !(options.lossRate >= 0 && options.lossRate < 1)) {
      throw new RangeError('lossRate must be in [0, 1)');
    }
    this.options = {
      listenHost: options.listenHost ?? (options.targetHost.includes(':') ? '::1' : '127.0.0.1'),
      listenPort: options.listenPort ?? 0,
      targetHost: options.targetHost,
      targetPort: options.targetPort,
      delayMs: options.delayMs ?? 0,
      jitterMeanMs: options.jitterMeanMs ?? 0,
      asymmetryMs: options.asymmetryMs ?? 0,
      lossRate: options.lossRate ?? 0,
    };
    this.random = seededRandom(options.seed ?? 0x5eed);
  }

  async start(): Promise<{ host: string; port: number }> {
    const family = this.options.listenHost.includes(':') ? 'udp6' : 'udp4';
    const listener = createSocket(family);
    this.listener = listener;
    listener.on('message', (msg, rinfo) => this.fromClient(msg, rinfo));
    listener.on('error', () => undefined); // a relay outlives ICMP errors
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.bind(this.options.listenPort, this.options.listenHost, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    this.idleTimer = setInterval(() => this.closeIdle(), IDLE_CLOSE_MS / 4);
    this.idleTimer.unref();
    const { address, port } = listener.address();
    return { host: address, port };
  }

  async stop(): Promise<void> {
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
    for (const immediate of this.pendingImmediates) clearImmediate(immediate);
    this.pendingImmediates.clear();
    if (this.idleTimer) clearInterval(this.idleTimer);
    const sockets = [...this.upstreams.values()].map((u) => u.socket);
    this.upstreams.clear();
    if (this.listener) sockets.push(this.listener);
    this.listener = undefined;
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  get stats(): UdpRelayStats {
    return { ...this.counters, clients: this.upstreams.size };
  }

  /** One way's delay: fixed + exponential(mean), in ms. */
  private drawDelayMs(extraMs: number): number {
    const { delayMs, jitterMeanMs } = this.options;
    const jitter = jitterMeanMs > 0 ? -jitterMeanMs * Math.log(1 - this.random()) : 0;
    return delayMs + jitter + extraMs;
  }

  private later(delayMs: number, send: () => void): void {
    if (this.options.lossRate > 0 && this.random() < this.options.lossRate) {
      this.counters.dropped++;
      return;
    }
    const dueNs = process.hrtime.bigint() + BigInt(Math.round(delayMs * 1e6));
    this.armUntil(dueNs, send);
  }

  /**
   * setTimeout counts whole milliseconds (it wakes up to 1 ms early, and a
   * sub-ms remainder becomes a full 1 ms), so it only gets within a
   * millisecond of the due time; the last millisecond passes in setImmediate
   * turns, which keep serving I/O. Deliveries are then neither early nor
   * late by the timer's granularity, and the delays are the model's.
   */
  private armUntil(dueNs: bigint, send: () => void): void {
    const remainingMs = Number(dueNs - process.hrtime.bigint()) / 1e6;
    if (remainingMs <= 0) {
      send();
      return;
    }
    if (remainingMs < TIMER_GRANULARITY_MS + 0.5) {
      const immediate = setImmediate(() => {
        this.pendingImmediates.delete(immediate);
        this.armUntil(dueNs, send);
      });
      this.pendingImmediates.add(immediate);
      return;
    }
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      this.armUntil(dueNs, send);
    }, remainingMs - TIMER_GRANULARITY_MS);
    this.pending.add(timer);
  }

  private fromClient(msg: Buffer, client: RemoteInfo): void {
    const upstream = this.upstreamFor(client);
    upstream.lastUsedMs = Date.now();
    this.later(this.drawDelayMs(this.options.asymmetryMs), () => {
      this.counters.toServer++;
      upstream.socket.send(msg, this.options.targetPort, this.options.targetHost);
    });
  }

  private upstreamFor(client: RemoteInfo): Upstream {
    const key = `${client.address}|${client.port}`;
    const existing = this.upstreams.get(key);
    if (existing) return existing;
    if (this.upstreams.size >= MAX_CLIENTS) {
      const [oldestKey, oldest] = this.upstreams.entries().next().value as [string, Upstream];
      oldest.socket.close();
      this.upstreams.delete(oldestKey);
    }
    const socket = createSocket(this.options.targetHost.includes(':') ? 'udp6' : 'udp4');
    socket.on('error', () => undefined);
    const upstream: Upstream = { socket, client, lastUsedMs: Date.now() };
    socket.on('message', (reply) => {
      this.later(this.drawDelayMs(0), () => {
        if (!this.listener) return;
        this.counters.toClient++;
        this.listener.send(reply, client.port, client.address);
      });
    });
    this.upstreams.set(key, upstream);
    return upstream;
  }

  private closeIdle(): void {
    const cutoff = Date.now() - IDLE_CLOSE_MS;
    for (const [key, upstream] of this.upstreams) {
      if (upstream.lastUsedMs < cutoff) {
        upstream.socket.close();
        this.upstreams.delete(key);
      }
    }
  }
}
