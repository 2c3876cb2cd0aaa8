/**
 * The instant as a user meets it: a fresh process's first edges (its code
 * compiled eagerly and rehearsed, src/schedule/warm-up.ts), a program
 * started from a helper forked in advance (hardware/launcher.ts), and the
 * reports that say where the action's first line was.
 */
import { expect } from 'chai';
import { runCli } from '../support/cli.js';
import { track, untrack } from '../support/processes.js';
import { prepareCommand } from '../../src/cli/prepared-spawn.js';
import { inSpinRehearsalLeadNs, MAX_IN_SPIN_REHEARSAL_LEAD_NS, MIN_IN_SPIN_REHEARSAL_LEAD_NS } from '../../src/schedule/warm-up.js';

const lines = (text: string) => text.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
/** Generous: the spin itself ends late on a loaded 2-core machine (a sleep oversleeps), which is the OS, not the fire path. */
const SPIN_LATE_BOUND_NS = 25_000_000;
/** From the spin's end to the action's first line: tens of µs cold before warm-up.ts, ~1 µs warm; bounded for a shared machine. */
const PATH_BOUND_NS = 2_000_000;

function collect(stream: NodeJS.ReadableStream | null): () => string {
  let text = '';
  stream?.on('data', (d: Buffer) => (text += d.toString()));
  return () => text;
}

describe('schedule/first-fire: a fresh process, its first edges, its started programs', function () {
  this.timeout(30_000);

  it('a fresh `fire blink --driver sim --count 2`: every edge reaches the recorder within a few ms, reported at the actuator too', async () => {
    const r = await runCli(['fire', 'blink', '--line', '17', '--driver', 'sim', '--count', '2', '--every', '200ms', '--on', '50ms', '--at', '+1500ms', '--json', '--quiet']);
    expect(r.code, r.stderr).to.equal(0);
    const fires = lines(r.stdout).filter((l) => l.event === 'fire');
    expect(fires.map((f) => f.level)).to.deep.equal([1, 0, 1, 0]);
    for (const [i, f] of fires.entries()) {
      const spin = f.latenessNs as number;
      const atActuator = f.actionLatenessNs as number;
      const truth = f.trueErrorNs as number;
      expect(atActuator, `edge ${i}: lateness at the actuator`).to.be.a('number').and.at.least(spin);
      expect(truth - spin, `edge ${i}: spin end → recorder (${JSON.stringify(f)})`).to.be.below(PATH_BOUND_NS);
      expect(truth, `edge ${i}: true lateness`).to.be.within(0, SPIN_LATE_BOUND_NS);
      // Why it was late, if it was: the process woke for the instant before its spin began, and the spin began before the spin ended.
      const woke = f.wakeLeadNs as number;
      const spun = f.spinLeadNs as number;
      expect(woke, `edge ${i}: woke before its spin began`).to.be.a('number').and.at.least(spun);
      expect(spun, `edge ${i}: the spin began before it ended`).to.be.at.least(-spin);
    }
  });

  it('the in-spin rehearsal starts at least 3× its measured cost before the instant, or not at all', () => {
    expect(inSpinRehearsalLeadNs(Infinity)).to.equal(undefined);
    expect(inSpinRehearsalLeadNs(0)).to.equal(MIN_IN_SPIN_REHEARSAL_LEAD_NS);
    expect(inSpinRehearsalLeadNs(25_000)).to.equal(75_000n);
    expect(inSpinRehearsalLeadNs(Number(MAX_IN_SPIN_REHEARSAL_LEAD_NS) / 3 + 1)).to.equal(undefined);
    for (const costNs of [1, 9_999, 40_000, 66_000]) expect(Number(inSpinRehearsalLeadNs(costNs)!)).to.be.at.least(3 * costNs);
  });

  it('a prepared command runs from its pre-forked helper with LOCKSTEP_INSTANT_NS, reports its exit code, and starts again', async () => {
    const prepared = prepareCommand(['sh', '-c', 'echo "$LOCKSTEP_INSTANT_NS $EXTRA"; exit 7'], { EXTRA: 'x' }, { stdio: 'pipe' });
    try {
      // Rehearsals write '#' lines through the helper's pipe (its first socket write, warmed): none may start it.
      for (let i = 0; i < 4; i++) prepared.rehearse(123n);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const first = prepared.start(123n);
      if (first.child.pid) track(first.child.pid);
      const out = collect(first.child.stdout);
      expect(first.preforked).to.equal(true);
      expect(await first.exited).to.equal(7);
      expect(out().trim()).to.equal('123 x');
      if (first.child.pid) untrack(first.child.pid);
      await new Promise((resolve) => setTimeout(resolve, 200)); // the next helper is forked ~20 ms after a start
      const second = prepared.start(456n);
      const out2 = collect(second.child.stdout);
      expect(second.preforked).to.equal(true);
      expect(await second.exited).to.equal(7);
      expect(out2().trim()).to.equal('456 x');
    } finally {
      prepared.dispose();
    }
  });

  it('a disposed command never runs its program', async () => {
    const prepared = prepareCommand(['sh', '-c', 'echo ran'], undefined, { stdio: 'pipe', once: true });
    prepared.dispose();
    expect(() => prepared.start()).to.throw(/disposed/);
  });

  it('at reports a pre-forked start and the lateness at its first line; --early starts it before the instant, which it still gets', async () => {
    const r = await runCli(['at', '+1200ms', '--early', '300ms', '--json', '--', 'sh', '-c', 'echo "env $LOCKSTEP_INSTANT_NS"; exit 4']);
    expect(r.code, r.stderr).to.equal(4);
    const [report] = lines(r.stdout);
    expect(report!.preforked).to.equal(true);
    expect(report!.actionLatenessNs as number).to.be.at.least(report!.latenessNs as number);
    expect(report!.earlyNs).to.equal(300_000_000);
    const instant = /env (\d+)/.exec(r.stdout)![1]!;
    expect(BigInt(instant) - BigInt(report!.plannedNs as string)).to.equal(300_000_000n);
  });
});
