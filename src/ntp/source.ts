/**
 * One NTP server as seen by the client: the per-source protocol (RFC 5905
 * client mode). It builds requests, validates replies, turns a valid reply
 * into a Sample, keeps the reach register and decides when to poll next.
 * It does no I/O: client.ts owns the sockets and the timers, so this file can
 * be tested with bytes alone.
 *
 * Anti-spoofing: the transmit timestamp of each request is 64 random bits (a
 * nonce); the real T1 is kept here, read from the RAW clock. A reply counts
 * only if its origin timestamp equals the nonce of the request in flight, and
 * only once (the nonce is consumed), so a duplicate or a replay is dropped.
 */
import { randomBytes } from 'node:crypto';
import { encodePacket, kissCode, Mode, LEAP_UNSYNCHRONIZED, NtpDecodeError, type NtpPacket } from './packet.js';
import { ntpToUnixNs, type NtpTimestamp } from './timestamp.js';
import { appendMac, decodePacketWithMac, verifyMac, type SymmetricKey } from './auth.js';

export interface NtpServerSpec {
  host: string;
  port: number;
  /** Authenticate requests and replies with this key (from the client's keys). */
  keyId?: number;
}

/**
 * One measurement: server UTC − local RAW time at the raw midpoint of the
 * exchange (NTP's θ), and the round-trip delay (δ) measured on the raw clock.
 */
export interface Sample {
  /** Raw instant the offset refers to: (T1 + T4) / 2 on the raw clock. */
  rawNs: bigint;
  /** Server UTC − raw at rawNs, ns (bigint: a Pi that boots in 1970 is 1.7e18 ns off). */
  offsetNs: bigint;
  /** Round-trip delay minus the server's processing time, ns. */
  delayNs: number;
  stratum: number;
  leap: number;
  refId: number;
  rootDelayNs: number;
  rootDispersionNs: number;
}

export type ReplyResult =
  | { kind: 'sample'; sample: Sample }
  | { kind: 'rejected'; reason: string }
  /** A Kiss-o'-Death: RATE → the source backs off; DENY/RSTR → the source is dropped. */
  | { kind: 'kiss'; code: string; action: 'backoff' | 'drop' | 'ignored' };

/** NTP versions we accept in a reply: servers answer with the request's (4); v3 servers still exist. */
const ACCEPTED_VERSIONS = new Set([3, 4]);
/** RFC 5905 MAXDIST (1.5 s): a server further than this from a reference clock is no use to us. */
export const MAX_ROOT_DISTANCE_NS = 1.5e9;
/** A round trip longer than this (3 s) cannot give a useful offset; it is a stale or forged reply. */
const MAX_DELAY_NS = 3e9;
/**
 * A delay slightly below zero is rounding (the server's 2^-32 s timestamps,
 * a clock read a microsecond early); one far below zero is a lying server.
 */
const NEGATIVE_DELAY_TOLERANCE_NS = 1_000;
/** Our request's poll field: log2 of the poll interval, within NTP's range. */
const MIN_POLL_EXPONENT = -6;
const MAX_POLL_EXPONENT = 17;
/** Our precision as advertised in requests (~1 µs: process.hrtime). */
const PRECISION_EXPONENT = -20;

export class SourceProtocolError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'SourceProtocolError';
  }
}

export interface PollOptions {
  minPollSeconds: number;
  maxPollSeconds: number;
  /** Polls sent at the start, BURST_INTERVAL apart (iburst). */
  burstPolls?: number;
  burstIntervalSeconds?: number;
}

/** iburst: four quick polls give offset and a first frequency within a second. */
export const DEFAULT_BURST_POLLS = 4;
export const DEFAULT_BURST_INTERVAL_SECONDS = 0.25;
/** This many stable samples in a row and the poll interval doubles. */
const STABLE_SAMPLES_TO_BACK_OFF = 4;
/**
 * No back-off while the frequency is known worse than this (ppm, the
 * estimate's own bound): every second of polling fast is what narrows it,
 * and each ppm costs 1 µs of error per second of holdover between polls.
 */
