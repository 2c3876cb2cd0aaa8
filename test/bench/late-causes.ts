/**
 * Why an edge (or an exposure) was late, from its report's leads (FireReport
 * wakeLeadNs / spinLeadNs): the cold and camera benchmarks sort their late
 * ones with it, so a tail is told apart as the process, the machine, or the
 * way from the spin to the truth.
 */

/** Why the late ones were late. */
export interface LateCauses {
  /** The node's clock itself read the instant more than half the threshold off (camera: the clocks' agreement). */
  clock: number;
  /** The process woke for the instant after it (its event loop or the machine). */
  wokeLate: number;
  /** The precise sleep ended after the instant (the spin began late). */
  sleptPast: number;
  /** The spin began in time and ended late: the CPU was taken during it. */
  spinTaken: number;
  /** The spin ended on time: the way from the spin to the truth was slow. */
  afterSpin: number;
}

export interface TimedEdge {
  /** truth − instant (ns): later than lateNs is late (an early edge is the clock's, told by its own figures). */
  trueErrorNs: number;
  /** The spin's end − the instant. */
  latenessNs: number;
  wakeLeadNs?: number;
  spinLeadNs?: number;
  /** The true time the node's clock read the instant − the instant; absent: not judged. */
  clockErrorNs?: number;
}

/** Sorts every edge later than lateNs by its first cause. */
export function lateCauses(edges: TimedEdge[], lateNs: number): LateCauses {
  const causes: LateCauses = { clock: 0, wokeLate: 0, sleptPast: 0, spinTaken: 0, afterSpin: 0 };
  for (const e of edges) {
    if (e.trueErrorNs <= lateNs) continue;
    if (e.clockErrorNs !== undefined && Math.abs(e.clockErrorNs) > lateNs / 2) causes.clock++;
    else if (e.latenessNs <= lateNs / 2) causes.afterSpin++;
    else if (e.wakeLeadNs !== undefined && e.wakeLeadNs < 0) causes.wokeLate++;
    else if (e.spinLeadNs !== undefined && e.spinLeadNs < 0) causes.sleptPast++;
    else causes.spinTaken++;
  }
  return causes;
}

/** One line: "late > 50 µs: woke late 1, …"; afterSpin named by the caller (what lies between the spin and the truth). */
export function causesText(c: LateCauses, lateNs: number, afterSpin = 'after the spin'): string {
  return (
    `late > ${lateNs / 1000} µs: ${c.clock ? `the clock ${c.clock}, ` : ''}woke late ${c.wokeLate}, slept past ${c.sleptPast}, ` +
    `CPU taken in the spin ${c.spinTaken}, ${afterSpin} ${c.afterSpin}`
  );
}
