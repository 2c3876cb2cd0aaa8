/**
 * A wake-up margin learnt from the lateness observed on this machine: start
 * safe, then follow a high quantile of recent samples (with headroom), within
 * bounds. A wake that arrived after the margin was used up doubles it at
 * once: missing a deadline costs more than spinning a little longer.
 */

export interface MarginOptions {
  initialNs: number;
  minNs: number;
  maxNs: number;
  /** Which quantile of the recent lateness the margin must cover (0.99: p99). */
  quantile?: number;
  /** Multiplier over that quantile. */
  headroom?: number;
  /** How many recent samples are kept. */
  window?: number;
  /** False: keep initialNs forever (for reproducible benchmarks and tests). */
  adapt?: boolean;
}

/** 256 samples: a few minutes of once-a-second fires, a p99 from ~2–3 outliers. */
const DEFAULT_WINDOW = 256;
/** Fewer samples than this say nothing about a p99: keep the initial margin. */
const MIN_SAMPLES_TO_LEARN = 32;

export class AdaptiveMargin {
  private readonly samples: number[] = [];
  private next = 0;
  private current: number;
  private readonly quantile: number;
  private readonly headroom: number;
  private readonly window: number;
  private readonly adapt: boolean;

  constructor(private readonly options: MarginOptions) {
    this.current = options.initialNs;
    this.quantile = options.quantile ?? 0.99;
    this.headroom = options.headroom ?? 1.25;
    this.window = options.window ?? DEFAULT_WINDOW;
    this.adapt = options.adapt ?? true;
  }

  get ns(): number {
    return this.current;
  }

  /** Records how late a wake-up was (negative: early) against its target. */
  record(latenessNs: number, exceededMargin = false): void {
    // Beyond the largest margin we would ever use, it was a stall or a suspend, not wake-up jitter.
    if (!this.adapt || latenessNs > this.options.maxNs) return;
    if (this.samples.length < this.window) this.samples.push(latenessNs);
    else this.samples[this.next] = latenessNs;
    this.next = (this.next + 1) % this.window;
    if (exceededMargin) {
      this.current = this.bounded(Math.max(this.current * 2, latenessNs * this.headroom));
      return;
    }
    if (this.samples.length < MIN_SAMPLES_TO_LEARN) return;
    const sorted = [...this.samples].sort((a, b) => a - b);
    const q = sorted[Math.min(sorted.length - 1, Math.ceil(this.quantile * sorted.length) - 1)]!;
    this.current = this.bounded(Math.max(0, q) * this.headroom);
  }

  private bounded(ns: number): number {
    return Math.min(this.options.maxNs, Math.max(this.options.minNs, ns));
  }
}
