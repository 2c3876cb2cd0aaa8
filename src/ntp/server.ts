/**
 * The hub's NTP server (RFC 5905 server mode): answers client-mode requests
 * with the Timescale's time, so nodes need neither chrony nor a router's time
 * server.
 *
 * The order of work on each datagram is chosen for accuracy and for safety:
 * 1. the raw clock is read first thing (the receive timestamp; mapping it to
 *    UTC is deterministic and can wait);
 * 2. cheap refusals before any parsing: too short, not mode 3, not on the
 *    allow list (KoD DENY or silence), over the per-client rate (KoD RATE at
 *    most once a second, otherwise silence);
 * 3. decode, verify the MAC if any (a wrong key gets no reply at all);
 * 4. build the reply, read the clock again as the very last thing for the
 *    transmit timestamp (plus the measured cost of the MAC, like chrony),
 *    sign, send. A reply is never longer than its request (no amplification).
 *
 * Nothing a client sends can stop the server: every failure is counted.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Timescale } from '../time/timescale.js';
import type { RawClock } from '../time/clock.js';
import { appendMac, computeDigest, decodePacketWithMac, verifyMac, MAX_DIGEST_BYTES, MAX_V4_DIGEST_BYTES, type SymmetricKey } from './auth.js';
import { asciiRefId, NTP_HEADER_BYTES, LEAP_UNSYNCHRONIZED, type NtpPacket } from './packet.js';
import { secondsToShort, unixNsToNtp } from './timestamp.js';
import { AllowList, type Cidr } from './cidr.js';
import { RateLimiter, type RateLimitOptions } from './ratelimit.js';
import { ReceiveLatencyProbe, SendLatencyEstimate } from './rxlatency.js';

/** What the hub knows about the source of its own time (from the embedded client, or the local chronyd). */
export interface UpstreamInfo {
  stratum: number;
  refId: number;
  rootDelaySeconds: number;
  rootDispersionSeconds: number;
  /** 3 when the source itself is not synchronized (e.g. the local chronyd says so): we then serve leap 3 too. */
  leap?: number;
  /** With leap 3: why, for the operator (status line, --json). */
  reason?: string;
}

export interface NtpServerOptions {
  timescale: Timescale;
  /** UDP port; 123 is the standard one (needs privilege). */
  port?: number;
  /** Address to bind; default "::" (IPv6 and IPv4 on a dual-stack host), falling back to 0.0.0.0. */
  bind?: string;
  /** CIDR ranges allowed to ask; empty or absent: everyone. */
  allow?: Array<string | Cidr>;
  /** What a client outside the allow list gets: a KoD DENY (default) or nothing. */
  denyAction?: 'kod' | 'silent';
  /** Symmetric keys; a request with a MAC is answered only if it verifies, signed with the same key. */
  keys?: Map<number, SymmetricKey>;
  /** Refuse requests without a MAC (only meaningful with keys). */
  requireAuth?: boolean;
  /** Stratum served while free-running (no upstream information). */
  localStratum?: number;
  /** Where the hub's time comes from, if it knows; undefined: free-running at localStratum. */
  upstream?: () => UpstreamInfo | undefined;
  /** Per-client limits, or false to switch limiting off (benchmarks). */
  rateLimit?: RateLimitOptions | false;
  /** Subtract the measured kernel-to-handler latency from receive timestamps (see rxlatency.ts). Default true. */
  compensateReceiveLatency?: boolean;
}

export interface NtpServerStats {
  /** Requests answered with time. */
  served: number;
  /** Requests over a client's rate (KoD RATE or dropped). */
  rateLimited: number;
  /** Requests from outside the allow list. */
  denied: number;
  /** Datagrams that are not a well-formed NTP packet. */
  malformed: number;
  /** Requests whose MAC failed (unknown key, wrong digest) or that lacked a required one. */
  authFailed: number;
  /** Well-formed packets that are not client requests (other modes, versions). */
  ignored: number;
  /** Kiss-o'-Death replies sent (DENY and RATE). */
  kodSent: number;
  /** Requests answered with a MAC. */
  authenticated: number;
  /** Send errors and anything unexpected, counted rather than fatal. */
  errors: number;
}

/** The header fields the server currently puts in its replies. */
export interface ServerReference {
  leap: number;
  stratum: number;
  refId: number;
  rootDelaySeconds: number;
  rootDispersionSeconds: number;
  errorBoundSeconds: number;
  referenceTimeNs: bigint;
  /** With leap 3: why we say we are unsynchronized. */
  unsynchronizedReason?: string;
}

