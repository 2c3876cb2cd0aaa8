/**
 * Per-client rate limiting for the NTP server: a token bucket per address,
 * in bounded memory.
 *
 * Each address may send `burst` requests at once and `ratePerSecond` on
 * average. Over the limit, a client is told to back off with a KoD RATE at
 * most once per `kodIntervalMs`; the rest is dropped silently, so a spoofed
 * flood cannot turn the server into a reflector. At most `maxClients`
 * addresses are remembered; the least recently seen is forgotten first (a
 * forgotten client simply starts again with a full bucket).
 */

export interface RateLimitOptions {
  /** Sustained requests per second per address. */
  ratePerSecond?: number;
  /** Requests an address may send back to back (an iburst start is 4–8). */
  burst?: number;
  /** Minimum spacing of KoD RATE replies to one address. */
  kodIntervalMs?: number;
  /** Addresses remembered at most (about 100 bytes each). */
  maxClients?: number;
}

/**
 * 2 per second with a burst of 16: a node polls every 16–64 s once
 * synchronized and sends 4–8 requests ~0.25–2 s apart when starting, so this
 * leaves room for several nodes behind one NAT address and still caps a
 * flooder at 2 replies a second.
 */
export const DEFAULT_RATE_PER_SECOND = 2;
export const DEFAULT_BURST = 16;
/** One KoD a second tells a client enough; more would be reflection fodder. */
export const DEFAULT_KOD_INTERVAL_MS = 1000;
/** 10,000 addresses ≈ 1 MB: far beyond any LAN, small on a Pi. */
export const DEFAULT_MAX_CLIENTS = 10_000;

export type RateDecision = 'pass' | 'kod' | 'drop';

interface Bucket {
  tokens: number;
  lastNs: bigint;
  lastKodNs: bigint | undefined;
}

export class RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly kodIntervalNs: bigint;
  readonly maxClients: number;
  private readonly buckets = new Map<string, Bucket>();

  constructor(options: RateLimitOptions = {}) {
    this.ratePerSecond = options.ratePerSecond ?? DEFAULT_RATE_PER_SECOND;
    this.burst = options.burst ?? DEFAULT_BURST;
    this.kodIntervalNs = BigInt(Math.round((options.kodIntervalMs ?? DEFAULT_KOD_INTERVAL_MS) * 1e6));
    this.maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
    if (!(this.ratePerSecond > 0) || !(this.burst >= 1) || !(this.maxClients >= 1)) {
      throw new RangeError('rate limit: ratePerSecond > 0, burst ≥ 1 and maxClients ≥ 1 are required');
    }
  }

  /** Addresses currently remembered. */
  get size(): number {
    return this.buckets.size;
  }

  /** Decides on one request from `address` arriving at monotonic `nowNs`. */
  check(address: string, nowNs: bigint): RateDecision {
    let bucket = this.buckets.get(address);
    if (bucket) {
      // Re-insert so Map order is least-recently-seen first.
      this.buckets.delete(address);
      const elapsedSeconds = Number(nowNs - bucket.lastNs) / 1e9;
      bucket.tokens = Math.min(this.burst, bucket.tokens + Math.max(0, elapsedSeconds) * this.ratePerSecond);
      bucket.lastNs = nowNs;
    } else {
      if (this.buckets.size >= this.maxClients) {
        const oldest = this.buckets.keys().next().value as string;
        this.buckets.delete(oldest);
      }
      bucket = { tokens: this.burst, lastNs: nowNs, lastKodNs: undefined };
    }
    this.buckets.set(address, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 'pass';
    }
    if (bucket.lastKodNs === undefined || nowNs - bucket.lastKodNs >= this.kodIntervalNs) {
      bucket.lastKodNs = nowNs;
      return 'kod';
    }
    return 'drop';
  }
}
