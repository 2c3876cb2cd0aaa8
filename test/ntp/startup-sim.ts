/**
 * A seeded, offline start-up of a whole client, as `npm run bench -- ntp`
 * case E runs it for real: a wrong simulated clock, the poll schedule
 * (PollSchedule, its burst and back-off), SourceStats, the discipline and a
 * Timescale, through a simulated Wi-Fi path (1 ms + exp(3 ms) each way,
 * 2 % loss). Simulated time: a minute takes a fraction of a second, so
 * the bench's figures (|error| at 5/10/25/60 s, frequency error at 30 s,
 * when a 1 ms gate passes, whether the Timescale's bound was ever below
 * the truth) can be had over a thousand seeds. It copies the client's
 * per-sample steps (client.ts accept/update); it has no event loop, so the
 * real bench's own lateness is only what the path's model adds.
 */
import { SourceStats } from '../../src/ntp/sourcestats.js';
import { PollSchedule, DEFAULT_BURST_POLLS, DEFAULT_BURST_INTERVAL_SECONDS, type Sample } from '../../src/ntp/source.js';
import { discipline } from '../../src/ntp/discipline.js';
import { LAN_HUB_MIN_POLL_SECONDS, DEFAULT_MAX_POLL_SECONDS } from '../../src/ntp/client.js';
import { Timescale } from '../../src/time/timescale.js';
import { SimulatedClock, type RawClock } from '../../src/time/clock.js';
import { seededRandom } from '../support/random.js';
import { wifiLegs } from './honesty-sim.js';

export const CHECKPOINTS_S = [5, 10, 25, 60] as const;
const FREQUENCY_AT_S = 30;
const GATE_NS = 1_000_000;
const CHECK_EVERY_S = 0.05;
/** The server's time between receiving and answering (T3 − T2). */
const SERVER_TURNAROUND_NS = 20_000;
/** The client's first step waits for no more samples than this (client.ts FIRST_STEP_MAX_SAMPLES). */
const FIRST_STEP_MAX_SAMPLES = 4;

export interface StartupSimOptions {
  seed: number;
  seconds?: number;
  lossRate?: number;
  minPollSeconds?: number;
  /** The path's two legs for each poll (ns); the test relay's model (honesty-sim.ts wifiLegs) by default. */
  legs?: (random: () => number) => { outNs: number; inNs: number };
}

export interface StartupSimResult {
  seed: number;
  offsetSeconds: number;
  driftPpm: number;
  errorAtUs: Record<string, number | null>;
  frequencyErrorAt30Ppm: number | null;
  /** Checks whose |error| exceeded the bound. */
  dishonest: number;
  worstErrorToBound: number;
  gatePassedAfterSeconds: number | null;
  samples: number;
  /** Poll interval at the end, s. */
  finalPollSeconds: number;
}

/** A truth clock the simulation sets. */
class ManualClock implements RawClock {
  constructor(public ns: bigint) {}
  nowNs(): bigint {
    return this.ns;
  }
}

