/**
 * Per-source statistics: a weighted linear regression of offset against raw
 * time, giving the source's offset AND frequency with their uncertainties
 * (after chrony's sourcestats.c and regress.c, written anew).
 *
 *   offset(raw) = offset0 + a + b·(raw − rawRef)      b in ns/s = ppb
 *
 * Samples are "server UTC − raw" offsets measured against the RAW clock,
 * which never steps or slews, so stored samples never need re-expressing
 * when the model changes. (chrony must re-express its samples whenever it
 * adjusts the system clock they were measured against: SST_SlewSamples.)
 *
 * Offsets can be huge (a Pi in 1970 is 1.7e18 ns behind), so the fit runs on
 * (raw − raw0, offset − offset0) as doubles, with bigint references.
 *
 * Weights: a sample's offset error is at most half the asymmetry of its two
 * legs, and whatever the network adds beyond the minimum delay splits between
 * the legs unknown to us. If the excess e = delay − minDelay splits uniformly,
 * the error is uniform on ±e/2: variance e²/12. So
 *     σᵢ² = σ0² + eᵢ²/12,  wᵢ = 1/σᵢ²
 * where σ0 is the noise floor of a sample that crossed an idle network
 * (measured from the quietest samples' residuals, see QUIET_FRACTION).
 * This weights the rare quiet samples of a Wi-Fi link far more than chrony's
 * milder (1 + excess/sd)² (which suits its longer polls): over a relay with
 * exponential jitter almost all the information is in the few quiet samples.
 *
 * Asymmetry: the excess need not split evenly. The fit carries a third
 * term c·excess (chrony's correct_asymmetry estimates the same), so a
 * systematic split, like a node process reading T4 late after waking up, is
 * measured and removed; the intercept is the offset of a minimum-delay sample.
 *
 * How many samples: like chrony, a runs test on the signs of the residuals.
 * Too few runs means the line does not fit (the frequency changed), so the
 * oldest samples are dropped until it fits or only MIN_SAMPLES remain.
 */
import type { Sample } from './source.js';
import { fitEnvelopeSorted } from './envelope.js';

/** Bound on the samples kept: at a 1/16 s poll this is a 32 s window, at 16 s over two hours. */
export const MAX_SAMPLES = 512;
/** Fewer than this and the runs test cannot tell noise from a bend (chrony's default minsamples is 6). */
export const MIN_SAMPLES = 6;
/**
 * The noise floor σ0 is measured, not assumed: on loopback it is a few µs,
 * through a Wi-Fi-like relay (whose timers tick in whole ms) it is ~0.5 ms,
 * and weighting quiet samples as if they were exact would make the estimate
 * hop from one lucky sample to the next. The quietest QUIET_FRACTION of the
 * window gives it, after NOISE_FLOOR_PASSES refits.
 */
const QUIET_FRACTION = 0.25;
const NOISE_FLOOR_PASSES = 2;
/** Smallest noise floor of a sample: reading process.hrtime, NTP's 2^-32 s rounding, scheduling (1 µs). */
const BASE_SD_NS = 1_000;
/** ...plus this fraction of the minimum delay: a longer path has more room for fixed asymmetry. */
const SD_PER_MIN_DELAY = 0.01;
/**
 * Prior on the frequency: quartz crystals are within ±100 ppm of nominal,
 * so b ~ N(0, 200 ppm) keeps a couple of noisy early samples from claiming
 * thousands of ppm; real data outweighs it within seconds.
 */
const PRIOR_FREQUENCY_SD_PPM = 200;
/**
 * Delay asymmetry: the share of a sample's delay excess that lands on the
 * outbound leg minus the inbound. At most ±0.5 (all of it on one leg). A
 * node process on a busy machine reads T4 late after waking up, so on
 * loopback nearly all excess is inbound (≈ −0.5); Wi-Fi queues are about
 * symmetric (≈ 0). The prior keeps it near 0 until the data says otherwise.
 */
const MAX_ASYMMETRY = 0.5;
const PRIOR_ASYMMETRY_SD = 0.25;
/** One-sided z for the runs test: reject a fit at the 1 % level. */
const RUNS_Z = 2.33;
/** When the runs test fails, drop this fraction of the window and try again. */
const DROP_FRACTION = 1 / 8;
/** Residual scale factor floor: synthetic perfect data must not claim zero uncertainty. */
const MIN_SCALE = 0.01;
/** A larger lag-1 correlation than this is a bend, which the runs test prunes, not noise. */
const MAX_SERIAL_CORRELATION = 0.8;
/** Lowest excesses whose spacing says how far the window's least delay is above the path's floor. */
const FLOOR_GAP_SAMPLES = 4;
/**
 * The weights' σ model (σ0 measured, the floor gap, e²/12) counts as this
 * many residuals at scale 1, pooled with the real ones; the bound is then
 * Student-t's at the pooled degrees of freedom.
 */