export class NtpServerError extends Error {
  constructor(
    readonly reason: string,
    readonly code?: string,
  ) {
    super(reason);
    this.name = 'NtpServerError';
  }
}

export const DEFAULT_NTP_PORT = 123;
/** chrony's default `local stratum`: far enough down that any real source wins. */
export const DEFAULT_LOCAL_STRATUM = 10;
/** RFC 5905 MAXDIST: with a worse error bound clients would refuse us anyway, so we say we are unsynchronized. */
export const MAX_TRUSTWORTHY_ERROR_SECONDS = 1;
/** Stratum 16 means "unsynchronized" (RFC 5905 §7.3). */
const STRATUM_UNSYNCHRONIZED = 16;
/** chrony's refid for its local reference, 127.127.1.1. */
export const LOCAL_REFID = 0x7f7f0101;
/** Root dispersion served while unsynchronized: NTP's MAXDISP, "as bad as it gets". */
const UNSYNCHRONIZED_DISPERSION_SECONDS = 16;
/** A deeper receive queue absorbs bursts on a busy hub instead of dropping them; the kernel may cap it. */
const RECEIVE_BUFFER_BYTES = 1 << 20;

export class NtpServer {
  private readonly timescale: Timescale;
  private readonly clock: RawClock;
  private readonly port: number;
  private readonly bind: string | undefined;
  private readonly allowList: AllowList;
  private readonly denyAction: 'kod' | 'silent';
  private readonly keys: Map<number, SymmetricKey>;
  private readonly requireAuth: boolean;
  private readonly localStratum: number;
  private readonly upstream: (() => UpstreamInfo | undefined) | undefined;
  private readonly limiter: RateLimiter | undefined;
  private readonly precision: number;
  private readonly precisionSeconds: number;
  private readonly startUtcNs: bigint;
  private readonly authDelayNs = new Map<SymmetricKey, bigint>();
  private socket: Socket | undefined;
  private readonly probe: ReceiveLatencyProbe | undefined;
  private readonly sendLatency: SendLatencyEstimate | undefined;
  private readonly counters: NtpServerStats = {
    served: 0,
    rateLimited: 0,
    denied: 0,
    malformed: 0,
    authFailed: 0,
    ignored: 0,
    kodSent: 0,
    authenticated: 0,
    errors: 0,
  };

  constructor(options: NtpServerOptions) {
    this.timescale = options.timescale;
    this.clock = options.timescale.clock;
    this.port = options.port ?? DEFAULT_NTP_PORT;
    if (!Number.isInteger(this.port) || this.port < 0 || this.port > 65535) throw new NtpServerError(`port ${this.port} is not 0–65535`);
    this.bind = options.bind;
    this.allowList = new AllowList(options.allow ?? []);
    this.denyAction = options.denyAction ?? 'kod';
    this.keys = options.keys ?? new Map();
    this.requireAuth = options.requireAuth ?? false;
    this.localStratum = options.localStratum ?? DEFAULT_LOCAL_STRATUM;
    if (!Number.isInteger(this.localStratum) || this.localStratum < 1 || this.localStratum > 15) {
      throw new NtpServerError(`local stratum ${this.localStratum} is not 1–15`);
    }
    this.upstream = options.upstream;
    this.limiter = options.rateLimit === false ? undefined : new RateLimiter(options.rateLimit ?? {});
    this.precision = measurePrecision(this.clock);
    this.precisionSeconds = 2 ** this.precision;
    this.startUtcNs = this.timescale.nowNs();
    this.probe = options.compensateReceiveLatency === false ? undefined : new ReceiveLatencyProbe();
    this.sendLatency = options.compensateReceiveLatency === false ? undefined : new SendLatencyEstimate();
  }

