/**
 * The clock filter (RFC 5905 §10), one per source: the last few samples,
 * from which the minimum-delay one is the best single measurement (its
 * offset error is at most half its delay, and the least delayed sample has
 * the least room for queueing asymmetry), and the jitter is the RMS spread
 * of the others around it.
 *
 * The regression (sourcestats.ts) sees every sample, weighted by its delay
 * (that weighting, not a reject-the-spike test, is what keeps a delayed
 * sample from pulling the estimate); the filter gives the "last sample" view
 * chronyc sources shows and the jitter.
 */
import type { Sample } from './source.js';

/** RFC 5905 NSTAGE: eight samples are enough to find one that crossed an idle network. */
export const FILTER_STAGES = 8;

export interface FilterOutput {
  /** The minimum-delay sample among the last FILTER_STAGES. */
  best: Sample;
  /** RMS of the other samples' offsets about the best one, frequency-corrected, ns. */
  jitterNs: number;
  /** Smallest delay in the filter, ns. */
  minDelayNs: number;
}

export class ClockFilter {
  private readonly samples: Sample[] = [];

  get size(): number {
    return this.samples.length;
  }

  /**
   * Adds a sample; frequencyPpm (d offset / d raw, the source's current
   * estimate) lets offsets taken at different instants be compared.
   */
  add(sample: Sample, frequencyPpm = 0): FilterOutput {
    this.samples.push(sample);
    if (this.samples.length > FILTER_STAGES) this.samples.shift();
    return this.output(frequencyPpm)!;
  }

  output(frequencyPpm = 0): FilterOutput | undefined {
    if (this.samples.length === 0) return undefined;
    let best = this.samples[0]!;
    for (const s of this.samples) if (s.delayNs < best.delayNs) best = s;
    let sumSquares = 0;
    for (const s of this.samples) {
      if (s === best) continue;
      const drift = Number(s.rawNs - best.rawNs) * frequencyPpm * 1e-6;
      const d = Number(s.offsetNs - best.offsetNs) - drift;
      sumSquares += d * d;
    }
    const n = this.samples.length - 1;
    return { best, jitterNs: n > 0 ? Math.sqrt(sumSquares / n) : 0, minDelayNs: best.delayNs };
  }

  clear(): void {
    this.samples.length = 0;
  }
}