export const SETTLED_FREQUENCY_PPM = 5;
/** A KoD RATE may push the interval up to this even when maxPoll is shorter (17 min). */
const RATE_BACKOFF_CAP_SECONDS = 1024;
/** A sample this many times further than expected from the prediction: poll faster again. */
const UNSTABLE_FACTOR = 4;

/**
 * The poll interval: an iburst-style fast start, then minPoll, doubling
 * toward maxPoll while the samples keep agreeing with the prediction, back
 * to minPoll when they stop agreeing. A KoD RATE doubles it at once.
 */
export class PollSchedule {
  readonly minPollSeconds: number;
  readonly maxPollSeconds: number;
  private burstLeft: number;
  private readonly burstIntervalSeconds: number;
  private interval: number;
  private stableRun = 0;
  /** Set by a KoD RATE: the interval may not go below this again. */
  private floorSeconds: number;

  constructor(options: PollOptions) {
    if (!(options.minPollSeconds > 0) || !(options.maxPollSeconds >= options.minPollSeconds)) {
      throw new RangeError('poll intervals must be positive and minPollSeconds ≤ maxPollSeconds');
    }
    this.minPollSeconds = options.minPollSeconds;
    this.maxPollSeconds = options.maxPollSeconds;
    this.burstLeft = options.burstPolls ?? DEFAULT_BURST_POLLS;
    this.burstIntervalSeconds = Math.min(options.burstIntervalSeconds ?? DEFAULT_BURST_INTERVAL_SECONDS, this.minPollSeconds);
    this.interval = this.minPollSeconds;
    this.floorSeconds = this.minPollSeconds;
  }

  /** Seconds until the poll after the one just sent. */
  next(): number {
    if (this.burstLeft > 1) {
      this.burstLeft--;
      return this.burstIntervalSeconds;
    }
    this.burstLeft = 0;
    return this.interval;
  }

  /** The interval in force after the burst. */
  get intervalSeconds(): number {
    return this.interval;
  }

  /**
   * A valid sample arrived; `deviation` = |its offset − the prediction| / what
   * was expected, `frequencyBoundPpm` = the estimate's frequency uncertainty
   * after it (undefined: not known yet, which counts as unsettled).
   */
  noteSample(deviation: number, frequencyBoundPpm?: number): void {
    if (!(frequencyBoundPpm !== undefined && frequencyBoundPpm <= SETTLED_FREQUENCY_PPM)) {
      // Still learning the frequency: poll as fast as allowed, whatever the samples look like.
      this.stableRun = 0;
      this.interval = this.floorSeconds;
      return;
    }
    if (!Number.isFinite(deviation)) return;
    if (deviation > UNSTABLE_FACTOR) {
      this.stableRun = 0;
      this.interval = this.floorSeconds;
      return;
    }
    if (++this.stableRun >= STABLE_SAMPLES_TO_BACK_OFF) {
      this.stableRun = 0;
      this.interval = Math.max(this.interval, Math.min(this.maxPollSeconds, this.interval * 2));
    }
  }

  /**
   * KoD RATE: the server asks us to poll less often. Honoured even beyond
   * maxPoll (the server's load outranks our wish), and we never go back
   * below the new interval.
   */
  backOff(): void {
    this.burstLeft = 0;
    this.stableRun = 0;
    const cap = Math.max(this.maxPollSeconds, RATE_BACKOFF_CAP_SECONDS);
    this.interval = Math.min(cap, Math.max(this.interval * 2, this.minPollSeconds * 2));
    this.floorSeconds = this.interval;
  }
}

export interface NtpSourceOptions extends PollOptions {
  spec: NtpServerSpec;
  /** The client's keys; spec.keyId must name one of them. */
  keys?: Map<number, SymmetricKey>;
}

interface InFlight {
  nonce: NtpTimestamp;
  t1RawNs: bigint;
}