const SCALE_PRIOR_DOF = 4;
/** Sigmas of the regression's uncertainty in its bound (the envelope's bound is a bound already). */
const REGRESSION_BOUND_SIGMAS = 3;
/**
 * The frequency's bound is held to the truth after every sample of a run,
 * hundreds of times in a start-up, and has no minDelay/2 margin beside it
 * as the offset's has: 3σ was exceeded in ~1.5 % of 200 seeded runs
 * (by up to 1.2×, test/ntp/honesty-sim.ts), FREQUENCY_BOUND_SIGMAS in none.
 */
const FREQUENCY_BOUND_SIGMAS = 4;
/**
 * The envelope needs samples near each floor before its slack means
 * anything: its spacing estimate rests on the 5 lowest, so with fewer than
 * 16 the "floor" is just the best of a few (1 s at a LAN hub's 1/16 s poll;
 * a loopback client at 0.5 s keeps the regression for its first 8 s).
 */
const ENVELOPE_MIN_SAMPLES = 16;
/**
 * The envelope assumes the fixed parts of the two legs are equal (so does
 * every NTP offset). Allow this fraction of the fixed one-way delay as an
 * unseen difference: a Wi-Fi link's fixed part is the same air both ways,
 * loopback's inbound leg carries the node's own wake-up. Without it the
 * bound would be "half the minimum delay", which a 2 ms Wi-Fi round trip
 * keeps above 1 ms forever.
 */
export const FIXED_ASYMMETRY_ALLOWANCE = 0.25;

export interface RegressionResult {
  /** Fitted value at xRef (for z = 0). */
  intercept: number;
  /** dy/dx. */
  slope: number;
  /** dy/dz: the covariate's coefficient (0 without one). */
  covariateCoefficient: number;
  interceptSd: number;
  slopeSd: number;
  /** Σw r² / (n − p), pooled with the prior's: how far the weights' σ model is off (1 = exact). */
  scale: number;
  /** Degrees of freedom behind scale (the prior's plus n − p): the SDs are Student-t's with these. */
  dof: number;
  residuals: Float64Array;
  runs: number;
}

export interface Prior {
  value: number;
  sd: number;
}

export interface Covariate {
  z: ArrayLike<number>;
  prior: Prior;
  /** The coefficient is clamped to [min, max] (refitted with it fixed there). */
  min: number;
  max: number;
}

/**
 * Weighted least squares  y = a + b(x − xRef) + c·z, with Gaussian priors
 * (ridge) on b and c. Weights are 1/σ² up to a common scale, which is
 * estimated from the residuals; the priors are expressed in that scale.
 * Without a covariate c = 0.
 */
export function weightedRegression(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  w: ArrayLike<number>,
  xRef: number,
  slopePrior?: Prior,
  covariate?: Covariate,
  scalePriorDof = 0,
): RegressionResult {
  const n = x.length;
  if (n === 0 || y.length !== n || w.length !== n || (covariate && covariate.z.length !== n)) {
    throw new RangeError('regression needs equal, non-empty x, y, w');
  }
  const fit = regressionOf(n, x, y, w, xRef, slopePrior, covariate, scalePriorDof, new Float64Array(n));
  return { ...fit, runs: countRuns(fit.residuals) };
}

/** The normal equations' sums over the samples: they depend on the covariate's fixed value only, not on the priors' scale. */
interface Sums {
  s1: number;
  sx: number;
  sz: number;
  sxx: number;
  sxz: number;
  szz: number;
  sy: number;
  sxy: number;
  szy: number;
}

/**
 * Σw, Σw·dx, … over the first n samples. With useC the covariate is a free
 * column; otherwise it is fixed at fixedC and taken off y (0 without a
 * covariate: y − 0 is y, so that case shares the free loop's arithmetic).
 */
function sumsOf(n: number, x: ArrayLike<number>, y: ArrayLike<number>, w: ArrayLike<number>, xRef: number, z: ArrayLike<number> | undefined, fixedC: number | undefined): Sums {
  let s1 = 0, sx = 0, sz = 0, sxx = 0, sxz = 0, szz = 0, sy = 0, sxy = 0, szy = 0;
  if (z !== undefined && fixedC === undefined) {
    for (let i = 0; i < n; i++) {
      const zi = z[i]!;
      const yi = y[i]!;
      const xi = x[i]! - xRef;
      const wi = w[i]!;
      s1 += wi;
      sx += wi * xi;
      sxx += wi * xi * xi;
      sy += wi * yi;
      sxy += wi * xi * yi;
      sz += wi * zi;
      sxz += wi * xi * zi;
      szz += wi * zi * zi;
      szy += wi * zi * yi;
    }
  } else {
    const c = fixedC ?? 0;
    for (let i = 0; i < n; i++) {
      const yi = z !== undefined ? y[i]! - c * z[i]! : y[i]!;
      const xi = x[i]! - xRef;
      const wi = w[i]!;
      s1 += wi;
      sx += wi * xi;
      sxx += wi * xi * xi;
      sy += wi * yi;
      sxy += wi * xi * yi;
    }
  }
  return { s1, sx, sz, sxx, sxz, szz, sy, sxy, szy };
}

