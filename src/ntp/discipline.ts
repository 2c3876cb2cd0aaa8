/**
 * The discipline: from the per-source estimates to one ClockEstimate for
 * Timescale.apply. Each source's estimate is brought to a common raw instant
 * and given an honest interval (its root distance), selection (select.ts)
 * votes out falsetickers and combines the rest, and the result becomes the
 * model's offset, frequency and error bound.
 */
import type { ClockEstimate } from '../time/timescale.js';
import type { Sample } from './source.js';
import type { SourceEstimate } from './sourcestats.js';
import { selectSources, type Candidate, type Selection } from './select.js';

/** Sigmas of the regression's own uncertainty counted into a bound. */
const BOUND_SIGMAS = 3;
/**
 * Frequency wander assumed while extrapolating a source's estimate (ppm):
 * a crystal drifts ~0.1–1 ppm with temperature.
 */
const WANDER_PPM = 0.5;
/** Never hand the Timescale a frequency beyond this: ±500 ppm is no crystal, it is a broken estimate. */
export const MAX_ESTIMATE_FREQUENCY_PPM = 500;

export interface SourceView {
  id: string;
  estimate: SourceEstimate;
  /** The latest sample: stratum, root delay and dispersion as the server last told them. */
  lastSample: Sample;
}

/**
 * The interval half-width a source's estimate at rawNowNs deserves: the
 * server's own distance from its reference (root delay/2 + dispersion), the
 * link's worst-case asymmetry (half the minimum delay), the regression's
 * uncertainty, and growth with the time since its last sample.
 */
export function sourceDistanceNs(view: SourceView, rawNowNs: bigint): number {
  const e = view.estimate;
  const ageS = Math.abs(Number(rawNowNs - e.rawNs)) / 1e9;
  if (e.offsetBoundNs !== undefined && e.frequencyBoundPpm !== undefined) {
    // The source's own bound (sourcestats.ts: the tighter of the regression's and the delay envelope's).
    return view.lastSample.rootDelayNs / 2 + view.lastSample.rootDispersionNs + e.offsetBoundNs + ageS * (e.frequencyBoundPpm + WANDER_PPM) * 1e3;
  }
  return (
    view.lastSample.rootDelayNs / 2 +
    view.lastSample.rootDispersionNs +
    e.minDelayNs / 2 +
    BOUND_SIGMAS * e.offsetSdNs +
    ageS * (BOUND_SIGMAS * e.frequencySdPpm + WANDER_PPM) * 1e3
  );
}

export function candidateFor(view: SourceView, rawNowNs: bigint): Candidate {
  const e = view.estimate;
  const offsetNs = e.offsetNs + BigInt(Math.round(Number(rawNowNs - e.rawNs) * e.frequencyPpm * 1e-6));
  return {
    id: view.id,
    offsetNs,
    distanceNs: sourceDistanceNs(view, rawNowNs),
    frequencyPpm: e.frequencyPpm,
    frequencySdPpm: e.frequencySdPpm,
    stratum: view.lastSample.stratum,
  };
}

export interface DisciplineResult {
  selection: Selection;
  /** Undefined when no majority of sources agrees. */
  estimate?: ClockEstimate;
}

/** Selection and the estimate for the model, at rawNowNs. */
export function discipline(views: SourceView[], rawNowNs: bigint): DisciplineResult {
  const selection = selectSources(views.map((v) => candidateFor(v, rawNowNs)));
  const combined = selection.combined;
  if (!combined) return { selection };
  const frequencyPpm = Math.max(-MAX_ESTIMATE_FREQUENCY_PPM, Math.min(MAX_ESTIMATE_FREQUENCY_PPM, combined.frequencyPpm));
  return {
    selection,
    estimate: {
      rawNs: rawNowNs,
      offsetNs: combined.offsetNs,
      frequencyPpm,
      errorBoundNs: combined.errorBoundNs,
      frequencyErrorPpm: BOUND_SIGMAS * combined.frequencySdPpm,
    },
  };
}
