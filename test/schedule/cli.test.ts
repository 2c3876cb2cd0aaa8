import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, CLI_PATH } from '../support/cli.js';
import { start, waitFor } from '../support/processes.js';
import { haveChronyd, startChronydServer } from '../support/chronyd.js';

const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const lines = (text: string) => text.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('schedule/cli: lockstep wait, at, cron', function () {
  this.timeout(30_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'lockstep-schedule-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('wait returns at the instant (@EPOCH), and says so in --json', async () => {
    const target = nowNs() + 1_500_000_000n;
    const whenArg = `@${target / 1_000_000_000n}.${(target % 1_000_000_000n).toString().padStart(9, '0')}`;
    const result = await runCli(['wait', whenArg, '--json']);
    const returnedNs = nowNs();
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
    for (const bad of ['tomorrow', '12:00', '+5', '2026-13-01T00:00:00Z']) {
      const result = await runCli(['wait', bad]);
      expect(result.code, bad).to.equal(2);
      expect(result.stderr).to.match(/cannot read WHEN/).and.match(/Accepted:/);
    }
    const past = await runCli(['wait', '2020-01-01T00:00:00Z']);
    expect(past.code).to.equal(1);
    expect(past.stderr).to.match(/passed/);
    const late = await runCli(['wait', '2020-01-01T00:00:00Z', '--if-past', 'fire-late', '--json']);
    expect(late.code).to.equal(0);
    expect(lines(late.stdout)[0]!.policy).to.equal('fired-late');
  });

  it('at runs the command at the instant, reports the spawn latency, passes its exit status', async () => {
    const out = join(dir, 'at.txt');
    const result = await runCli(['at', '+700ms', '--json', '--', 'sh', '-c', `date +%s%N > ${out}; exit 3`]);
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

  it('cron --json fires twice, on whole seconds, within ~2.5 s', async () => {
    const started = Date.now();
    const result = await runCli(['cron', '* * * * * *', '--json', '--count', '2', '--', 'true'], { timeoutMs: 6000 });
    expect(result.code, result.stderr).to.equal(0);
    expect(Date.now() - started).to.be.lessThan(4000);
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
    const result = await runCli(['cron', '* * * * * *', '--json', '--count', '2', '--', 'sleep', '1.3'], { timeoutMs: 9000 });
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
    const bad = await runCli(['cron', '* * * * *', '--', 'true']);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/6 fields/);
    const zone = await runCli(['cron', '* * * * * *', '--tz', 'Mars/Base', '--', 'true']);
    expect(zone.code).to.equal(2);
    expect(zone.stderr).to.match(/unknown time zone/);
    // 30 February never comes: refused with the reason (exit 2), not a job that silently ends with exit 0.
    const never = await runCli(['cron', '0 0 0 30 2 *', '--', 'true']);
    expect(never.code).to.equal(2);
    expect(never.stderr).to.match(/day of month/);
  });

  it('wait --ntp: synchronizes to a real chronyd first, then fires with a measured error bound', async function () {
    if (!haveChronyd()) this.skip();
    const server = await startChronydServer();
    try {
      const result = await runCli(['wait', '+500ms', '--ntp', `${server.host}:${server.port}`, '--sync-timeout', '15s', '--json', '--verbose'], { timeoutMs: 25_000 });
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stderr).to.match(/synchronized to 127\.0\.0\.1/);
      const [report] = lines(result.stdout);
      // One machine: chronyd serves the same clock, so the measured bound is small and finite.
      expect(report!.errorBoundNs).to.be.a('number').and.lessThan(50_000_000);
      expect(report!.errorBoundNs).to.not.equal(1_000_000); // not the system-clock assumption
    } finally {
      await server.stop();
    }
  });

  it('at --ntp and cron --ntp: the command runs on the disciplined clock, with its measured bound', async function () {
    if (!haveChronyd()) this.skip();
    const server = await startChronydServer();
    try {
      const ntp = `${server.host}:${server.port}`;
      const dir = mkdtempSync(join(tmpdir(), 'lockstep-at-ntp-'));
      const marker = join(dir, 'ran');
      const at = await runCli(['at', '+500ms', '--ntp', ntp, '--sync-timeout', '15s', '--json', '--', 'sh', '-c', `echo "$LOCKSTEP_INSTANT_NS" > ${marker}`], { timeoutMs: 25_000 });
      expect(at.code, at.stderr).to.equal(0);
      const [atReport] = lines(at.stdout);
      expect(atReport!.errorBoundNs).to.be.a('number').and.lessThan(50_000_000).and.not.equal(1_000_000);
      expect(readFileSync(marker, 'utf8').trim()).to.equal(String(atReport!.plannedNs)); // the child got the instant it ran for
      const cron = await runCli(['cron', '* * * * * *', '--count', '2', '--ntp', ntp, '--sync-timeout', '15s', '--json', '--', 'true'], { timeoutMs: 25_000 });
      expect(cron.code, cron.stderr).to.equal(0);
      const fires = lines(cron.stdout).filter((r) => r.plannedNs !== undefined && r.errorBoundNs !== undefined);
      expect(fires.length).to.equal(2);
      for (const f of fires) expect(BigInt(f.plannedNs as string) % 1_000_000_000n, 'on the second').to.equal(0n);
      expect(fires[0]!.errorBoundNs).to.not.equal(1_000_000);
    } finally {
      await server.stop();
    }
  });

  it('--ntp to a server that never answers: a clear failure (exit 1), not a hang', async () => {
    const result = await runCli(['at', '+1s', '--ntp', '127.0.0.1:9', '--sync-timeout', '2s', '--', 'true'], { timeoutMs: 15_000 });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/not synchronized within 2000 ms/);
  });
});