export function simulateClientStartup(options: StartupSimOptions): StartupSimResult {
  const random = seededRandom(options.seed * 104729 + 14);
  const offsetSeconds = Math.round((random() * 2 - 1) * 5 * 1000) / 1000;
  const driftPpm = Math.round((random() * 2 - 1) * 100 * 10) / 10;
  const seconds = options.seconds ?? 61;
  const lossRate = options.lossRate ?? 0.02;
  const truth = new ManualClock(1_800_000_000_000_000_000n);
  const startTruth = truth.ns;
  const sim = new SimulatedClock({ offsetSeconds, driftPpm, truth });
  const timescale = new Timescale(sim);
  const stats = new SourceStats();
  const poll = new PollSchedule({
    minPollSeconds: options.minPollSeconds ?? LAN_HUB_MIN_POLL_SECONDS,
    maxPollSeconds: DEFAULT_MAX_POLL_SECONDS,
    burstPolls: DEFAULT_BURST_POLLS,
    burstIntervalSeconds: DEFAULT_BURST_INTERVAL_SECONDS,
  });
  const d = driftPpm * 1e-6;
  const trueFrequencyPpm = (1 / (1 + d) - 1) * 1e6;
  const endTruth = startTruth + BigInt(Math.round(seconds * 1e9));
  const errorAt = new Map<number, { dt: number; errorNs: number }>();
  const result: StartupSimResult = {
    seed: options.seed,
    offsetSeconds,
    driftPpm,
    errorAtUs: {},
    frequencyErrorAt30Ppm: null,
    dishonest: 0,
    worstErrorToBound: 0,
    gatePassedAfterSeconds: null,
    samples: 0,
    finalPollSeconds: 0,
  };
  const check = () => {
    if (!timescale.synchronized) return;
    const raw = sim.rawAtTruth(truth.ns);
    const t = Number(truth.ns - startTruth) / 1e9;
    const errorNs = Number(timescale.utcAt(raw) - truth.ns);
    const boundNs = timescale.errorBoundNs(raw);
    if (Math.abs(errorNs) > boundNs) result.dishonest++;
    if (boundNs > 0) result.worstErrorToBound = Math.max(result.worstErrorToBound, Math.abs(errorNs) / boundNs);
    if (result.gatePassedAfterSeconds === null && boundNs <= GATE_NS) result.gatePassedAfterSeconds = Math.round(t * 100) / 100;
    for (const c of CHECKPOINTS_S) {
      const dt = Math.abs(t - c);
      if (dt <= 0.5 && !(errorAt.get(c)!?.dt <= dt)) errorAt.set(c, { dt, errorNs: Math.abs(errorNs) });
    }
    if (result.frequencyErrorAt30Ppm === null && t >= FREQUENCY_AT_S) result.frequencyErrorAt30Ppm = timescale.frequencyPpm - trueFrequencyPpm;
  };
  let nextSend = startTruth;
  let nextCheck = startTruth;
  // One request in flight (source.ts): a reply that comes after the next request went out is stale.
  let inFlight: { sendTruth: bigint; replyTruth: bigint; sample: Sample } | undefined;
  while (truth.ns < endTruth) {
    const replyAt = inFlight?.replyTruth ?? endTruth;
    const at = [nextSend, nextCheck, replyAt].reduce((a, b) => (b < a ? b : a));
    if (at >= endTruth) break;
    truth.ns = at;
    if (at === replyAt && inFlight) {
      const { sample } = inFlight;
      inFlight = undefined;
      result.samples++;
      const deviation = stats.deviation(sample);
      const estimate = stats.add(sample);
      poll.noteSample(deviation, estimate.frequencyBoundPpm ?? (estimate.samples >= 2 ? 3 * estimate.frequencySdPpm : undefined));
      const rawNow = sim.rawAtTruth(truth.ns);
      const { estimate: clock } = discipline([{ id: '0', estimate, lastSample: sample }], rawNow);
      const mayStep = timescale.synchronized || (clock !== undefined && (clock.errorBoundNs <= timescale.stepThresholdNs || stats.size >= FIRST_STEP_MAX_SAMPLES));
      if (clock && mayStep) {
        timescale.apply(clock, rawNow);
        check();
      }
    } else if (at === nextSend) {
      const { outNs, inNs } = (options.legs ?? wifiLegs)(random);
      const lost = random() < lossRate || random() < lossRate;
      const t1 = sim.rawAtTruth(at);
      const t2 = at + BigInt(Math.round(outNs)); // the server's clock is the truth
      const t3 = t2 + BigInt(SERVER_TURNAROUND_NS);
      const replyTruth = t3 + BigInt(Math.round(inNs));
      const t4 = sim.rawAtTruth(replyTruth);
      inFlight = lost
        ? undefined
        : {
            sendTruth: at,
            replyTruth,
            sample: {
              rawNs: t1 + (t4 - t1) / 2n,
              offsetNs: (t2 - t1 + (t3 - t4)) / 2n,
              delayNs: Math.max(0, Number(t4 - t1) - Number(t3 - t2)),
              stratum: 1,
              leap: 0,
              refId: 0,
              rootDelayNs: 0,
              rootDispersionNs: 0,
            },
          };
      nextSend = at + BigInt(Math.round(poll.next() * 1e9));
    } else {
      check();
      nextCheck = at + BigInt(Math.round(CHECK_EVERY_S * 1e9));
    }
  }
  for (const c of CHECKPOINTS_S) result.errorAtUs[String(c)] = errorAt.has(c) ? Math.round(errorAt.get(c)!.errorNs / 100) / 10 : null;
  result.finalPollSeconds = poll.intervalSeconds;
  return result;
}

export interface StartupSimSummary {
  runs: number;
  errorP99Us: Record<string, number>;
  frequencyP50Ppm: number;
  frequencyP99Ppm: number;
  gateP50S: number;
  gateP99S: number;
  gateNever: number;
  dishonestRuns: number;
  dishonestSeeds: number[];
  worstFrequencySeeds: number[];
  worstGateSeeds: number[];
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]!;
}

export function summarize(results: StartupSimResult[]): StartupSimSummary {
  const frequency = results.map((r) => Math.abs(r.frequencyErrorAt30Ppm ?? Infinity));
  const gate = results.map((r) => r.gatePassedAfterSeconds ?? Infinity);
  const errorP99Us: Record<string, number> = {};
  for (const c of CHECKPOINTS_S) errorP99Us[String(c)] = percentile(results.map((r) => r.errorAtUs[String(c)] ?? Infinity), 0.99);
  const worst = (key: (r: StartupSimResult) => number) => [...results].sort((a, b) => key(b) - key(a)).slice(0, 5).map((r) => r.seed);
  return {
    runs: results.length,
    errorP99Us,
    frequencyP50Ppm: percentile(frequency, 0.5),
    frequencyP99Ppm: percentile(frequency, 0.99),
    gateP50S: percentile(gate, 0.5),
    gateP99S: percentile(gate, 0.99),
    gateNever: results.filter((r) => r.gatePassedAfterSeconds === null).length,
    dishonestRuns: results.filter((r) => r.dishonest > 0).length,
    dishonestSeeds: results.filter((r) => r.dishonest > 0).map((r) => r.seed).slice(0, 10),
    worstFrequencySeeds: worst((r) => Math.abs(r.frequencyErrorAt30Ppm ?? Infinity)),
    worstGateSeeds: worst((r) => r.gatePassedAfterSeconds ?? Infinity),
  };
}
