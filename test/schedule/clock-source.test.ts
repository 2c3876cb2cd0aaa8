/** The clock `wait`, `at` and `cron` follow: its steps are heard (and printed by the commands), its slews are not. */
import { expect } from 'chai';
import { openClockSource } from '../../src/cli/clock-source.js';
import { stepJson, stepLine } from '../../src/cli/schedule-output.js';
import { SYSTEM_CLOCK_CHECK_MS } from '../../src/schedule/index.js';
import type { TimescaleChange } from '../../src/time/timescale.js';
import { NS_PER_MS } from '../../src/time/units.js';

/** The follower checks once a second; give it a few checks on a busy machine. */
const FOLLOWER_WAIT_MS = 4 * SYSTEM_CLOCK_CHECK_MS;

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  return condition();
}

describe('schedule/clock source (system clock, followed)', function () {
  this.timeout(15_000);

  it('reports the step the follower makes when the system clock and our Timescale part by 80 ms; not a slew', async () => {
    const source = await openClockSource({});
    try {
      expect(source.description).to.equal('system');
      // Without root we cannot step the system clock: step our Timescale 80 ms away instead, as
      // if `date -s` had moved the system clock by −80 ms. Heard from here on: only the follower's answer.
      const { timescale } = source;
      timescale.apply({ rawNs: timescale.clock.nowNs(), offsetNs: 80n * NS_PER_MS, frequencyPpm: 0, errorBoundNs: 1_000_000 });
      const steps: TimescaleChange[] = [];
      source.onStep((step) => steps.push(step));
      expect(await until(() => steps.length > 0, FOLLOWER_WAIT_MS), 'the follower stepped back within a few checks').to.equal(true);
      expect(steps).to.have.length(1);
      expect(Number(steps[0]!.correctionNs)).to.be.closeTo(-80_000_000, 2_000_000);

      const json = JSON.parse(stepJson(steps[0]!, source.description)) as Record<string, unknown>;
      expect(json).to.include({ event: 'step', source: 'system' });
      expect(json.correctionNs as number).to.be.closeTo(-80_000_000, 2_000_000);
      expect(Date.parse(json.to as string) - Date.parse(json.from as string)).to.be.closeTo(-80, 3);
      expect(stepLine(steps[0]!, source.description)).to.match(/^clock \(system\) stepped −(79|80|81)\.\d{3} ms: /);

      // 10 ms apart: within the 50 ms step threshold, so the follower slews it back, and nothing is reported.
      const updates = timescale.updates;
      timescale.apply({ rawNs: timescale.clock.nowNs(), offsetNs: 10n * NS_PER_MS + (timescale.nowNs() - timescale.clock.nowNs()), frequencyPpm: 0, errorBoundNs: 1_000_000 });
      expect(await until(() => timescale.updates > updates + 1, FOLLOWER_WAIT_MS), 'the follower corrected the 10 ms').to.equal(true);
      expect(steps).to.have.length(1);
    } finally {
      await source.close();
    }
  });
});