/**
 * The weights, w[i] = 1/(sd0² + (zᵢ + gap)²/12) (SourceStats' σ model, see
 * the file comment), stored for the passes over the residuals, and the free
 * sums over them.
 */
function weighAndSum(n: number, x: ArrayLike<number>, y: ArrayLike<number>, z: ArrayLike<number>, xRef: number, sd0: number, gapNs: number, w: Float64Array): Sums {
  const sd02 = sd0 * sd0;
  for (let i = 0; i < n; i++) {
    const zi = z[i]!;
    w[i] = 1 / (sd02 + ((zi + gapNs) * (zi + gapNs)) / 12);
  }
  return sumsOf(n, x, y, w, xRef, z, undefined);
}

/**
 * Σw r² of the line (a, b, c), each residual r written to residuals[i]: the
 * residuals of the fit a regression returns are those of its last solve.
 */
function chi2Of(n: number, x: ArrayLike<number>, y: ArrayLike<number>, w: ArrayLike<number>, xRef: number, z: ArrayLike<number> | undefined, a: number, b: number, c: number, residuals: Float64Array): number {
  let chi2 = 0;
  if (z !== undefined) {
    for (let i = 0; i < n; i++) {
      const r = y[i]! - a - b * (x[i]! - xRef) - c * z[i]!;
      residuals[i] = r;
      chi2 += w[i]! * r * r;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const r = y[i]! - a - b * (x[i]! - xRef);
      residuals[i] = r;
      chi2 += w[i]! * r * r;
    }
  }
  return chi2;
}

interface Solution {
  a: number;
  b: number;
  c: number;
  inverse: number[][];
  p: number;
}

/** The normal equations M β = v over columns [1, dx, z] from the sums and the priors at priorScale. */
function solveSums(sums: Sums, useC: boolean, fixedC: number | undefined, priorScale: number, slopePrior: Prior | undefined, covariate: Covariate | undefined): Solution {
  const p = useC ? 3 : 2;
  const M = useC ? [[0, 0, 0], [0, 0, 0], [0, 0, 0]] : [[0, 0], [0, 0]];
  const v = useC ? [0, 0, 0] : [0, 0];
  M[0]![0] = sums.s1;
  M[0]![1] = M[1]![0] = sums.sx;
  M[1]![1] = sums.sxx;
  v[0] = sums.sy;
  v[1] = sums.sxy;
  if (useC) {
    M[0]![2] = M[2]![0] = sums.sz;
    M[1]![2] = M[2]![1] = sums.sxz;
    M[2]![2] = sums.szz;
    v[2] = sums.szy;
  }
  if (slopePrior) {
    const precision = priorScale / (slopePrior.sd * slopePrior.sd);
    M[1]![1]! += precision;
    v[1]! += precision * slopePrior.value;
  } else if (M[1]![1]! === 0) {
    M[1]![1]! = 1; // one sample and no prior: slope 0
  }
  if (useC) {
    const precision = priorScale / (covariate!.prior.sd * covariate!.prior.sd);
    M[2]![2]! += precision;
    v[2]! += precision * covariate!.prior.value;
  }
  const inverse = invert(M);
  // β = M⁻¹ v, each row summed from 0 in column order (as a reduce would).
  const beta = (row: number[]) => {
    let sum = 0;
    for (let k = 0; k < p; k++) sum = sum + row[k]! * v[k]!;
    return sum;
  };
  return { a: beta(inverse[0]!), b: beta(inverse[1]!), c: useC ? beta(inverse[2]!) : fixedC ?? 0, inverse, p };
}

/**
 * weightedRegression over the first n entries, residuals written into
 * `residuals` (a view of it is returned). No array of the window's length
 * is allocated, and each O(n) pass runs only where its result is used:
 * this runs for every sample of a 512-sample window, three times (the
 * noise floor's passes), in each of a swarm's thousand clients.
 */
