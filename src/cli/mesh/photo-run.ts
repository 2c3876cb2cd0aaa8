/**
 * Captures on a simulated cluster (`lockstep demo --capture`, the camera
 * benchmark): each node's camera is the simulated sensor, which records the
 * truth of every frame (STANDIN_SENSOR_TRUTH). A node's report names its
 * frame by SensorTimestamp; the truth then says when that photo was really
 * exposed, so the spread across nodes and each node's reported exposure can
 * be judged against it.
 */
import { realClock } from '../../time/clock.js';
import type { CaptureAction } from '../../schedule/actions.js';
import type { Cluster } from './cluster.js';
import { StartPassedError, type TriggerResult } from '../../mesh/coordinator.js';
import { readSensorTruth } from '../../../hardware/sensor-sim.js';
import { NotReadyError, waitUntilReady } from '../../mesh/readiness.js';

export interface PhotoNode {
  node: string;
  /** What the node reported: exposure mid-point − instant. */
  exposureErrorNs?: number;
  /** The truth: the frame's real exposure mid-point − instant. */
  trueErrorNs?: number;
  /** reported mid-point − true mid-point. */
  reportErrorNs?: number;
  /**
   * Where trueErrorNs came from, for the benchmark's breakdown: the node's clock error at the
   * instant (true time its clock read the planned instant − that instant), the fire's lateness
   * (its spin's end), and when it woke and began to spin (the report's leads, ns before the instant).
   */
  clockErrorNs?: number;
  latenessNs?: number;
  wakeLeadNs?: number;
  spinLeadNs?: number;
  /** Why there is no figure (the node's reason, or no such frame in the truth). */
  unknown?: string;
}

export interface PhotoRun {
  index: number;
  result: TriggerResult;
  nodes: PhotoNode[];
  /** Across nodes: latest − earliest true exposure mid-point, ns (slotted: of true mid − own instant). */
  trueSpreadNs?: number;
  /** Slotted rounds: the spread of the true instants at which the nodes' clocks read their planned instants, ns. */
  clockSpreadNs?: number;
}

