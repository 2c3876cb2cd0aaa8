/**
 * The simulated recorder: an actuator that records the TRUE instant of every
 * edge or capture. For a node on a SimulatedClock the truth is
 * clock.truthNs() (what its wrong clock is wrong against); otherwise the real
 * clock. It can add a latency and a jitter, as a slow device would, so tests
 * and the demo (ten simulated nodes) compare when things really happened.
 */
import { truthReader, type Actuator, type FireInput, type FireOutcome, type Level, type RawClock } from '../src/schedule/actuator.js';

export interface SimRecord {
  /** Which fire this is, across the recorder's life (0-based). */
  seq: number;
  /** The instant the scheduler aimed at (UTC ns). */
  plannedNs: bigint;
  /** When it really happened: truth at fire() + latency + jitter. */
  trueNs: bigint;
  /** trueNs − plannedNs. */
  errorNs: number;
  level?: Level;
  index?: number;
  tag?: string;
}

export interface SimOptions {
  name?: string;
  /** The node's clock: a SimulatedClock's truth is used; any other clock is taken as true. Real clock by default. */
  clock?: RawClock;
  /** Or a function that reads true time (wins over clock). */
  truthNs?: () => bigint;
  /** Fixed device latency added to each recorded instant, ns. */
  latencyNs?: number;
  /** Uniform jitter, ± this many ns, added to each recorded instant. */
  jitterNs?: number;
  /** Lead the scheduler should apply (simulating a calibrated camera). */
  leadNs?: number;
  /** Random source in [0, 1) (seeded in tests). */
  random?: () => number;
  /** Called on every record. */
  onRecord?: (record: SimRecord) => void;
}

export class SimulatedRecorder implements Actuator {
  readonly name: string;
  readonly leadNs: number;
  readonly records: SimRecord[] = [];
  private readonly truth: () => bigint;
  private prepared = false;
  private releasedLevel: Level | undefined;

  constructor(private readonly options: SimOptions = {}) {
    this.name = options.name ?? 'simulated recorder';
    this.leadNs = options.leadNs ?? 0;
    this.truth = options.truthNs ?? truthReader(options.clock);
  }

  async prepare(): Promise<void> {
    this.prepared = true;
    // Run the measuring code once cold, like the real drivers' warm-up: the first record is then not ~100 µs late.
    for (let i = 0; i < 3; i++) this.measure(0n);
  }

  private measure(instantNs: bigint, draw = true): { trueNs: bigint; errorNs: number } {
    const nowTrue = this.truth();
    const jitter = draw && this.options.jitterNs ? Math.round(((this.options.random ?? Math.random)() * 2 - 1) * this.options.jitterNs) : 0;
    const trueNs = nowTrue + BigInt(Math.round(this.options.latencyNs ?? 0) + jitter);
    return { trueNs, errorNs: Number(trueNs - instantNs) };
  }

  /** fire()'s rehearsal: measures, records nothing and draws no jitter (seeded tests stay the same). */
  rehearse(instantNs: bigint = 0n, input: FireInput = {}): void {
    this.fire(instantNs, input, true);
  }

  /** The scheduler rehearses through fire() itself (Actuator.rehearsesInFire). */
  readonly rehearsesInFire = true;

  fire(instantNs: bigint, input?: FireInput, rehearsal?: false): FireOutcome;
  fire(instantNs: bigint, input: FireInput | undefined, rehearsal: boolean): FireOutcome | undefined;
  fire(instantNs: bigint, input: FireInput = {}, rehearsal = false): FireOutcome | undefined {
    // The truth first; the rest in keep(), after the truth, is all that was never rehearsed.
    const measured = this.measure(instantNs, !rehearsal);
    if (rehearsal) return undefined;
    return this.keep(measured, instantNs, input);
  }

  private keep({ trueNs, errorNs }: { trueNs: bigint; errorNs: number }, instantNs: bigint, input: FireInput): FireOutcome {
    const record: SimRecord = { seq: this.records.length, plannedNs: instantNs, trueNs, errorNs };
    if (input.level !== undefined) record.level = input.level;
    if (input.index !== undefined) record.index = input.index;
    if (input.tag !== undefined) record.tag = input.tag;
    this.records.push(record);
    this.options.onRecord?.(record);
    return { detail: `recorded at true ${trueNs} (${record.errorNs} ns from plan)`, costNs: 0 };
  }

  /** True when prepare() ran and release() did not. */
  get active(): boolean {
    return this.prepared;
  }

  /** The level the line was left at by release() (always 0: off). */
  get finalLevel(): Level | undefined {
    return this.releasedLevel;
  }

  async release(): Promise<void> {
    if (!this.prepared) return;
    this.prepared = false;
    this.releasedLevel = 0;
  }
}