function regressionOf(
  n: number,
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  w: ArrayLike<number>,
  xRef: number,
  slopePrior: Prior | undefined,
  covariate: Covariate | undefined,
  scalePriorDof: number,
  residuals: Float64Array,
  /** sumsOf(…, undefined) if the caller has it (weighAndSum). */
  freeSumsKnown?: Sums,
): Omit<RegressionResult, 'runs'> {
  const z = covariate?.z;
  // The sums are the O(n) part; the two solves (before and after the scale is known) share them.
  let freeSums: Sums | undefined = freeSumsKnown;
  let fixedSums: Sums | undefined;
  let fixedSumsAt = NaN;
  const solve = (priorScale: number): Solution => {
    freeSums ??= sumsOf(n, x, y, w, xRef, z, undefined);
    const fit = solveSums(freeSums, z !== undefined, undefined, priorScale, slopePrior, covariate);
    if (!covariate || (fit.c >= covariate.min && fit.c <= covariate.max)) return fit;
    const fixedC = Math.max(covariate.min, Math.min(covariate.max, fit.c));
    if (!(fixedSums && fixedSumsAt === fixedC)) {
      fixedSums = sumsOf(n, x, y, w, xRef, z, fixedC);
      fixedSumsAt = fixedC;
    }
    return solveSums(fixedSums, false, fixedC, priorScale, slopePrior, covariate);
  };
  const out = residuals.length === n ? residuals : residuals.subarray(0, n);
  // The priors are in the data's units once the weights' scale is known: fit once to learn it.
  // scalePriorDof pseudo-residuals at scale 1 (the weights' own σ model) are pooled with the real ones:
  // three residuals alone can say "scale 0.05" by luck, and their 3σ then claims 4× too much.
  let scale = 1;
  let fit = solve(1);
  const dof = scalePriorDof + Math.max(0, n - fit.p);
  if (n > fit.p) {
    const pooled = (chi2: number) => Math.max(MIN_SCALE, (scalePriorDof + chi2) / dof);
    scale = pooled(chi2Of(n, x, y, w, xRef, z, fit.a, fit.b, fit.c, out));
    fit = solve(scale);
    scale = pooled(chi2Of(n, x, y, w, xRef, z, fit.a, fit.b, fit.c, out));
  } else {
    chi2Of(n, x, y, w, xRef, z, fit.a, fit.b, fit.c, out);
  }
  return {
    intercept: fit.a,
    slope: fit.b,
    covariateCoefficient: fit.c,
    interceptSd: Math.sqrt(Math.max(0, scale * fit.inverse[0]![0]!)),
    slopeSd: Math.sqrt(Math.max(0, scale * fit.inverse[1]![1]!)),
    scale,
    dof,
    residuals: out,
  };
}

/** Inverse of a small symmetric positive-definite matrix (Gauss–Jordan with partial pivoting). */
function invert(m: number[][]): number[][] {
  const p = m.length;
  // [m | I], built with loops: spreads and Array.from were a twentieth of a fit, for a 3×3.
  const a: number[][] = [];
  for (let i = 0; i < p; i++) {
    const row: number[] = [];
    for (let j = 0; j < p; j++) row.push(m[i]![j]!);
    for (let j = 0; j < p; j++) row.push(i === j ? 1 : 0);
    a.push(row);
  }
  for (let col = 0; col < p; col++) {
    let pivot = col;
    for (let r = col + 1; r < p; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    const swap = a[col]!;
    a[col] = a[pivot]!;
    a[pivot] = swap;
    const d = a[col]![col]!;
    if (d === 0 || !Number.isFinite(d)) throw new RangeError('singular regression');
    for (let k = 0; k < 2 * p; k++) a[col]![k]! /= d;
    for (let r = 0; r < p; r++) {
      if (r === col) continue;
      const f = a[r]![col]!;
      if (f === 0) continue;
      for (let k = 0; k < 2 * p; k++) a[r]![k]! -= f * a[col]![k]!;
    }
  }
  const inverse: number[][] = [];
  for (let i = 0; i < p; i++) inverse.push(a[i]!.slice(p));
  return inverse;
}

/**
 * How many of its SDs a Student-t estimate with `dof` degrees of freedom
 * must be given to cover what `sigmas` Gaussian SDs cover (two-sided):
 * Cornish–Fisher expansion, within 3 % of the exact quantile from 3 dof up.
 * Below 1 dof (no residual at all) the weights' σ model stands alone.
 */
export function studentSigmas(sigmas: number, dof: number): number {
  if (!(dof >= 1) || !Number.isFinite(dof)) return dof === Infinity ? sigmas : sigmas * 4;
  const z = sigmas;
  const z3 = z ** 3, z5 = z ** 5, z7 = z ** 7;
  return z + (z3 + z) / (4 * dof) + (5 * z5 + 16 * z3 + 3 * z) / (96 * dof ** 2) + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * dof ** 3);
}

export function countRuns(residuals: ArrayLike<number>): number {
  let runs = 0;
  let previous: boolean | undefined;
  for (let i = 0; i < residuals.length; i++) {
    const sign = residuals[i]! >= 0;
    if (sign !== previous) runs++;
    previous = sign;
  }
  return runs;
}