/** Judges one capture trigger's reports against the truth file. */
export function judgePhotos(index: number, result: TriggerResult, truthFile: string): PhotoRun {
  const truth = new Map(readSensorTruth(truthFile).map((t) => [t.sensorTimestampNs, t]));
  const real = realClock();
  const mids: bigint[] = [];
  const nodes = result.targets.map((node): PhotoNode => {
    const report = result.reports.find((r) => r.node === node);
    if (!report) return { node, unknown: 'no report' };
    if (report.sensorTimestampNs === undefined || report.exposureMidNs === undefined) return { node, unknown: report.exposureUnknown ?? report.error ?? 'no exposure reported' };
    const frame = truth.get(report.sensorTimestampNs);
    if (!frame) return { node, exposureErrorNs: report.exposureErrorNs, unknown: 'frame not in the truth file' };
    const trueMid = real.atMonotonicNs(frame.exposureStartNs + (frame.exposureEndNs - frame.exposureStartNs) / 2n);
    mids.push(trueMid);
    const judged: PhotoNode = { node, exposureErrorNs: report.exposureErrorNs, trueErrorNs: Number(trueMid - result.startNs), reportErrorNs: Number(report.exposureMidNs - trueMid), latenessNs: report.latenessNs };
    if (report.clockTrueNs !== undefined) judged.clockErrorNs = Number(report.clockTrueNs - report.plannedNs);
    if (report.wakeLeadNs !== undefined) judged.wakeLeadNs = report.wakeLeadNs;
    if (report.spinLeadNs !== undefined) judged.spinLeadNs = report.spinLeadNs;
    return judged;
  });
  const run: PhotoRun = { index, result, nodes };
  if (mids.length > 1) {
    const sorted = [...mids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    run.trueSpreadNs = Number(sorted.at(-1)! - sorted[0]!);
  }
  return run;
}

export interface PhotoRunOptions {
  action: CaptureAction;
  count: number;
  truthFile: string;
  readyWithinNs: number;
  /** The first trigger's lead: the nodes start their cameras when it arrives. */
  firstInNs?: bigint;
  inNs?: bigint;
  progress?: (line: string) => void;
  /** A first capture not counted (the cameras start, the pipeline fills). */
  warmUp?: boolean;
  /** A trigger whose readiness gate times out (or, slotted, outlasts the round's lead) is skipped (told here) instead of ending the run (benchmarks on a loaded machine). */
  onNotReady?: (error: Error) => void;
}

/** Fires `count` captures, one after the other, and judges each. */
export async function runPhotos(cluster: Cluster, o: PhotoRunOptions): Promise<PhotoRun[]> {
  const runs: PhotoRun[] = [];
  const total = o.count + (o.warmUp ? 1 : 0);
  for (let i = 0; i < total; i++) {
    const first = i === 0;
    let result: TriggerResult;
    try {
      result = await cluster.coordinator!.run({
        action: o.action,
        inNs: first ? (o.firstInNs ?? 5_000_000_000n) : (o.inNs ?? 1_000_000_000n),
        readyWithinNs: o.readyWithinNs,
        readyTimeoutMs: 60_000,
        progress: o.progress,
      });
    } catch (error) {
      if (!(error instanceof NotReadyError) || !o.onNotReady) throw error;
      o.onNotReady(error);
      continue;
    }
    if (o.warmUp && first) continue;
    runs.push(judgePhotos(runs.length, result, o.truthFile));
  }
  return runs;
}

export interface SlottedPhotoRunOptions extends PhotoRunOptions {
  /** Node j's instant is the round's instant + j × slotNs. */
  slotNs: bigint;
}

/**
 * Fires `count` rounds in which every node captures ALONE, in its own time
 * slot (node j at the round's instant + j·slot, a trigger of its own), and
 * judges each node against its own instant: the spread across nodes is then
 * what nodes that each own a CPU would show (one per Pi), on a machine where
 * ten of them share two cores. The clocks are the same ten clocks, read a
 * few hundred ms apart (their drift over that is ns).
 */
export async function runSlottedPhotos(cluster: Cluster, o: SlottedPhotoRunOptions): Promise<PhotoRun[]> {
  const runs: PhotoRun[] = [];
  const ids = cluster.nodeIds();
  const total = o.count + (o.warmUp ? 1 : 0);
  for (let i = 0; i < total; i++) {
    const first = i === 0;
    const lead = first ? (o.firstInNs ?? 5_000_000_000n) : (o.inNs ?? 1_000_000_000n);
    let results: TriggerResult[];
    try {
      // Every node through the gate before the round's instant is chosen (each trigger's own gate then passes at once).
      await waitUntilReady(cluster.hub!.directory, { nodes: ids, thresholdNs: o.readyWithinNs, maxStateAgeMs: 5_000, timeoutMs: 60_000 });
      const roundNs = cluster.timescale.nowNs() + lead;
      results = await Promise.all(
        ids.map((id, j) =>
          cluster.coordinator!.run({ action: o.action, startNs: roundNs + BigInt(j) * o.slotNs, nodes: [id], readyWithinNs: o.readyWithinNs, readyTimeoutMs: 60_000 }),
        ),
      );
    } catch (error) {
      // A node whose own gate outlasted the round's lead is refused before its trigger is sent (StartPassedError): a skipped round, as a gate that timed out.
      if (!(error instanceof NotReadyError || error instanceof StartPassedError) || !o.onNotReady) throw error;
      o.onNotReady(error);
      continue;
    }
    if (o.warmUp && first) continue;
    const judged = results.map((r) => judgePhotos(runs.length, r, o.truthFile));
    const nodes = judged.flatMap((j) => j.nodes);
    const errors = nodes.filter((n) => n.trueErrorNs !== undefined).map((n) => n.trueErrorNs!);
    const clocks = results.flatMap((r) => r.reports.filter((rep) => rep.clockTrueNs !== undefined).map((rep) => Number(rep.clockTrueNs! - rep.plannedNs)));
    const run: PhotoRun = { index: runs.length, result: results[0]!, nodes };
    if (errors.length > 1) run.trueSpreadNs = Math.max(...errors) - Math.min(...errors);
    if (clocks.length > 1) run.clockSpreadNs = Math.max(...clocks) - Math.min(...clocks);
    runs.push(run);
  }
  return runs;
}
