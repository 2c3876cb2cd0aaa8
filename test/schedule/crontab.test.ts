/**
 * `lockstep crontab FILE` against real files and real processes: every form
 * runs the right command at the right instants, /metrics counts match the
 * runs, reloads (SIGHUP, an editor's rename) keep what did not change, a bad
 * file is refused, and SIGTERM waits for the running commands and orphans none.
 * Fast 6-field schedules, generous bounds (2-core shared machine).
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH } from '../support/cli.js';
import { start, waitFor, type Started } from '../support/processes.js';
import { freeTcpPort } from '../support/ports.js';
import { haveChronyd, startChronydServer } from '../support/chronyd.js';

type Event = Record<string, unknown> & { event: string; job?: string };
const events = (p: Started): Event[] =>
  p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Event);
const of = (p: Started, event: string, job?: string) => events(p).filter((e) => e.event === event && (job === undefined || e.job === job));
const exitOf = (p: Started) => new Promise<number | null>((resolve) => (p.child.exitCode !== null ? resolve(p.child.exitCode) : p.child.once('exit', (code) => resolve(code))));
/** Running (a zombie waiting for init to reap it has exited: not alive). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    })
      .on('error', reject)
      .end();
  });
}

/** A small parser of the Prometheus text format: every line a comment (# HELP/# TYPE) or `name{labels} value`. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        expect(['counter', 'gauge'], line).to.include(meta[3]);
        expect(types.has(meta[2]!), `one TYPE for ${meta[2]}`).to.equal(false);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$/.exec(line);
    expect(sample, `not a sample line: ${line}`).to.not.equal(null);
    expect(types.has(sample![1]!), `TYPE before ${sample![1]}`).to.equal(true);
    if (types.get(sample![1]!) === 'counter') expect(sample![1]).to.match(/_total$/);
    const value = Number(sample![3] === '+Inf' ? Infinity : sample![3]);
    expect(Number.isNaN(value), line).to.equal(false);
    samples.set(sample![1]! + (sample![2] ?? ''), value);
  }
  return samples;
}

describe('schedule/crontab: lockstep crontab FILE', function () {
  this.timeout(30_000);
  let dir: string;
  const started: Started[] = [];
  const crontab = (file: string, ...args: string[]) => {
    const p = start(process.execPath, [CLI_PATH, 'crontab', file, '--json', ...args]);
    started.push(p);
    return p;
  };
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'lockstep-crontab-'))));
  afterEach(async () => {
    for (const p of started.splice(0)) await p.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs every form at its instants (env, CRON_TZ, %, SHELL, @reboot, names, overlap), and /metrics counts match', async () => {
    const port = await freeTcpPort();
    const out = (name: string) => join(dir, name);
    const file = out('crontab');
    writeFileSync(
      file,
      [
        '# every form lockstep crontab reads',
        'GREETING = "hello  world "',
        '# name: every-second',
        `* * * * * * echo "$GREETING|$LOCKSTEP_INSTANT_NS|$(date +\\%s\\%N)" >> ${out('a')}; echo "said $GREETING"; echo oops >&2`,
        'CRON_TZ=Asia/Kolkata',
        `*/2 * * * * * cat >> ${out('b')}%one%two \\% three`,
        `@reboot echo boot >> ${out('c')}`,
        '# name: fails',
        '* * * * * * exit 4',
        '# name: slow',
        '* * * * * * sleep 1.5',
        'SHELL=/bin/bash',
        `# name: bash`,
        `*/2 * * * * * echo "$BASH_VERSION" >> ${out('d')}`,
        '',
      ].join('\n'),
    );
    const p = crontab(file, '--metrics', `127.0.0.1:${port}`);
    await waitFor(() => of(p, 'exit', 'slow').length >= 1 && of(p, 'fire', 'every-second').length >= 3, 15_000, 'three fires of every-second and a slow run ending');
    // Between two whole seconds (every exit of this second is in), read the metrics and the reports.
    await waitFor(() => Date.now() % 1000 > 350 && Date.now() % 1000 < 600 && of(p, 'exit', 'every-second').length === of(p, 'fire', 'every-second').length, 5000, 'mid-second');
    const metrics = await get(`http://127.0.0.1:${port}/metrics`);
    const seen = events(p);
    expect(metrics.status).to.equal(200);
    expect(metrics.type).to.match(/^text\/plain; version=0\.0\.4/);
    const m = parseExposition(metrics.body);
    const count = (event: string, job: string) => seen.filter((e) => e.event === event && e.job === job).length;
    for (const job of ['every-second', 'line-6', 'line-7', 'fails', 'slow', 'bash']) {
      expect(m.get(`lockstep_crontab_job_runs_total{job="${job}"}`), job).to.equal(count('fire', job));
    }
    expect(m.get('lockstep_crontab_job_failures_total{job="fails"}')).to.equal(count('fire', 'fails'));
    expect(m.get('lockstep_crontab_job_failures_total{job="every-second"}')).to.equal(0);
    const overlaps = seen.filter((e) => e.event === 'skip' && e.job === 'slow' && e.reason === 'overlap').length;
    expect(overlaps).to.be.greaterThan(0);
    expect(m.get('lockstep_crontab_job_skips_total{job="slow",reason="overlap"}')).to.equal(overlaps);
    expect(m.get('lockstep_crontab_job_last_duration_seconds{job="slow"}')).to.be.within(1.4, 3);
    expect(m.get('lockstep_crontab_job_last_exit_code{job="fails"}')).to.equal(4);
    expect(m.get('lockstep_crontab_job_last_start_lateness_seconds{job="every-second"}')).to.be.within(0, 0.5);
    expect(m.get('lockstep_crontab_job_last_start_timestamp_seconds{job="every-second"}')! % 1).to.equal(0);
    expect(m.get('lockstep_clock_synchronized')).to.equal(1);
    expect(m.get('lockstep_clock_error_bound_seconds')).to.be.within(0.0009, 0.01);
    expect(Math.abs(m.get('lockstep_clock_offset_seconds')!)).to.be.lessThan(0.01);
    const p404 = await get(`http://127.0.0.1:${port}/nope`);
    expect(p404.status).to.equal(404);

    // every-second: on whole seconds, the child got its instant and started soon after it; env value with its blanks.
    const fires = of(p, 'fire', 'every-second');
    const rows = readFileSync(out('a'), 'utf8').trim().split('\n').map((l) => l.split('|'));
    expect(rows.length).to.be.at.least(3);
    const planned = new Set(fires.map((f) => f.plannedNs));
    for (const [greeting, instant, ranAt] of rows) {
      expect(greeting).to.equal('hello  world ');
      expect(planned.has(instant), `LOCKSTEP_INSTANT_NS ${instant} is a planned instant`).to.equal(true);
      expect(BigInt(instant!) % 1_000_000_000n).to.equal(0n);
      const lateNs = Number(BigInt(ranAt!) - BigInt(instant!));
      expect(lateNs).to.be.within(0, 500_000_000);
    }
    expect(new Set(fires.map((f) => f.plannedNs)).size, 'no instant fired twice').to.equal(fires.length);
    // Output passed on line by line, under the name, from both streams.
    expect(of(p, 'output', 'every-second').some((e) => e.stream === 'stdout' && e.line === 'said hello  world ')).to.equal(true);
    expect(of(p, 'output', 'every-second').some((e) => e.stream === 'stderr' && e.line === 'oops')).to.equal(true);
    // %: stdin of the */2 entry (line 6), on even seconds only; CRON_TZ moves no second.
    expect(readFileSync(out('b'), 'utf8')).to.match(/^(one\ntwo % three)+$/);
    for (const f of of(p, 'fire', 'line-6')) expect((BigInt(f.plannedNs as string) / 1_000_000_000n) % 2n).to.equal(0n);
    // @reboot once; SHELL=/bin/bash for the entries below it.
    expect(readFileSync(out('c'), 'utf8')).to.equal('boot\n');
    expect(readFileSync(out('d'), 'utf8').trim().split('\n')[0]).to.match(/^\d+\.\d+/);
    // Exit reports: status and duration per run.
    const exits = of(p, 'exit', 'fails');
    expect(exits.length).to.be.greaterThan(0);
    for (const e of exits) expect(e).to.include({ code: 4 }).and.have.property('durationNs').that.is.a('number');
    p.child.kill('SIGTERM');
    expect(await exitOf(p)).to.equal(0);
  });

  it('reloads on SIGHUP and on an editor-style rename: unchanged entries keep running, removed stop, new fire, a bad file is refused', async () => {
    const file = join(dir, 'crontab');
    const long = `# name: long\n* * * * * * echo start >> ${join(dir, 'long')}; sleep 2.2; echo end >> ${join(dir, 'long')}\n`;
    const removed = `# name: gone\n* * * * * * echo x >> ${join(dir, 'gone')}\n`;
    const added = `# name: new\n* * * * * * echo y >> ${join(dir, 'new')}\n`;
    const later = `# name: later\n* * * * * * echo z >> ${join(dir, 'later')}\n`;
    const replace = (text: string) => {
      // What vim and most editors do: write a new file, rename it over the old one.
      writeFileSync(`${file}.tmp`, text);
      renameSync(`${file}.tmp`, file);
    };
    writeFileSync(file, long + removed);
    const p = crontab(file);
    await waitFor(() => of(p, 'fire', 'long').length === 1 && of(p, 'fire', 'gone').length >= 1, 10_000, 'long running, gone fired');
    const longPid = of(p, 'fire', 'long')[0]!.pid as number;

    replace(long + added);
    p.child.kill('SIGHUP');
    await waitFor(() => of(p, 'reload').length === 1, 5000, 'the SIGHUP reload');
    const reload = of(p, 'reload')[0]!;
    expect(reload).to.deep.include({ why: 'SIGHUP', unchanged: ['long'], added: ['new'], removed: ['gone'] });
    const goneFiresAtReload = of(p, 'fire', 'gone').length;
    await waitFor(() => of(p, 'fire', 'new').length >= 1, 5000, 'the new entry firing');

    // A file that does not parse: refused with FILE:LINE, the old schedule keeps running.
    replace(long + added + '61 * * * * * broken\n');
    await waitFor(() => of(p, 'reload-refused').length === 1, 5000, 'the refusal');
    const refused = of(p, 'reload-refused')[0]!;
    expect(refused.why).to.equal('file changed');
    expect(refused.reason).to.match(new RegExp(`^${file.replace(/[/.]/g, '\\$&')}:5: `));
    const newFires = of(p, 'fire', 'new').length;
    await waitFor(() => of(p, 'fire', 'new').length >= newFires + 1, 5000, 'new still firing after the refusal');

    // A good file again, changed by rename only (no signal): the watch sees it.
    replace(long + added + later);
    await waitFor(() => of(p, 'reload').length === 2, 5000, 'the file-change reload');
    expect(of(p, 'reload')[1]).to.deep.include({ why: 'file changed', unchanged: ['long', 'new'], added: ['later'], removed: [] });
    await waitFor(() => of(p, 'fire', 'later').length >= 1 && of(p, 'exit', 'long').length >= 1, 8000, 'later firing, long ending');

    // The run that was going through both reloads finished on its own (not killed), once.
    const longExit = of(p, 'exit', 'long')[0]!;
    expect(longExit).to.include({ pid: longPid, code: 0 });
    expect(readFileSync(join(dir, 'long'), 'utf8')).to.match(/^start\nend\n/);
    expect(of(p, 'fire', 'gone').length, 'gone never fired after its removal').to.equal(goneFiresAtReload);
    const newPlanned = of(p, 'fire', 'new').map((f) => f.plannedNs);
    expect(new Set(newPlanned).size, 'nothing fired twice').to.equal(newPlanned.length);
    const longPlanned = of(p, 'fire', 'long').map((f) => f.plannedNs);
    expect(new Set(longPlanned).size).to.equal(longPlanned.length);
    expect(of(p, 'skip', 'long').every((s) => s.reason === 'overlap')).to.equal(true); // its schedule went on through the reloads
    expect(of(p, 'skip', 'long').length).to.be.greaterThan(0);
    p.child.kill('SIGTERM');
    expect(await exitOf(p)).to.equal(0);
  });

  it('SIGTERM with commands running: their process trees get it, the exit waits for them, nothing is orphaned', async () => {
    const file = join(dir, 'crontab');
    const pids = join(dir, 'pids');
    writeFileSync(
      file,
      [
        '# name: cleanup',
        `* * * * * * trap 'sleep 0.6; echo cleaned >> ${join(dir, 'cleaned')}; exit 0' TERM; sleep 30 & echo $! >> ${pids}; wait`,
        '# name: plain',
        `* * * * * * sleep 31 & echo $! >> ${pids}; sleep 32; echo after`,
        '',
      ].join('\n'),
    );
    const p = crontab(file);
    await waitFor(() => of(p, 'fire', 'cleanup').length >= 1 && of(p, 'fire', 'plain').length >= 1 && existsSync(pids) && readFileSync(pids, 'utf8').trim().split('\n').length >= 2, 10_000, 'both running');
    const children = readFileSync(pids, 'utf8').trim().split('\n').map(Number);
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    expect(await exitOf(p)).to.equal(0);
    const tookMs = Date.now() - t0;
    expect(tookMs, 'waited for the trap').to.be.within(500, 5000);
    expect(readFileSync(join(dir, 'cleaned'), 'utf8')).to.equal('cleaned\n');
    const exits = of(p, 'exit');
    expect(exits.find((e) => e.job === 'cleanup')).to.include({ code: 0 });
    expect(exits.find((e) => e.job === 'plain')).to.include({ code: 143 }); // sh killed by SIGTERM
    // A signalled process may take a moment to be gone (it was sent the signal before we exited).
    await waitFor(() => children.every((pid) => !alive(pid)), 2000, 'the background children gone').catch(() => {});
    for (const pid of children) expect(alive(pid), `background child ${pid} orphaned`).to.equal(false);
  });

  it('--ntp: every entry runs on the embedded client\'s clock (a real chronyd), and /metrics shows it measured', async function () {
    if (!haveChronyd()) this.skip();
    const server = await startChronydServer();
    try {
      const port = await freeTcpPort();
      const file = join(dir, 'crontab');
      writeFileSync(file, '* * * * * * true\n*/2 * * * * * true\n');
      const p = crontab(file, '--ntp', `${server.host}:${server.port}`, '--sync-timeout', '15s', '--metrics', `127.0.0.1:${port}`);
      await waitFor(() => of(p, 'fire', 'line-1').length >= 1 && of(p, 'fire', 'line-2').length >= 1, 25_000, 'both entries firing');
      for (const f of of(p, 'fire')) expect(f.errorBoundNs).to.be.a('number').and.lessThan(50_000_000).and.not.equal(1_000_000); // measured, not the system-clock assumption
      const m = parseExposition((await get(`http://127.0.0.1:${port}/metrics`)).body);
      expect(m.get('lockstep_clock_synchronized')).to.equal(1);
      expect(m.get('lockstep_clock_error_bound_seconds')).to.be.within(0, 0.05).and.not.equal(0.001);
      expect(Math.abs(m.get('lockstep_clock_offset_seconds')!)).to.be.lessThan(0.05); // chronyd serves this machine's own clock
      p.child.kill('SIGTERM');
      expect(await exitOf(p)).to.equal(0);
    } finally {
      await server.stop();
    }
  });

  it("FILE '-': the crontab from stdin runs; SIGHUP cannot reload it and says why", async () => {
    const p = start(process.execPath, [CLI_PATH, 'crontab', '-', '--json'], { stdio: ['pipe', 'pipe', 'pipe'] });
    started.push(p);
    p.child.stdin!.end('X=from stdin\n* * * * * * echo "$X"\n');
    await waitFor(() => of(p, 'output', 'line-2').some((e) => e.line === 'from stdin'), 10_000, 'the stdin entry running');
    p.child.kill('SIGHUP');
    await waitFor(() => of(p, 'reload-refused').length === 1, 5000, 'the refusal');
    expect(of(p, 'reload-refused')[0]!.reason).to.match(/stdin/);
    p.child.kill('SIGTERM');
    expect(await exitOf(p)).to.equal(0);
  });

  it('SIGQUIT and --stop-timeout: a command that ignores the signal is killed with its tree when the time is up', async () => {
    const file = join(dir, 'crontab');
    const pids = join(dir, 'pids');
    writeFileSync(file, `# name: stubborn\n* * * * * * trap '' QUIT; echo $$ >> ${pids}; while :; do sleep 0.1; done\n`);
    const p = crontab(file, '--stop-timeout', '1s');
    await waitFor(() => existsSync(pids), 10_000, 'stubborn running');
    const shell = Number(readFileSync(pids, 'utf8').trim());
    const t0 = Date.now();
    p.child.kill('SIGQUIT'); // handled like SIGTERM (Node's default would be to die at once)
    expect(await exitOf(p)).to.equal(0);
    expect(Date.now() - t0).to.be.within(900, 4000);
    expect(p.output()).to.match(/1 command still running after 1000 ms: killed \(SIGKILL\)/);
    await waitFor(() => !alive(shell), 2000, 'the shell gone').catch(() => {});
    expect(alive(shell)).to.equal(false);
  });
});