/** Wald–Wolfowitz: are there too few runs of equal signs for the residuals to be noise? */
export function runsTestPasses(residuals: ArrayLike<number>): boolean {
  const n = residuals.length;
  if (n < MIN_SAMPLES) return true;
  let plus = 0;
  let runs = 0;
  let previous: boolean | undefined;
  for (let i = 0; i < n; i++) {
    const sign = residuals[i]! >= 0;
    if (sign) plus++;
    if (sign !== previous) runs++;
    previous = sign;
  }
  const minus = n - plus;
  if (plus === 0 || minus === 0) return false;
  const expected = 1 + (2 * plus * minus) / n;
  const variance = (2 * plus * minus * (2 * plus * minus - n)) / (n * n * (n - 1));
  return runs >= expected - RUNS_Z * Math.sqrt(Math.max(variance, 0));
}

/** What a source's samples say: offset and frequency at rawNs, with uncertainties. */
export interface SourceEstimate {
  /** Reference instant: the raw time of the latest sample. */
  rawNs: bigint;
  /** Server UTC − raw at rawNs. */
  offsetNs: bigint;
  /** d offset / d raw, ppm. */
  frequencyPpm: number;
  offsetSdNs: number;
  frequencySdPpm: number;
  /** Samples in the regression window. */
  samples: number;
  /** Smallest delay in the window, ns. */
  minDelayNs: number;
  /** Residual SD of a minimum-delay sample, ns (σ0 × √scale). */
  noiseSdNs: number;
  /** Offset bias per ns of delay excess (−0.5 … 0.5): the estimated path asymmetry. */
  asymmetry: number;
  /**
   * Bound on |true − estimated offset| at rawNs from the path (excluding the
   * server's own root distance and growth with age), ns: the smaller of the
   * regression's (min delay/2 + 3σ) and the delay envelope's.
   */
  offsetBoundNs?: number;
  /** Bound on the frequency's error, ppm (3σ for the regression, the envelope's slope band). */
  frequencyBoundPpm?: number;
  /** Which estimator gave offsetNs and frequencyPpm. */
  estimator?: 'regression' | 'envelope';
}

/** A window's regression, with its noise floor σ0 and the residuals' lag-1 correlation. */
type WindowFit = Omit<RegressionResult, 'runs'> & { sd0: number; correlation: number };

/**
 * Working arrays of a fit, shared by every SourceStats in the process (a fit
 * runs to its end synchronously, so no two use them at once): a fit used to
 * allocate ~20 arrays of the window's length, a tenth of its cost was the
 * garbage collector's, and a swarm of a thousand clients should not keep a
 * thousand sets. Grown on demand, never shrunk (MAX_SAMPLES bounds them).
 */
const scratch = {
  capacity: 0,
  x: new Float64Array(0),
  y: new Float64Array(0),
  z: new Float64Array(0),
  w: new Float64Array(0),
  residuals: new Float64Array(0),
  quiet: new Int32Array(0),
  t: new Float64Array(0),
  u: new Float64Array(0),
  v: new Float64Array(0),
};

function ensureScratch(n: number): void {
  if (scratch.capacity >= n) return;
  const capacity = Math.max(n, Math.min(MAX_SAMPLES + 1, Math.max(64, scratch.capacity * 2)));
  scratch.capacity = capacity;
  scratch.x = new Float64Array(capacity);
  scratch.y = new Float64Array(capacity);
  scratch.z = new Float64Array(capacity);
  scratch.w = new Float64Array(capacity);
  scratch.residuals = new Float64Array(capacity);
  scratch.quiet = new Int32Array(capacity);
  scratch.t = new Float64Array(capacity);
  scratch.u = new Float64Array(capacity);
  scratch.v = new Float64Array(capacity);
}