  /** Binds and starts answering; resolves to the address actually bound (port 0 picks a free one). */
  async start(): Promise<{ address: string; port: number }> {
    if (this.socket) throw new NtpServerError('the server is already started');
    const candidates = this.bind !== undefined ? [this.bind] : ['::', '0.0.0.0'];
    let lastError: unknown;
    for (const address of candidates) {
      try {
        this.socket = await this.bindSocket(address);
        const bound = this.socket.address();
        await this.startProbe(bound.address, bound.port);
        return { address: bound.address, port: bound.port };
      } catch (error) {
        lastError = error;
        const code = (error as NodeJS.ErrnoException).code;
        // Only a host without IPv6 earns the IPv4 fallback; other failures are the user's to fix.
        if (!(this.bind === undefined && address === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL'))) break;
      }
    }
    throw this.explainBindError(lastError, candidates.length === 1 ? candidates[0]! : this.bind ?? '::');
  }

  private async startProbe(address: string, port: number): Promise<void> {
    if (!this.probe) return;
    const target = address === '::' ? '::1' : address === '0.0.0.0' ? '127.0.0.1' : address;
    try {
      await this.probe.start(target, port);
    } catch {
      // Without the probe we serve uncompensated receive timestamps: worse, not wrong.
      await this.probe.stop();
    }
  }

  /** The latencies currently compensated (receive: subtracted, its spread added to the root dispersion; send: added), ns. */
  latency(): { receiveNs: number; receiveSpreadNs: number; receiveSamples: number; sendNs: number; sendSamples: number } {
    return {
      receiveNs: this.probe?.estimateNs ?? 0,
      receiveSpreadNs: this.probe?.spreadNs ?? 0,
      receiveSamples: this.probe?.samples ?? 0,
      sendNs: this.sendLatency?.estimateNs ?? 0,
      sendSamples: this.sendLatency?.samples ?? 0,
    };
  }

  private bindSocket(address: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', ipv6Only: false });
      const onError = (error: Error) => {
        socket.close();
        reject(error);
      };
      socket.once('error', onError);
      socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
      socket.bind(this.port, address, () => {
        socket.off('error', onError);
        socket.on('error', () => this.counters.errors++);
        try {
          socket.setRecvBufferSize(RECEIVE_BUFFER_BYTES);
        } catch {
          /* the kernel's limit stands */
        }
        resolve(socket);
      });
    });
  }

  private explainBindError(error: unknown, address: string): Error {
    const code = (error as NodeJS.ErrnoException)?.code;
    const where = `${address.includes(':') ? `[${address}]` : address}:${this.port}`;
    switch (code) {
      case 'EACCES':
      case 'EPERM':
        return new NtpServerError(
          `cannot bind ${where}: ports below 1024 need privilege. Use a port above 1024 (--port 1123), ` +
            `or give node the capability: sudo setcap cap_net_bind_service=+ep "$(command -v node)", ` +
            `or run it under systemd with AmbientCapabilities=CAP_NET_BIND_SERVICE`,
          code,
        );
      case 'EADDRINUSE':
        return new NtpServerError(`cannot bind ${where}: the port is in use (is chronyd or ntpd serving on it?)`, code);
      case 'EADDRNOTAVAIL':
        return new NtpServerError(`cannot bind ${where}: no interface on this machine has that address`, code);
      default:
        return new NtpServerError(`cannot bind ${where}: ${(error as Error)?.message ?? String(error)}`, code);
    }
  }