/** The per-source protocol state: request in flight, reach, errors, poll schedule. */
export class NtpSource {
  readonly spec: NtpServerSpec;
  readonly address: string;
  readonly poll: PollSchedule;
  private readonly key: SymmetricKey | undefined;
  private readonly keys: Map<number, SymmetricKey> | undefined;
  private inFlight: InFlight | undefined;
  /** The nonce of the last reply accepted: a second reply to it is a duplicate. */
  private lastAnsweredNonce: NtpTimestamp | undefined;
  private reachRegister = 0;
  private pollsSent = 0;
  /** Set by a KoD DENY/RSTR: we stop polling this server. */
  private dropReason: string | undefined;
  lastError: string | undefined;
  lastPacket: NtpPacket | undefined;
  /** Counters for status and tests. */
  readonly counts = { sent: 0, accepted: 0, rejected: 0, kisses: 0 };

  constructor(options: NtpSourceOptions) {
    this.spec = options.spec;
    this.address = formatAddress(options.spec.host, options.spec.port);
    this.poll = new PollSchedule(options);
    this.keys = options.keys;
    if (options.spec.keyId !== undefined) {
      const key = options.keys?.get(options.spec.keyId);
      if (!key) throw new SourceProtocolError(`${this.address}: key ${options.spec.keyId} is not in the keyfile`);
      this.key = key;
    }
  }

  /** The 8-bit reach register: bit 0 is the latest poll, 1 if it was answered validly. */
  get reach(): number {
    return this.reachRegister;
  }

  get dropped(): string | undefined {
    return this.dropReason;
  }

  get polls(): number {
    return this.pollsSent;
  }

  /**
   * Builds the next request. t1RawNs is the raw time read just before sending:
   * kept here, never put on the wire (the wire carries the random nonce).
   */
  buildRequest(t1RawNs: bigint): Buffer {
    let nonce = 0n;
    while (nonce === 0n) nonce = randomBytes(8).readBigUInt64BE(); // zero means "no timestamp"
    const packet: NtpPacket = {
      leap: 0,
      version: 4,
      mode: Mode.Client,
      stratum: 0,
      poll: pollExponent(this.poll.intervalSeconds),
      precision: PRECISION_EXPONENT,
      rootDelaySeconds: 0,
      rootDispersionSeconds: 0,
      referenceId: 0,
      referenceTime: 0n,
      originTime: 0n,
      receiveTime: 0n,
      transmitTime: nonce,
      extensions: [],
    };
    let bytes = encodePacket(packet);
    if (this.key) bytes = appendMac(bytes, this.key);
    this.inFlight = { nonce, t1RawNs };
    // The reach register shifts at every poll; an answer sets bit 0.
    this.reachRegister = (this.reachRegister << 1) & 0xff;
    this.pollsSent++;
    this.counts.sent++;
    return bytes;
  }

  /** Re-stamps T1 right before the datagram leaves (the MAC was computed before). */
  restampT1(t1RawNs: bigint): void {
    if (this.inFlight) this.inFlight.t1RawNs = t1RawNs;
  }

  /**
   * Validates a reply that arrived at raw time t4RawNs. pivotUtcNs is our
   * current idea of UTC, used to pick the NTP era of the server's timestamps.
   * Never throws: any packet, however malformed, gives a result.
   */
  handleReply(bytes: Buffer, t4RawNs: bigint, pivotUtcNs: (rawNs: bigint) => bigint): ReplyResult {
    const result = this.validate(bytes, t4RawNs, pivotUtcNs);
    if (result.kind === 'rejected') {
      this.counts.rejected++;
      this.lastError = result.reason;
    } else if (result.kind === 'kiss') {
      this.counts.kisses++;
    } else {
      this.counts.accepted++;
      this.lastError = undefined;
    }
    return result;
  }

