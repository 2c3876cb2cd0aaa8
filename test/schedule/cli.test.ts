import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, runCliAll, shared, CLI_PATH } from '../support/cli.js';
import { start, waitFor } from '../support/processes.js';
import { haveChronyd, startChronydServer } from '../support/chronyd.js';

const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const lines = (text: string) => text.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('schedule/cli: lockstep wait, at, cron', function () {
  this.timeout(30_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'lockstep-schedule-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Every run here that only waits (for its instant, whole seconds, a sync
   * timeout) starts at once, when the first test needs one: the waits overlap
   * instead of adding up. Leads of 4 s: five Node processes start together, each compiling
   * eagerly, and a loaded machine (or a niced run) took over 3 s to start them.
   */
  const waiting = shared(async () => {
    const started = Date.now();
    const target = nowNs() + 4_000_000_000n;
    const whenArg = `@${target / 1_000_000_000n}.${(target % 1_000_000_000n).toString().padStart(9, '0')}`;
    const out = join(dir, 'at.txt');
    const [wait, at, twice, overlap, silent] = await Promise.all([
      runCli(['wait', whenArg, '--json']).then((r) => ({ ...r, returnedNs: nowNs() })),
      runCli(['at', '+4s', '--json', '--', 'sh', '-c', `date +%s%N > ${out}; exit 3`]),
      runCli(['cron', '* * * * * *', '--json', '--count', '2', '--', 'true'], { timeoutMs: 8000 }).then((r) => ({ ...r, tookMs: Date.now() - started })),
      runCli(['cron', '* * * * * *', '--json', '--count', '2', '--', 'sleep', '1.3'], { timeoutMs: 10_000 }),
      runCli(['at', '+1s', '--ntp', '127.0.0.1:9', '--sync-timeout', '2s', '--', 'true'], { timeoutMs: 15_000 }),
    ]);
    return { target, out, wait: wait!, at: at!, twice: twice!, overlap: overlap!, silent: silent! };
  });

  it('wait returns at the instant (@EPOCH), and says so in --json', async () => {
    const { target, wait: result } = await waiting();
    const returnedNs = result.returnedNs;
    expect(result.code, result.stderr).to.equal(0);
    const [report] = lines(result.stdout);
    expect(report!.plannedNs).to.equal(target.toString());
    expect(BigInt(report!.actualNs as string) >= target).to.equal(true);
    expect(report!.latenessNs as number).to.be.lessThan(20_000_000); // generous: shared 2-core machine
    // It returned after the instant, and not long after (process exit included).
    expect(returnedNs >= target - 1_000_000n).to.equal(true);
    expect(Number(returnedNs - target)).to.be.lessThan(1_000_000_000);
  });

  it('wait: bad WHEN exits 2 with the accepted forms; a passed instant exits 1', async () => {
    const badForms = ['tomorrow', '12:00', '+5', '2026-13-01T00:00:00Z'];
    const results = await runCliAll([...badForms.map((bad) => ({ args: ['wait', bad] })), { args: ['wait', '2020-01-01T00:00:00Z'] }, { args: ['wait', '2020-01-01T00:00:00Z', '--if-past', 'fire-late', '--json'] }]);
    for (const [k, bad] of badForms.entries()) {
      expect(results[k]!.code, bad).to.equal(2);
      expect(results[k]!.stderr).to.match(/cannot read WHEN/).and.match(/Accepted:/);
    }
    const [past, late] = results.slice(badForms.length);
    expect(past!.code).to.equal(1);
    expect(past!.stderr).to.match(/passed/);
    expect(late!.code).to.equal(0);
    expect(lines(late!.stdout)[0]!.policy).to.equal('fired-late');
  });

  it('at runs the command at the instant, reports the spawn latency, passes its exit status', async () => {
    const { out, at: result } = await waiting();
    expect(result.code, result.stderr).to.equal(3);
    const [report] = lines(result.stdout);
    expect(report!.event).to.equal('fire');
    expect(report!.spawnLatencyNs as number).to.be.within(1, 500_000_000);
    const ranAtNs = BigInt(readFileSync(out, 'utf8').trim());
    const plannedNs = BigInt(report!.plannedNs as string);
    expect(ranAtNs >= plannedNs).to.equal(true);
    expect(Number(ranAtNs - plannedNs)).to.be.lessThan(500_000_000);
  });

  it('at: an unknown command is bad input (exit 2) before anything waits', async () => {
    const result = await runCli(['at', '+10s', '--', 'no-such-command-lockstep']);
    expect(result.code).to.equal(2);
    expect(result.stderr).to.match(/not found in PATH/);
  });

  it('cron --json fires twice, on whole seconds, within a few seconds', async () => {
    const result = (await waiting()).twice;
    expect(result.code, result.stderr).to.equal(0);
    expect(result.tookMs).to.be.lessThan(8000); // started with four others, on a loaded machine
    const fires = lines(result.stdout).filter((l) => l.event === 'fire');
    expect(fires.map((f) => f.index)).to.deep.equal([0, 1]);
    for (const f of fires) {
      expect(BigInt(f.plannedNs as string) % 1_000_000_000n).to.equal(0n);
      // Generous: the suite runs two files at once on 2 cores (38 ms seen); the precise figures are `npm run bench -- cold`.
      expect(f.latenessNs as number).to.be.lessThan(100_000_000);
      expect(f.errorBoundNs).to.be.a('number');
    }
    expect(BigInt(fires[1]!.plannedNs as string) - BigInt(fires[0]!.plannedNs as string)).to.equal(1_000_000_000n);
  });

  it('cron --overlap skip: a tick while the command still runs is skipped and reported', async () => {
    const result = (await waiting()).overlap;
    expect(result.code, result.stderr).to.equal(0);
    const events = lines(result.stdout).map((e) => `${e.event}:${e.reason ?? e.index}`);
    expect(events).to.deep.equal(['fire:0', 'skip:overlap', 'fire:1']);
  });

  it('cron on SIGTERM: no new runs, the running command gets the signal, exit 0', async () => {
    const cron = start(process.execPath, [CLI_PATH, 'cron', '* * * * * *', '--json', '--', 'sleep', '30']);
    try {
      await waitFor(() => cron.output().includes('"event":"fire"'), 5000, 'the first fire');
      const exited = new Promise<number | null>((resolve) => cron.child.once('exit', (code) => resolve(code)));
      const t0 = Date.now();
      cron.child.kill('SIGTERM');
      expect(await exited).to.equal(0);
      expect(Date.now() - t0).to.be.lessThan(3000); // did not wait for sleep 30
      expect(cron.output()).to.match(/exited with 143/); // sleep got SIGTERM (128 + 15)
    } finally {
      await cron.stop('SIGKILL');
    }
  });

  it('cron: a bad expression or zone exits 2 with the reason', async () => {
    // 30 February never comes: refused with the reason (exit 2), not a job that silently ends with exit 0.
    const [bad, zone, never] = await runCliAll([{ args: ['cron', '* * * * *', '--', 'true'] }, { args: ['cron', '* * * * * *', '--tz', 'Mars/Base', '--', 'true'] }, { args: ['cron', '0 0 0 30 2 *', '--', 'true'] }]);
    expect(bad!.code).to.equal(2);
    expect(bad!.stderr).to.match(/6 fields/);
    expect(zone!.code).to.equal(2);
    expect(zone!.stderr).to.match(/unknown time zone/);
    expect(never!.code).to.equal(2);
    expect(never!.stderr).to.match(/day of month/);
  });

  describe('--ntp against one real chronyd (wait, at and cron side by side)', () => {
    let server: Awaited<ReturnType<typeof startChronydServer>> | undefined;
    let ntpDir: string;
    before(async function () {
      if (!haveChronyd()) this.skip();
      server = await startChronydServer();
      ntpDir = mkdtempSync(join(tmpdir(), 'lockstep-at-ntp-'));
    });
    after(async () => {
      await server?.stop();
      if (ntpDir) rmSync(ntpDir, { recursive: true, force: true });
    });
    const runs = shared(async () => {
      const ntp = `${server!.host}:${server!.port}`;
      const [wait, at, cron] = await Promise.all([
        runCli(['wait', '+2s', '--ntp', ntp, '--sync-timeout', '15s', '--json', '--verbose'], { timeoutMs: 25_000 }),
        runCli(['at', '+2s', '--ntp', ntp, '--sync-timeout', '15s', '--json', '--', 'sh', '-c', `echo "$LOCKSTEP_INSTANT_NS" > ${join(ntpDir, 'ran')}`], { timeoutMs: 25_000 }),
        runCli(['cron', '* * * * * *', '--count', '2', '--ntp', ntp, '--sync-timeout', '15s', '--json', '--', 'true'], { timeoutMs: 25_000 }),
      ]);
      return { wait: wait!, at: at!, cron: cron! };
    });

    it('wait --ntp: synchronizes to a real chronyd first, then fires with a measured error bound', async () => {
      const result = (await runs()).wait;
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stderr).to.match(/synchronized to 127\.0\.0\.1/);
      const [report] = lines(result.stdout);
      // One machine: chronyd serves the same clock, so the measured bound is small and finite.
      expect(report!.errorBoundNs).to.be.a('number').and.lessThan(50_000_000);
      expect(report!.errorBoundNs).to.not.equal(1_000_000); // not the system-clock assumption
    });

    it('at --ntp and cron --ntp: the command runs on the disciplined clock, with its measured bound', async () => {
      const { at, cron } = await runs();
      expect(at.code, at.stderr).to.equal(0);
      const [atReport] = lines(at.stdout);
      expect(atReport!.errorBoundNs).to.be.a('number').and.lessThan(50_000_000).and.not.equal(1_000_000);
      expect(readFileSync(join(ntpDir, 'ran'), 'utf8').trim()).to.equal(String(atReport!.plannedNs)); // the child got the instant it ran for
      expect(cron.code, cron.stderr).to.equal(0);
      const fires = lines(cron.stdout).filter((r) => r.plannedNs !== undefined && r.errorBoundNs !== undefined);
      expect(fires.length).to.equal(2);
      for (const f of fires) expect(BigInt(f.plannedNs as string) % 1_000_000_000n, 'on the second').to.equal(0n);
      expect(fires[0]!.errorBoundNs).to.not.equal(1_000_000);
    });
  });

  it('--ntp to a server that never answers: a clear failure (exit 1), not a hang', async () => {
    const result = (await waiting()).silent;
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/not synchronized within 2000 ms/);
  });
});
