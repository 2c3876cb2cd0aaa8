import { expect } from 'chai';
import { ManualClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { NS_PER_MS, NS_PER_SECOND } from '../../src/time/units.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { ManualTimerHost } from '../../src/schedule/manual-timers.js';
import { parseAction, scheduleAction, validateAction, actionReportJson, describeAction, type ActionFireReport, type ActionSpec } from '../../src/schedule/actions.js';
import { SimulatedRecorder } from '../../hardware/sim.js';

const START = 1_800_000_000n * NS_PER_SECOND;

function rig() {
  const clock = new ManualClock(START - 10n * NS_PER_SECOND);
  const timers = new ManualTimerHost(clock);
  const timescale = new Timescale(clock, { trustRawClock: { errorBoundNs: 1000 } });
  const scheduler = new Scheduler({ timescale, timers });
  const recorder = new SimulatedRecorder({ truthNs: () => clock.nowNs() });
  return { clock, timers, scheduler, recorder };
}

describe('action specs', () => {
  it('accepts the three kinds and normalizes a numeric line', () => {
    expect(parseAction({ kind: 'blink', line: '17', onNs: 100_000_000, periodNs: 1_000_000_000, count: 10 })).to.deep.equal({
      kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: 10,
    });
    expect(parseAction({ kind: 'blink', line: 'GPIO17', onNs: 100_000_000, periodNs: 1_000_000_000, count: 'forever' }).kind).to.equal('blink');
    expect(parseAction({ kind: 'capture', outDir: '/tmp/x', leadNs: 80_000_000, name: 'group-photo' })).to.deep.equal({ kind: 'capture', outDir: '/tmp/x', leadNs: 80_000_000, name: 'group-photo' });
    expect(parseAction({ kind: 'command', argv: ['echo', 'hi'] })).to.deep.equal({ kind: 'command', argv: ['echo', 'hi'] });
    // JSON round trip: a spec is plain data.
    const spec: ActionSpec = { kind: 'blink', line: 4, onNs: 50_000_000, periodNs: 200_000_000, count: 3 };
    expect(parseAction(JSON.parse(JSON.stringify(spec)))).to.deep.equal(spec);
  });

  it('refuses bad specs with a reason that names the field', () => {
    const reason = (v: unknown, o = {}) => {
      const r = validateAction(v, o);
      return r.ok ? 'ok' : r.reason;
    };
    expect(reason(null)).to.match(/object/);
    expect(reason({ kind: 'dance' })).to.match(/unknown action kind "dance"/);
    expect(reason({ kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 100_000_000, count: 1 })).to.match(/periodNs .* longer than blink.onNs/);
    expect(reason({ kind: 'blink', line: 17, onNs: 10, periodNs: 100_000_000, count: 1 })).to.match(/onNs/);
    expect(reason({ kind: 'blink', line: 17, onNs: 1e8, periodNs: 1e9, count: 0 })).to.match(/count/);
    expect(reason({ kind: 'blink', line: 'rm -rf', onNs: 1e8, periodNs: 1e9, count: 1 })).to.match(/line/);
    expect(reason({ kind: 'blink', line: 17, onNs: 1e8, periodNs: 1e9, count: 1, colour: 'red' })).to.match(/no field 'colour'/);
    expect(reason({ kind: 'capture', leadNs: -1 })).to.match(/leadNs/);
    expect(reason({ kind: 'capture', name: '../etc/passwd' })).to.match(/capture.name/);
    expect(reason({ kind: 'capture', outDir: '/tmp' }, { allowOutDir: false })).to.match(/outDir is not accepted/);
    expect(reason({ kind: 'command', argv: [] })).to.match(/argv/);
    expect(reason({ kind: 'command', argv: ['ls'] }, { allowKinds: ['blink', 'capture'] })).to.match(/not accepted here/);
    expect(() => parseAction({ kind: 'command', argv: 'ls' })).to.throw(/invalid action: command.argv/);
  });

  it('describes an action for people', () => {
    expect(describeAction({ kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: 10 })).to.equal('blink line 17: 100 ms on every 1000 ms, 10 times');
  });
});

describe('scheduleAction', () => {
  it('puts every LED edge on its own phase-locked instant and ends with the LED off', async () => {
    const { timers, scheduler, recorder } = rig();
    const fires: ActionFireReport[] = [];
    const run = scheduleAction(scheduler, { kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: 5 }, START, recorder, { onFire: (r) => fires.push(r) });
    expect(run.lastPlannedNs).to.equal(START + 4n * NS_PER_SECOND + 100n * NS_PER_MS);
    timers.advanceTo(START + 10n * NS_PER_SECOND);
    const summary = await run.done;
    expect(summary).to.deep.include({ fires: 10, errors: 0, cancelled: false });
    const edges = recorder.records.map((r) => [Number((r.plannedNs - START) / NS_PER_MS), r.level, r.index]);
    expect(edges).to.deep.equal([
      [0, 1, 0], [100, 0, 0], [1000, 1, 1], [1100, 0, 1], [2000, 1, 2], [2100, 0, 2], [3000, 1, 3], [3100, 0, 3], [4000, 1, 4], [4100, 0, 4],
    ]);
    // Manual timers fire exactly on time: the recorder's truth equals the plan.
    for (const r of recorder.records) expect(r.errorNs).to.equal(0);
    expect(fires.map((f) => f.latenessNs)).to.deep.equal(new Array(10).fill(0));
    expect(fires[0]!.errorBoundNs).to.be.within(1000, 100_000); // the trusted bound, grown by holdover wander
    const json = JSON.parse(JSON.stringify(actionReportJson(fires[1]!)));
    expect(json).to.include({ kind: 'blink', level: 0, index: 0, plannedNs: (START + 100n * NS_PER_MS).toString() });
    expect(recorder.records.at(-1)!.level).to.equal(0);
  });

  it("rehearses each edge through the actuator's rehearse() with fire()'s arguments (when placed, after the coarse wake, 30 µs before); a rehearsal is not a fire", async () => {
    const { timers, scheduler } = rig();
    const calls: string[] = [];
    const actuator = {
      name: 'spy',
      prepare: async () => undefined,
      release: async () => undefined,
      rehearse: (instantNs: bigint, input?: { level?: number; index?: number; tag?: string }) =>
        void calls.push(`rehearse ${instantNs - START} ${JSON.stringify(input)} at ${timers.clock.nowNs() - START}`),
      fire: (instantNs: bigint, input?: { level?: number; index?: number; tag?: string }) =>
        void calls.push(`fire ${instantNs - START} ${JSON.stringify(input)} at ${timers.clock.nowNs() - START}`),
    };
    const run = scheduleAction(scheduler, { kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: 1 }, START, actuator, { tag: 't1' });
    timers.advanceTo(START + 2n * NS_PER_SECOND);
    expect(await run.done).to.deep.include({ fires: 2, errors: 0 });
    const on = 'rehearse 0 {"level":1,"index":0,"tag":"t1"} at';
    const off = 'rehearse 100000000 {"level":0,"index":0,"tag":"t1"} at';
    expect(calls).to.deep.equal([
      `${on} -10000000000`, `${on} -10000000000`, `${off} -10000000000`, `${off} -10000000000`,
      `${on} -4000000`, `${on} -4000000`, `${on} -30000`,
      'fire 0 {"level":1,"index":0,"tag":"t1"} at 0',
      `${off} 96000000`, `${off} 96000000`, `${off} 99970000`,
      'fire 100000000 {"level":0,"index":0,"tag":"t1"} at 100000000',
    ]);
    // The simulated recorder's rehearsal records nothing.
    const { timers: t2, scheduler: s2, recorder } = rig();
    const capture = scheduleAction(s2, { kind: 'capture' }, START, recorder);
    t2.advanceTo(START + NS_PER_SECOND);
    await capture.done;
    expect(recorder.records).to.have.length(1);
  });

  it('rehearses an actuator that rehearsesInFire through fire() itself, with rehearsal true, at the same moments; only the instant is a fire', async () => {
    const { timers, scheduler } = rig();
    const calls: string[] = [];
    const actuator = {
      name: 'spy',
      rehearsesInFire: true,
      prepare: async () => undefined,
      release: async () => undefined,
      rehearse: () => void calls.push('rehearse() called: it must not be'),
      fire: (instantNs: bigint, input?: { level?: number }, rehearsal?: boolean) =>
        void calls.push(`${rehearsal === true ? 'rehearsal' : 'FIRE'} ${instantNs - START} ${input?.level} at ${timers.clock.nowNs() - START}`),
    };
    const run = scheduleAction(scheduler, { kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: 1 }, START, actuator);
    timers.advanceTo(START + 2n * NS_PER_SECOND);
    expect(await run.done).to.deep.include({ fires: 2, errors: 0 });
    expect(calls).to.deep.equal([
      'rehearsal 0 1 at -10000000000', 'rehearsal 0 1 at -10000000000', 'rehearsal 100000000 0 at -10000000000', 'rehearsal 100000000 0 at -10000000000',
      'rehearsal 0 1 at -4000000', 'rehearsal 0 1 at -4000000', 'rehearsal 0 1 at -30000',
      'FIRE 0 1 at 0',
      'rehearsal 100000000 0 at 96000000', 'rehearsal 100000000 0 at 96000000', 'rehearsal 100000000 0 at 99970000',
      'FIRE 100000000 0 at 100000000',
    ]);
    // A rehearsal that throws (the device went away) is neither an error nor a fire: the instant meets it and reports it.
    const { timers: t2, scheduler: s2 } = rig();
    const fires: ActionFireReport[] = [];
    let real = 0;
    const failing = { ...actuator, fire: (_i: bigint, _in?: unknown, rehearsal?: boolean) => { if (rehearsal !== true) real++; throw new Error('gone'); } };
    const capture = scheduleAction(s2, { kind: 'capture' }, START, failing, { onFire: (r) => fires.push(r) });
    t2.advanceTo(START + NS_PER_SECOND);
    expect(await capture.done).to.deep.include({ fires: 0, errors: 1 });
    expect(real).to.equal(1);
    expect(fires.map((f) => f.error)).to.deep.equal(['gone']);
  });

  it("the drivers' rehearsal through fire() acts on nothing: the simulated recorder records nothing", () => {
    const recorder = new SimulatedRecorder({ truthNs: () => START });
    expect(recorder.rehearsesInFire).to.equal(true);
    expect(recorder.fire(START, { level: 1 }, true)).to.equal(undefined);
    recorder.rehearse(START);
    expect(recorder.records).to.have.length(0);
    expect(recorder.fire(START, { level: 1 }).detail).to.match(/recorded at true/);
    expect(recorder.records).to.have.length(1);
  });

  it('cancelling a train mid-pulse drives the LED off at once', async () => {
    const { timers, scheduler, recorder } = rig();
    const run = scheduleAction(scheduler, { kind: 'blink', line: 17, onNs: 500_000_000, periodNs: 1_000_000_000, count: 'forever' }, START, recorder);
    expect(run.lastPlannedNs).to.equal(undefined);
    timers.advanceTo(START + 2n * NS_PER_SECOND + 200n * NS_PER_MS); // pulse 2 is on
    expect(recorder.records.at(-1)!.level).to.equal(1);
    run.cancel();
    const summary = await run.done;
    expect(summary.cancelled).to.equal(true);
    expect(recorder.records.at(-1)!.level).to.equal(0);
    const before = recorder.records.length;
    timers.advanceTo(START + 10n * NS_PER_SECOND);
    expect(recorder.records.length).to.equal(before);
  });

  it('a node joining a running train lands on the same edges (notBefore)', async () => {
    const { timers, scheduler, recorder } = rig();
    const run = scheduleAction(scheduler, { kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: 5 }, START, recorder, {
      notBeforeNs: START + 2n * NS_PER_SECOND + 500n * NS_PER_MS,
    });
    timers.advanceTo(START + 10n * NS_PER_SECOND);
    await run.done;
    expect(recorder.records.map((r) => Number((r.plannedNs - START) / NS_PER_MS))).to.deep.equal([3000, 3100, 4000, 4100]);
  });

  it('a capture fires early by the lead and reports it; the file is named after the tag', async () => {
    const { timers, scheduler } = rig();
    const recorder = new SimulatedRecorder({ truthNs: () => timers.clock.nowNs(), leadNs: 80_000_000, latencyNs: 80_000_000 });
    const fires: ActionFireReport[] = [];
    const run = scheduleAction(scheduler, { kind: 'capture', name: 'photo' }, START, recorder, { tag: 'photo', onFire: (r) => fires.push(r) });
    expect(run.firstPlannedNs).to.equal(START - 80n * NS_PER_MS);
    timers.advanceTo(START + NS_PER_SECOND);
    await run.done;
    expect(fires).to.have.length(1);
    expect(fires[0]).to.include({ kind: 'capture', leadNs: 80_000_000, targetNs: START, plannedNs: START - 80n * NS_PER_MS });
    // The device's latency cancels the lead: the exposure lands on the target.
    expect(recorder.records[0]!.trueNs).to.equal(START);
    expect(recorder.records[0]!.tag).to.equal('photo');
  });

  it("the spec's leadNs overrides the device's", async () => {
    const { timers, scheduler } = rig();
    const recorder = new SimulatedRecorder({ truthNs: () => timers.clock.nowNs(), leadNs: 80_000_000 });
    const run = scheduleAction(scheduler, { kind: 'capture', leadNs: 5_000_000 }, START, recorder);
    expect(run.firstPlannedNs).to.equal(START - 5n * NS_PER_MS);
    run.cancel();
    expect((await run.done).cancelled).to.equal(true);
  });

  it('an instant already past is skipped (ifPast skip) or rejected, and reported', async () => {
    const { scheduler, recorder } = rig();
    const skips: string[] = [];
    const past = START - 20n * NS_PER_SECOND;
    const run = scheduleAction(scheduler, { kind: 'command', argv: ['true'] }, past, recorder, { ifPast: 'skip', onSkip: (s) => skips.push(s.reason) });
    const summary = await run.done;
    expect(summary).to.deep.include({ fires: 0, skips: 1 });
    expect(skips).to.deep.equal(['past']);
    expect(() => scheduleAction(scheduler, { kind: 'command', argv: ['true'] }, past, recorder)).to.throw(/passed|past/i);
    // A train entirely in the past is done at once rather than pending forever.
    const train = scheduleAction(scheduler, { kind: 'blink', line: 1, onNs: 1e8, periodNs: 1e9, count: 2 }, past, recorder);
    expect((await train.done).fires).to.equal(0);
    // ... unless asked to reject a train whose start has passed (the CLI's default).
    expect(() => scheduleAction(scheduler, { kind: 'blink', line: 1, onNs: 1e8, periodNs: 1e9, count: 2 }, past, recorder, { ifPast: 'reject' })).to.throw(/passed/);
  });

  it('an actuator that throws is counted and reported, the train goes on', async () => {
    const { timers, scheduler } = rig();
    let n = 0;
    const flaky = {
      name: 'flaky',
      prepare: async () => undefined,
      release: async () => undefined,
      fire: () => {
        if (n++ === 1) throw new Error('line went away');
      },
    };
    const errors: string[] = [];
    const run = scheduleAction(scheduler, { kind: 'blink', line: 1, onNs: 1e8, periodNs: 1e9, count: 2 }, START, flaky, { onFire: (r) => r.error && errors.push(r.error) });
    timers.advanceTo(START + 5n * NS_PER_SECOND);
    expect(await run.done).to.deep.include({ fires: 3, errors: 1 });
    expect(errors).to.deep.equal(['line went away']);
  });
});
