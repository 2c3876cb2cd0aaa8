import { expect } from 'chai';
import { ManualClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { NS_PER_SECOND } from '../../src/time/units.js';
import { CronRecurrence, CronPatternError, Scheduler, ManualTimerHost, type FireReport, type SkipReport } from '../../src/schedule/index.js';

const ns = (iso: string) => BigInt(Date.parse(iso)) * 1_000_000n;
const iso = (n: bigint) => new Date(Number(n / 1_000_000n)).toISOString().replace('.000Z', 'Z');

/** The instants a recurrence yields from `from`, up to `count` of them or until `until`. */
function take(r: CronRecurrence, from: string, count: number, until?: string): string[] {
  const out: string[] = [];
  let after = ns(from);
  const end = until ? ns(until) : undefined;
  for (let i = 0; i < count; i++) {
    const next = r.next(after);
    if (!next || (end !== undefined && next.instantNs > end)) break;
    expect(next.instantNs > after, 'strictly forward').to.equal(true);
    out.push(iso(next.instantNs));
    after = next.instantNs;
  }
  return out;
}

describe('schedule/cron (cron-parser v5 + luxon, DST)', () => {
  describe('Europe/Berlin', () => {
    const tz = 'Europe/Berlin';

    it('spring gap (2026-03-29 02:00 → 03:00): a wall time in the gap fires once, the gap length later', () => {
      // 02:30 does not exist that night: it fires at 03:30 CEST (01:30Z), then 02:30 CEST (00:30Z) again.
      expect(take(new CronRecurrence('0 30 2 * * *', { tz }), '2026-03-28T12:00:00Z', 3)).to.deep.equal([
        '2026-03-29T01:30:00Z',
        '2026-03-30T00:30:00Z',
        '2026-03-31T00:30:00Z',
      ]);
    });

    it('autumn overlap (2026-10-25 03:00 → 02:00): a fixed wall time fires once, in the first pass', () => {
      expect(take(new CronRecurrence('0 30 2 * * *', { tz }), '2026-10-24T12:00:00Z', 2)).to.deep.equal([
        '2026-10-25T00:30:00Z', // 02:30 CEST; 02:30 CET (01:30Z) does not fire again
        '2026-10-26T01:30:00Z',
      ]);
    });

    it('autumn overlap: an every-30-minutes job fires in both passes, each real instant once', () => {
      expect(take(new CronRecurrence('0 */30 * * * *', { tz }), '2026-10-24T23:45:00Z', 6)).to.deep.equal([
        '2026-10-25T00:00:00Z', // 02:00 CEST
        '2026-10-25T00:30:00Z', // 02:30 CEST
        '2026-10-25T01:00:00Z', // 02:00 CET
        '2026-10-25T01:30:00Z', // 02:30 CET
        '2026-10-25T02:00:00Z', // 03:00 CET
        '2026-10-25T02:30:00Z',
      ]);
    });

    it('every second across both transitions: strictly increasing, no duplicate, no gap', () => {
      for (const start of ['2026-03-29T00:30:00Z', '2026-10-25T00:30:00Z']) {
        const r = new CronRecurrence('* * * * * *', { tz });
        let after = ns(start);
        for (let i = 0; i < 2 * 3600; i++) {
          const next = r.next(after)!;
          expect(next.instantNs - after).to.equal(NS_PER_SECOND);
          after = next.instantNs;
        }
      }
    });
  });

  describe('America/New_York', () => {
    const tz = 'America/New_York';

    it('spring gap (2026-03-08 02:00 → 03:00) and autumn overlap (2026-11-01 02:00 → 01:00)', () => {
      expect(take(new CronRecurrence('0 30 2 * * *', { tz }), '2026-03-07T12:00:00Z', 2)).to.deep.equal([
        '2026-03-08T07:30:00Z', // 03:30 EDT
        '2026-03-09T06:30:00Z', // 02:30 EDT
      ]);
      expect(take(new CronRecurrence('0 30 1 * * *', { tz }), '2026-10-31T12:00:00Z', 2)).to.deep.equal([
        '2026-11-01T05:30:00Z', // 01:30 EDT once, not again at 01:30 EST
        '2026-11-02T06:30:00Z',
      ]);
    });
  });

  it('a job started inside the repeated hour fires its wall time in the second pass (its first occurrence)', () => {
    expect(take(new CronRecurrence('0 30 2 * * *', { tz: 'Europe/Berlin' }), '2026-10-25T01:10:00Z', 1)).to.deep.equal([
      '2026-10-25T01:30:00Z',
    ]);
  });

  it('answers strictly after a sub-millisecond instant (ns precision)', () => {
    const r = new CronRecurrence('* * * * * *', { tz: 'UTC' });
    expect(r.next(ns('2026-01-01T00:00:00Z') + 500n)!.instantNs).to.equal(ns('2026-01-01T00:00:01Z'));
    expect(r.next(ns('2026-01-01T00:00:00Z') - 500n)!.instantNs).to.equal(ns('2026-01-01T00:00:00Z'));
  });

  it('refuses bad expressions and zones with a reason', () => {
    expect(() => new CronRecurrence('0 * * * *')).to.throw(CronPatternError, /6 fields/);
    expect(() => new CronRecurrence('0 0 25 * * *')).to.throw(CronPatternError);
    expect(() => new CronRecurrence('* * * * * *', { tz: 'Mars/Olympus' })).to.throw(CronPatternError, /unknown time zone/);
  });

  it('an impossible date is refused at once; a rare one is found without looping', () => {
    expect(() => new CronRecurrence('0 0 0 30 2 *', { tz: 'UTC' })).to.throw(CronPatternError, /day of month/); // 30 February
    const t0 = Date.now();
    expect(take(new CronRecurrence('0 0 12 29 2 *', { tz: 'UTC' }), '2026-03-01T00:00:00Z', 2)).to.deep.equal([
      '2028-02-29T12:00:00Z',
      '2032-02-29T12:00:00Z',
    ]);
    expect(Date.now() - t0).to.be.lessThan(5000);
  });

  describe('when cron-parser gives up (its loop limit: past +275760-01-01, the last instant a JS Date holds)', () => {
    /** 275760-01-01T00:00:00Z, the last yearly match cron-parser can reach. */
    const LAST_NEW_YEAR_NS = 8_639_977_881_600_000n * 1_000_000n;

    it('next() throws CronPatternError with the reason instead of answering "no more matches"', () => {
      const r = new CronRecurrence('0 0 0 1 1 *', { tz: 'UTC' });
      expect(r.next(LAST_NEW_YEAR_NS - 1n)!.instantNs).to.equal(LAST_NEW_YEAR_NS);
      expect(() => r.next(LAST_NEW_YEAR_NS)).to.throw(CronPatternError, /loop limit.*gave up searching after \+275760-01-01/);
    });

    function setup(startNs: bigint) {
      const clock = new ManualClock(startNs);
      const timescale = new Timescale(clock, { trustRawClock: { errorBoundNs: 0 } });
      const timers = new ManualTimerHost(clock);
      const scheduler = new Scheduler({ timescale, timers });
      const fires: FireReport[] = [];
      const skips: SkipReport[] = [];
      scheduler.onFire((r) => fires.push(r));
      scheduler.onSkip((r) => skips.push(r));
      return { timers, scheduler, fires, skips };
    }

    it('mid-run: the job fires, then ends with a "failed" skip report; nothing is thrown from the timer', () => {
      const { timers, scheduler, fires, skips } = setup(LAST_NEW_YEAR_NS - 2n * NS_PER_SECOND);
      const job = scheduler.cron('0 0 0 1 1 *', { tz: 'UTC', id: 'new-year' }, () => {});
      // ManualTimerHost runs the timer callbacks inside advance(): an escaping exception would throw here.
      expect(() => timers.advance(10n * NS_PER_SECOND)).to.not.throw();
      expect(fires.map((f) => f.plannedNs)).to.deep.equal([LAST_NEW_YEAR_NS]);
      expect(skips).to.have.length(1);
      expect(skips[0]).to.include({ jobId: 'new-year', reason: 'failed', index: 1, plannedNs: LAST_NEW_YEAR_NS });
      expect(skips[0]!.error).to.match(/loop limit/);
      expect(job.nextInstantNs()).to.equal(undefined);
      expect(scheduler.pending).to.equal(0);
      expect(timers.pending).to.equal(0);
    });

    it('at the first instant: Scheduler.cron throws CronPatternError to its caller and schedules nothing', () => {
      const { scheduler, skips } = setup(LAST_NEW_YEAR_NS + NS_PER_SECOND);
      expect(() => scheduler.cron('0 0 0 1 1 *', { tz: 'UTC' }, () => {})).to.throw(CronPatternError, /loop limit/);
      expect(scheduler.pending).to.equal(0);
      expect(skips).to.have.length(0);
    });
  });

  it('Scheduler.cron through the Berlin autumn night: no double fire, every fire on its instant', () => {
    const start = ns('2026-10-24T23:50:00Z');
    const clock = new ManualClock(start);
    const timescale = new Timescale(clock, { trustRawClock: { errorBoundNs: 0 } });
    const timers = new ManualTimerHost(clock);
    const scheduler = new Scheduler({ timescale, timers });
    const fires: FireReport[] = [];
    scheduler.onFire((r) => fires.push(r));
    scheduler.cron('0 30 2 * * *', { tz: 'Europe/Berlin' }, () => {});
    scheduler.cron('0 0,30 * * * *', { tz: 'Europe/Berlin' }, () => {}, );
    timers.advanceTo(ns('2026-10-25T03:10:00Z'));
    const byJob = (id: string) => fires.filter((f) => f.jobId === id).map((f) => iso(f.plannedNs));
    expect(byJob('job-0')).to.deep.equal(['2026-10-25T00:30:00Z']);
    expect(byJob('job-1')).to.deep.equal([
      '2026-10-25T00:00:00Z', '2026-10-25T00:30:00Z', '2026-10-25T01:00:00Z', '2026-10-25T01:30:00Z',
      '2026-10-25T02:00:00Z', '2026-10-25T02:30:00Z', '2026-10-25T03:00:00Z',
    ]);
    for (const f of fires) expect(f.latenessNs).to.equal(0);
    scheduler.stop();
  });
});