  /** Stops answering and releases the port. */
  async stop(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    await this.probe?.stop();
    if (!socket) return;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  get running(): boolean {
    return this.socket !== undefined;
  }

  /** Counters since start (a copy). */
  stats(): NtpServerStats {
    return { ...this.counters };
  }

  /** Clients the rate limiter currently remembers (bounded by its maxClients). */
  get trackedClients(): number {
    return this.limiter?.size ?? 0;
  }

  /** What a reply sent now would say about our time. */
  reference(rawNs: bigint = this.clock.nowNs()): ServerReference {
    const errorBoundNs = this.timescale.errorBoundNs(rawNs);
    const errorBoundSeconds = errorBoundNs / 1e9;
    const lastRaw = this.timescale.lastEstimateRawNs;
    const referenceTimeNs = lastRaw !== undefined ? this.timescale.utcAt(lastRaw) : this.startUtcNs;
    const up = this.upstream?.();
    const unsynchronizedReason = !this.timescale.synchronized
      ? 'our time is not synchronized yet'
      : !(errorBoundSeconds <= MAX_TRUSTWORTHY_ERROR_SECONDS)
        ? `our error bound ${errorBoundSeconds.toFixed(3)} s exceeds ${MAX_TRUSTWORTHY_ERROR_SECONDS} s`
        : up?.leap === LEAP_UNSYNCHRONIZED
          ? (up.reason ?? 'our time source is not synchronized')
          : undefined;
    if (unsynchronizedReason !== undefined) {
      return {
        unsynchronizedReason,
        leap: LEAP_UNSYNCHRONIZED,
        stratum: STRATUM_UNSYNCHRONIZED,
        refId: 0,
        rootDelaySeconds: 0,
        rootDispersionSeconds: UNSYNCHRONIZED_DISPERSION_SECONDS,
        errorBoundSeconds,
        referenceTimeNs: this.timescale.synchronized ? referenceTimeNs : 0n,
      };
    }
    const rootDelaySeconds = up ? Math.max(0, up.rootDelaySeconds) : 0;
    // A client's bound on our error is rootDelay/2 + rootDispersion: make it cover our own bound.
    const rootDispersionSeconds =
      Math.max(up ? up.rootDispersionSeconds : 0, errorBoundSeconds - rootDelaySeconds / 2) +
      this.precisionSeconds +
      (this.probe?.spreadNs ?? 0) / 1e9;
    return {
      leap: 0,
      stratum: up ? Math.min(15, Math.max(1, up.stratum + 1)) : this.localStratum,
      refId: up ? up.refId >>> 0 : LOCAL_REFID,
      rootDelaySeconds,
      rootDispersionSeconds,
      errorBoundSeconds,
      referenceTimeNs,
    };
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const hrtimeNs = process.hrtime.bigint(); // first thing: the receive timestamp
    const receiveRawNs = this.clock.nowNs();
    try {
      if (this.probe?.consume(msg, rinfo, hrtimeNs)) {
        this.echoProbe(msg, rinfo);
        return;
      }
      this.handle(msg, rinfo, receiveRawNs - BigInt(this.probe?.estimateNs ?? 0));
    } catch {
      this.counters.errors++;
    }
  }

  private handle(msg: Buffer, rinfo: RemoteInfo, receiveRawNs: bigint): void {
    if (msg.length < NTP_HEADER_BYTES) {
      this.counters.malformed++;
      return;
    }
    const mode = msg[0]! & 7;
    const version = (msg[0]! >> 3) & 7;
    // Only client requests, NTPv1–4, from a port we can answer.
    if (mode !== 3 || version < 1 || version > 4 || rinfo.port === 0) {
      this.counters.ignored++;
      return;
    }
    if (!this.allowList.allows(rinfo.address)) {
      this.counters.denied++;
      if (this.denyAction === 'kod' && (this.limiter?.check(rinfo.address, receiveRawNs) ?? 'pass') !== 'drop') {
        this.sendKod(msg, rinfo, 'DENY');
      }
      return;
    }
    if (this.limiter) {
      const decision = this.limiter.check(rinfo.address, receiveRawNs);
      if (decision !== 'pass') {
        this.counters.rateLimited++;
        if (decision === 'kod') this.sendKod(msg, rinfo, 'RATE');
        return;
      }
    }
    let request: NtpPacket;
    try {
      request = decodePacketWithMac(msg);
    } catch {
      this.counters.malformed++;
      return;
    }
    let key: SymmetricKey | undefined;
    if (request.mac) {
      const verdict = verifyMac(msg, request, this.keys);
      if (!verdict.ok) {
        this.counters.authFailed++;
        return;
      }
      key = verdict.key;
    } else if (this.requireAuth) {
      this.counters.authFailed++;
      return;
    }
    this.reply(msg, request, rinfo, receiveRawNs, key);
  }

  private reply(msg: Buffer, request: NtpPacket, rinfo: RemoteInfo, receiveRawNs: bigint, key: SymmetricKey | undefined): void {
    const ref = this.reference(receiveRawNs);
    const buf = Buffer.allocUnsafe(NTP_HEADER_BYTES);
    buf[0] = (ref.leap << 6) | (request.version << 3) | 4;
    buf[1] = ref.stratum;
    buf.writeInt8(request.poll, 2);
    buf.writeInt8(this.precision, 3);
    buf.writeUInt32BE(secondsToShort(ref.rootDelaySeconds), 4);
    buf.writeUInt32BE(secondsToShort(ref.rootDispersionSeconds), 8);
    buf.writeUInt32BE(ref.refId, 12);
    buf.writeBigUInt64BE(ref.referenceTimeNs === 0n ? 0n : unixNsToNtp(ref.referenceTimeNs), 16);
    msg.copy(buf, 24, 40, 48); // origin: the client's transmit timestamp, bit for bit
    buf.writeBigUInt64BE(unixNsToNtp(this.timescale.utcAt(receiveRawNs)), 32);
    const maxDigest = request.version === 4 ? MAX_V4_DIGEST_BYTES : MAX_DIGEST_BYTES;
    // Last: the transmit timestamp, ahead by what the MAC will cost to compute and by
    // half the usual time until send(2) has returned: like the receive probe, we take
    // the middle of the bracket as the instant the datagram left.
    const transmitRawNs =
      this.clock.nowNs() + (key ? this.authDelay(key, maxDigest) : 0n) + BigInt(Math.round((this.sendLatency?.estimateNs ?? 0) / 2));
    buf.writeBigUInt64BE(unixNsToNtp(this.timescale.utcAt(transmitRawNs)), 40);
    const out = key ? appendMac(buf, key, maxDigest) : buf;
    if (out.length > msg.length) {
      // Cannot happen for a verified request (same key, same digest length); never amplify regardless.
      this.counters.errors++;
      return;
    }
    this.send(out, rinfo);
    this.counters.served++;
    if (key) this.counters.authenticated++;
  }

  /**
   * Answers our own latency probe through the same send path as a reply, to
   * time it (SendLatencyEstimate) whatever the client traffic: a next tick
   * queued after dgram's own next-tick send runs once send(2) has returned.
   */
  private echoProbe(msg: Buffer, rinfo: RemoteInfo): void {
    if (!this.sendLatency) return;
    const startNs = process.hrtime.bigint();
    this.send(msg, rinfo);
    process.nextTick(() => this.sendLatency!.record(Number(process.hrtime.bigint() - startNs)));
  }

  /** A Kiss-o'-Death: stratum 0 and the code as refid; it carries no time (the client's own transmit echoed). */
  private sendKod(msg: Buffer, rinfo: RemoteInfo, code: 'DENY' | 'RATE'): void {
    const buf = Buffer.alloc(NTP_HEADER_BYTES);
    buf[0] = (LEAP_UNSYNCHRONIZED << 6) | (((msg[0]! >> 3) & 7) << 3) | 4;
    buf[1] = 0;
    buf[2] = msg[2]!;
    buf.writeInt8(this.precision, 3);
    buf.writeUInt32BE(asciiRefId(code), 12);
    msg.copy(buf, 24, 40, 48);
    msg.copy(buf, 32, 40, 48);
    msg.copy(buf, 40, 40, 48);
    this.send(buf, rinfo);
    this.counters.kodSent++;
  }

  private send(buf: Buffer, rinfo: RemoteInfo): void {
    this.socket?.send(buf, rinfo.port, rinfo.address, (error) => {
      if (error) this.counters.errors++;
    });
  }

  /** The time to compute one MAC with this key, measured once (the minimum of a few runs), like chrony's auth delay. */
  private authDelay(key: SymmetricKey, maxDigest: number): bigint {
    let delay = this.authDelayNs.get(key);
    if (delay === undefined) {
      const sample = Buffer.alloc(NTP_HEADER_BYTES);
      let best = Infinity;
      for (let i = 0; i < AUTH_DELAY_RUNS; i++) {
        const t0 = process.hrtime.bigint();
        computeDigest(key, sample, maxDigest);
        best = Math.min(best, Number(process.hrtime.bigint() - t0));
      }
      delay = BigInt(Math.round(best));
      this.authDelayNs.set(key, delay);
    }
    return delay;
  }
}

/** Runs when measuring the MAC cost; the minimum is the cost without interruptions. */
const AUTH_DELAY_RUNS = 5;

/**
 * NTP's precision: log2 of the clock's resolution in seconds, here the
 * smallest step seen between consecutive readings (the read itself costs
 * ~50 ns, so that is what limits us, not hrtime's nanoseconds).
 */
function measurePrecision(clock: RawClock): number {
  let smallest = Infinity;
  let previous = clock.nowNs();
  for (let i = 0; i < PRECISION_SAMPLES; i++) {
    const now = clock.nowNs();
    const step = Number(now - previous);
    if (step > 0) smallest = Math.min(smallest, step);
    previous = now;
  }
  if (!Number.isFinite(smallest)) return -20;
  return Math.max(-30, Math.min(-6, Math.ceil(Math.log2(smallest / 1e9))));
}

const PRECISION_SAMPLES = 100;