/** Index of the first entry ≥ value in an ascending array. */
function lowerBound(sorted: number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class SourceStats {
  private samples: Sample[] = [];
  /**
   * Each sample's raw time (s) and offset (ns) as doubles from a base, kept
   * beside it: converting 512 bigints on every fit, 16 times a second, was
   * most of the cost (the garbage collector's). Re-based on clear().
   */
  private xs: number[] = [];
  private ys: number[] = [];
  /**
   * The window's delays in ascending order, kept up to date on every add:
   * the fit needs the least, the 5th least and the quiet quarter's cut, and
   * sorting the window for them was a fifth of a fit.
   */
  private sortedDelays: number[] = [];
  private baseRawNs = 0n;
  private baseOffsetNs = 0n;
  private current: SourceEstimate | undefined;

  get size(): number {
    return this.samples.length;
  }

  get estimate(): SourceEstimate | undefined {
    return this.current;
  }

  get lastSample(): Sample | undefined {
    return this.samples[this.samples.length - 1];
  }

  /** The estimated offset at any raw instant (extrapolated with the frequency). */
  offsetAt(rawNs: bigint): bigint | undefined {
    const e = this.current;
    if (!e) return undefined;
    return e.offsetNs + BigInt(Math.round(Number(rawNs - e.rawNs) * e.frequencyPpm * 1e-6));
  }

  /**
   * How many standard errors a new sample lies from the prediction (before
   * it is added): the poll schedule backs off while this stays small.
   */
  deviation(sample: Sample): number {
    const e = this.current;
    if (!e || e.samples < MIN_SAMPLES) return NaN;
    const excess = sample.delayNs - e.minDelayNs;
    const predicted = Number(this.offsetAt(sample.rawNs)! - sample.offsetNs) - e.asymmetry * excess;
    const ageS = Math.abs(Number(sample.rawNs - e.rawNs)) / 1e9;
    const sd = Math.sqrt(e.noiseSdNs ** 2 + (excess * excess) / 12 + e.offsetSdNs ** 2 + (ageS * e.frequencySdPpm * 1e3) ** 2);
    return Math.abs(predicted) / Math.max(sd, BASE_SD_NS);
  }

  add(sample: Sample): SourceEstimate {
    const last = this.lastSample;
    if (last && sample.rawNs <= last.rawNs) {
      // Raw time never runs backwards; a sample out of order is dropped, not reordered.
      return this.current!;
    }
    if (this.samples.length === 0) {
      this.baseRawNs = sample.rawNs;
      this.baseOffsetNs = sample.offsetNs;
    }
    this.samples.push(sample);
    this.xs.push(Number(sample.rawNs - this.baseRawNs) / 1e9);
    this.ys.push(Number(sample.offsetNs - this.baseOffsetNs));
    this.sortedDelays.splice(lowerBound(this.sortedDelays, sample.delayNs), 0, sample.delayNs);
    if (this.samples.length > MAX_SAMPLES) {
      const dropped = this.samples.shift()!;
      this.xs.shift();
      this.ys.shift();
      this.sortedDelays.splice(lowerBound(this.sortedDelays, dropped.delayNs), 1);
    }
    this.current = this.regress();
    return this.current;
  }

  clear(): void {
    this.samples = [];
    this.xs = [];
    this.ys = [];
    this.sortedDelays = [];
    this.current = undefined;
  }

  private regress(): SourceEstimate {
    const all = this.samples;
    const newest = all[all.length - 1]!;
    let start = 0;
    let chosen: { fit: WindowFit; start: number } | undefined;
    for (;;) {
      const fit = this.fit(start);
      chosen = { fit, start };
      const n = all.length - start;
      if (runsTestPasses(fit.residuals) || n <= MIN_SAMPLES) break;
      start += Math.max(1, Math.floor(n * DROP_FRACTION));
      if (all.length - start < MIN_SAMPLES) start = all.length - MIN_SAMPLES;
    }
    // Samples before the chosen window no longer fit the line: forget them (chrony's prune_register).
    if (chosen.start > 0) {
      this.samples = all.slice(chosen.start);
      this.xs = this.xs.slice(chosen.start);
      this.ys = this.ys.slice(chosen.start);
      this.sortedDelays = this.samples.map((s) => s.delayNs).sort((a, b) => a - b);
    }
    const { fit } = chosen;
    // Residuals that follow each other (a busy machine delays several samples in a row) carry less
    // information than their count says: widen by the AR(1) variance factor √((1 + ρ)/(1 − ρ)).
    const rho = Math.min(MAX_SERIAL_CORRELATION, Math.max(0, fit.correlation));
    const correlated = Math.sqrt((1 + rho) / (1 - rho));
    const sigmas = correlated * studentSigmas(REGRESSION_BOUND_SIGMAS, fit.dof);
    const frequencySigmas = correlated * studentSigmas(FREQUENCY_BOUND_SIGMAS, fit.dof);
    const window = this.samples;
    const offset0 = window[0]!.offsetNs;
    const minDelayNs = this.sortedDelays[0]!;
    const regression: SourceEstimate = {
      rawNs: newest.rawNs,
      offsetNs: offset0 + BigInt(Math.round(fit.intercept)),
      frequencyPpm: fit.slope / 1e3,
      // As "3σ = the bound" (the envelope's convention too), so code downstream that takes 3 SDs
      // (selection, discipline's frequencyErrorPpm) gets the t-widened claim.
      offsetSdNs: (fit.interceptSd * sigmas) / REGRESSION_BOUND_SIGMAS,
      frequencySdPpm: (fit.slopeSd * frequencySigmas) / REGRESSION_BOUND_SIGMAS / 1e3,
      samples: window.length,
      minDelayNs,
      noiseSdNs: fit.sd0 * Math.sqrt(fit.scale),
      asymmetry: fit.covariateCoefficient,
      offsetBoundNs: minDelayNs / 2 + sigmas * fit.interceptSd,
      frequencyBoundPpm: (frequencySigmas * fit.slopeSd) / 1e3,
      estimator: 'regression',
    };
    if (window.length < ENVELOPE_MIN_SAMPLES) return regression;
    const envelope = this.envelope(window, regression);
    if (!envelope) return regression;
    return envelope.better ? tightened(envelope.estimate, regression) : tightened(regression, envelope.estimate);
  }

  /**
   * The delay envelope's estimate of the same window (envelope.ts), if its
   * bound is the tighter one: on a queueing link it is, within seconds; on
   * an idle one the regression's usually stays ahead.
   */
  private envelope(window: Sample[], regression: SourceEstimate): { estimate: SourceEstimate; better: boolean } | undefined {
    const offset0 = window[0]!.offsetNs;
    // The window is this.samples (regress() has pruned it), aligned with xs and ys, and in time order.
    const n = window.length;
    ensureScratch(n);
    const { t, u, v } = scratch;
    const xLast = this.xs[this.xs.length - 1]!;
    const y0 = this.ys[0]!;
    for (let i = 0; i < n; i++) {
      const theta = this.ys[i]! - y0;
      const delayNs = window[i]!.delayNs;
      t[i] = this.xs[i]! - xLast;
      u[i] = theta + delayNs / 2;
      v[i] = theta - delayNs / 2;
    }
    const fit = fitEnvelopeSorted(n, t, u, v, regression.frequencyPpm * 1e3);
    // The band's middle is off by (outbound miss − inbound miss)/2, each miss in [0, its slack]: at most
    // the larger slack's half, not their mean (both legs cannot err the same way).
    const floorMissNs = Math.max(fit.floorSlackOutNs, fit.floorSlackInNs) / 2;
    const boundNs = floorMissNs + fit.offsetSpreadNs + FIXED_ASYMMETRY_ALLOWANCE * Math.max(0, fit.halfGapNs) + BASE_SD_NS;
    // Both bounds keep an allowance for what they cannot see (the regression half the minimum delay, the
    // envelope a quarter of the fixed one-way delay). The envelope takes over where what it measured beats
    // the regression's own statistics, or where its whole bound is under half the regression's: on a
    // queueing link. On an idle one (loopback) the regression's asymmetry term, which the envelope lacks,
    // removes the node's late T4 better (the envelope was 30 µs off there, the regression 5 µs).
    const measuredNs = (fit.floorSlackOutNs + fit.floorSlackInNs) / 2 + fit.offsetSpreadNs;
    const better = measuredNs < REGRESSION_BOUND_SIGMAS * regression.offsetSdNs || boundNs < regression.offsetBoundNs! / 2;
    if (!Number.isFinite(boundNs)) return undefined;
    // The frequency is the slopes' weighed mean (envelope.ts), not the widest band's: its bound is the
    // band's farther end from it (the truth lies within the band, wherever the estimate is in it).
    const frequencyBoundPpm = Math.max(fit.slopeHi - fit.slopeMean, fit.slopeMean - fit.slopeLo) / 1e3;
    const estimate: SourceEstimate = {
      ...regression,
      offsetNs: offset0 + BigInt(Math.round(fit.offset)),
      frequencyPpm: fit.slopeMean / 1e3,
      // As "3σ = the bound", so code that reads SDs (poll back-off, selection's weights) sees the envelope's.
      offsetSdNs: boundNs / REGRESSION_BOUND_SIGMAS,
      frequencySdPpm: frequencyBoundPpm / REGRESSION_BOUND_SIGMAS,
      offsetBoundNs: boundNs,
      frequencyBoundPpm,
      estimator: 'envelope',
    };
    return { estimate, better: better && boundNs < regression.offsetBoundNs! };
  }

  /** The regression of the window from `start` on; its residuals are a view of the shared scratch (valid until the next fit). */
  private fit(start: number): WindowFit {
    const n = this.samples.length - start;
    ensureScratch(n);
    const { x, y, z, w } = scratch;
    // The delays in order: kept for the whole window; a pruned one (the runs test's retries) sorts its own.
    const sorted =
      start === 0
        ? this.sortedDelays
        : this.samples
            .slice(start)
            .map((s) => s.delayNs)
            .sort((a, b) => a - b);
    const minDelayNs = sorted[0]!;
    const x0 = this.xs[start]!;
    const y0 = this.ys[start]!;
    for (let i = 0; i < n; i++) {
      x[i] = this.xs[start + i]! - x0;
      y[i] = this.ys[start + i]! - y0;
      z[i] = this.samples[start + i]!.delayNs - minDelayNs;
    }
    // The quiet quarter of the samples (least excess) measures the noise floor σ0. (The k-th least excess
    // is the k-th least delay less the least: subtracting a constant keeps the order.)
    const quietCut = sorted[Math.floor(n * QUIET_FRACTION)]! - minDelayNs;
    // The window's least delay is not the path's: its own sample queued too, by about the spacing of the
    // lowest excesses. Each sample's queueing is its excess PLUS that gap; without it a window of a few
    // samples weights its least delayed one as exact, and two samples 0.25 s apart claimed ±600 ppm
    // while 1,000 ppm off.
    const gapNs = floorGap(sorted, minDelayNs);
    const xRef = x[n - 1]!;
    // Slope in ns/s (ppb): the prior's SD in the same unit. The covariate is the delay excess (asymmetry).
    const slopePrior = { value: 0, sd: PRIOR_FREQUENCY_SD_PPM * 1e3 };
    const covariate = { z, prior: { value: 0, sd: PRIOR_ASYMMETRY_SD }, min: -MAX_ASYMMETRY, max: MAX_ASYMMETRY };
    // The quiet samples, in order (their sums below run in the order of a full pass).
    const quiet = scratch.quiet;
    let quietCount = 0;
    for (let i = 0; i < n; i++) if (!(z[i]! > quietCut)) quiet[quietCount++] = i;
    let sd0 = baseSd(minDelayNs);
    let fit: Omit<RegressionResult, 'runs'> | undefined;
    for (let pass = 0; pass <= NOISE_FLOOR_PASSES; pass++) {
      const sums = weighAndSum(n, x, y, z, xRef, sd0, gapNs, w);
      fit = regressionOf(n, x, y, w, xRef, slopePrior, covariate, SCALE_PRIOR_DOF, scratch.residuals, sums);
      if (pass === NOISE_FLOOR_PASSES || n < MIN_SAMPLES) break;
      let sumResidual2 = 0;
      let sumExcess2 = 0;
      for (let q = 0; q < quietCount; q++) {
        const i = quiet[q]!;
        sumResidual2 += fit.residuals[i]! ** 2;
        sumExcess2 += (z[i]! + gapNs) ** 2 / 12;
      }
      // What the quiet samples scatter beyond their excess is the floor.
      sd0 = Math.sqrt(Math.max(baseSd(minDelayNs) ** 2, (sumResidual2 - sumExcess2) / quietCount));
    }
    return { ...fit!, sd0, correlation: serialCorrelation(fit!.residuals, w) };
  }
}

/**
 * The chosen estimate with its bounds narrowed by the other estimator's:
 * the truth lies within both claims, so the chosen offset is off by at most
 * |its distance to the other's| + the other's bound (and so for the
 * frequency). On a queueing link the regression is often the one chosen
 * (its 3σ beats what the envelope measured) while the envelope's bound is
 * half of it: the 1 ms gate waited on the wider claim. The frequency stays
 * the chosen estimator's: taking the one of the narrower band instead made
 * case E's frequency error after 30 s worse (p99 7.5 → 18.4 ppm offline).
 */
function tightened(chosen: SourceEstimate, other: SourceEstimate): SourceEstimate {
  const offsetBoundNs = Math.min(chosen.offsetBoundNs!, Math.abs(Number(chosen.offsetNs - other.offsetNs)) + other.offsetBoundNs!);
  const frequencyBoundPpm = Math.min(chosen.frequencyBoundPpm!, Math.abs(chosen.frequencyPpm - other.frequencyPpm) + other.frequencyBoundPpm!);
  return {
    ...chosen,
    offsetSdNs: offsetBoundNs / REGRESSION_BOUND_SIGMAS,
    frequencySdPpm: frequencyBoundPpm / REGRESSION_BOUND_SIGMAS,
    offsetBoundNs,
    frequencyBoundPpm,
  };
}

/**
 * How far the window's least delay may lie above the path's own floor. The
 * round trip is the sum of two legs' queues, whose density rises from zero
 * (not exponential): the k-th lowest excess above the least is about as far
 * as the least is from the floor (its spacing/k was 3× short). And few
 * samples say nothing about the floor: all of the least delay may be queue,
 * so minDelay/n is a floor on the gap while n is small.
 */
function floorGap(sortedDelays: number[], minDelayNs: number): number {
  const n = sortedDelays.length;
  const k = Math.min(FLOOR_GAP_SAMPLES, n - 1);
  return Math.max(k >= 1 ? sortedDelays[k]! - minDelayNs : 0, minDelayNs / n);
}

/** Lag-1 autocorrelation of the weighted residuals (0 with fewer than MIN_SAMPLES: too noisy to say). */
function serialCorrelation(residuals: ArrayLike<number>, w: ArrayLike<number>): number {
  const n = residuals.length;
  if (n < MIN_SAMPLES) return 0;
  let lagged = 0;
  let total = 0;
  let previousRoot = 0;
  for (let i = 0; i < n; i++) {
    const root = Math.sqrt(w[i]!);
    const r = residuals[i]! * root;
    total += r * r;
    if (i > 0) lagged += r * residuals[i - 1]! * previousRoot;
    previousRoot = root;
  }
  return total > 0 ? lagged / total : 0;
}

function baseSd(minDelayNs: number): number {
  return BASE_SD_NS + SD_PER_MIN_DELAY * minDelayNs;
}