  private validate(bytes: Buffer, t4RawNs: bigint, pivotUtcNs: (rawNs: bigint) => bigint): ReplyResult {
    let packet: NtpPacket;
    try {
      packet = decodePacketWithMac(bytes);
    } catch (error) {
      if (error instanceof NtpDecodeError) return reject(error.message);
      return reject(`undecodable reply: ${(error as Error).message}`);
    }
    if (packet.mode !== Mode.Server) return reject(`mode ${packet.mode} is not a server reply (4)`);
    if (!ACCEPTED_VERSIONS.has(packet.version)) return reject(`NTP version ${packet.version} is not supported`);
    const inFlight = this.inFlight;
    if (!inFlight || packet.originTime !== inFlight.nonce) {
      if (this.lastAnsweredNonce !== undefined && packet.originTime === this.lastAnsweredNonce) {
        return reject('duplicate reply (this request was already answered)');
      }
      return reject('origin timestamp does not match our request (stale or spoofed reply)');
    }
    if (this.key) {
      const auth = this.keys ? verifyMac(bytes, packet, this.keys) : { ok: false as const, reason: 'no keys' };
      if (!auth.ok) return reject(`authentication failed: ${auth.reason}`); // the request stays in flight
      if (auth.key.id !== this.key.id) return reject(`reply signed with key ${auth.key.id}, we asked with ${this.key.id}`);
    }
    // From here on the reply is the genuine answer to our request: consume it.
    this.inFlight = undefined;
    this.lastAnsweredNonce = inFlight.nonce;
    this.lastPacket = packet;

    const kiss = kissCode(packet);
    if (kiss !== undefined) return this.kiss(kiss);
    if (packet.leap === LEAP_UNSYNCHRONIZED) return reject('server is unsynchronized (leap indicator 3)');
    if (packet.stratum < 1 || packet.stratum > 15) return reject(`stratum ${packet.stratum} is outside 1–15`);
    if (packet.receiveTime === 0n) return reject('receive timestamp is zero');
    if (packet.transmitTime === 0n) return reject('transmit timestamp is zero');
    const rootDistanceNs = (packet.rootDelaySeconds / 2 + packet.rootDispersionSeconds) * 1e9;
    if (rootDistanceNs > MAX_ROOT_DISTANCE_NS) {
      return reject(`root distance ${(rootDistanceNs / 1e9).toFixed(3)} s exceeds ${MAX_ROOT_DISTANCE_NS / 1e9} s`);
    }
    const t1 = inFlight.t1RawNs;
    const pivot = pivotUtcNs(t1);
    const t2 = ntpToUnixNs(packet.receiveTime, pivot);
    const t3 = ntpToUnixNs(packet.transmitTime, pivot);
    const serverTimeNs = Number(t3 - t2);
    if (serverTimeNs < 0) return reject('server transmitted before it received (T3 < T2)');
    const delayNs = Number(t4RawNs - t1) - serverTimeNs;
    if (delayNs < -NEGATIVE_DELAY_TOLERANCE_NS) return reject(`negative round-trip delay ${(delayNs / 1e3).toFixed(1)} µs`);
    if (delayNs > MAX_DELAY_NS) return reject(`round-trip delay ${(delayNs / 1e9).toFixed(2)} s is too long`);
    // θ = ((T2 − T1) + (T3 − T4)) / 2, at the raw midpoint (T1 + T4) / 2.
    const offsetNs = (t2 - t1 + (t3 - t4RawNs)) / 2n;
    this.reachRegister |= 1;
    return {
      kind: 'sample',
      sample: {
        rawNs: t1 + (t4RawNs - t1) / 2n,
        offsetNs,
        delayNs: Math.max(0, delayNs),
        stratum: packet.stratum,
        leap: packet.leap,
        refId: packet.referenceId,
        rootDelayNs: packet.rootDelaySeconds * 1e9,
        rootDispersionNs: packet.rootDispersionSeconds * 1e9,
      },
    };
  }

  private kiss(code: string): ReplyResult {
    if (code === 'RATE') {
      this.poll.backOff();
      this.lastError = `server asked us to slow down (KoD RATE); polling every ${this.poll.intervalSeconds} s`;
      return { kind: 'kiss', code, action: 'backoff' };
    }
    if (code === 'DENY' || code === 'RSTR') {
      this.dropReason = `server refused us (KoD ${code}); source dropped`;
      this.lastError = this.dropReason;
      return { kind: 'kiss', code, action: 'drop' };
    }
    // RFC 5905: other codes are stratum-0 packets with no time in them.
    this.lastError = `kiss code '${code}' (no time in it)`;
    return { kind: 'kiss', code, action: 'ignored' };
  }
}

function reject(reason: string): ReplyResult {
  return { kind: 'rejected', reason };
}

export function pollExponent(seconds: number): number {
  return Math.max(MIN_POLL_EXPONENT, Math.min(MAX_POLL_EXPONENT, Math.round(Math.log2(seconds))));
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
