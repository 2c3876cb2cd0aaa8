/**
 * Crontab benchmark: a 20-entry crontab, every entry due on the same seconds,
 * run three ways for the same length of time (2 minutes by default):
 *   - one `lockstep crontab` (20 entries `*\/5 * * * * *`),
 *   - 20 separate `lockstep cron '*\/5 * * * * *'` processes (what one had to
 *     run before, one per entry),
 *   - Debian's `cron` daemon (20 entries `* * * * *`: it fires on whole
 *     minutes only, so those are compared with lockstep's :00 instants).
 * Each run's program records its own start (CLOCK_REALTIME, the clock cron
 * and our system-clock mode follow): a tiny C program compiled here with cc,
 * or `date +%s%N` when there is no compiler (printed and in the JSON). Every
 * command goes through `/bin/sh -c`, as cron runs it. Lateness = start − the
 * instant (the 5 s or 60 s grid point before it). Also: RSS of the one
 * process against the sum of the 20, and their CPU time.
 *
 * Debian's cron reads /etc/crontab, /etc/cron.d and /var/spool/cron/crontabs,
 * and has no option to read anything else. The bench runs it in a private
 * mount namespace (`unshare --mount`, root needed) where those three paths are
 * bind mounts of temporary files (and /run, for its pid file, a tmpfs): the
 * daemon sees only the bench's crontab, the machine's own crontabs are never
 * touched, and the mounts vanish with the daemon, which is stopped by pid.
 *
 * `npm run bench -- crontab`; LOCKSTEP_BENCH_CRONTAB_SECONDS changes the length.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH } from '../support/cli.js';
import { writeSvg, benchResultPath } from './svg-plot.js';

const ENTRIES = 20;
const SECONDS = Number(process.env.LOCKSTEP_BENCH_CRONTAB_SECONDS ?? 120);
/** The lockstep entries fire every 5 s: 24 instants × 20 entries in 2 minutes, of which the :00 ones are cron's. */
const PERIOD_S = 5;
const MINUTE_NS = 60_000_000_000n;
/**
 * Start-up before the first measured instant: node loading lockstep takes
 * ~0.3 s alone, but 20 of them at once on 2 busy cores took over 5 s here
 * (their first instants were skipped as late): they get longer.
 */
const WARM_UP_MS = 4000;
const WARM_UP_SEPARATE_MS = 12_000;

const STAMP_C = `
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
/* stamp FILE NAME: appends "NAME START_NS INSTANT_NS" (CLOCK_REALTIME at our start) */
int main(int argc, char **argv) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (argc < 3) return 2;
  const char *instant = getenv("LOCKSTEP_INSTANT_NS");
  FILE *f = fopen(argv[1], "a");
  if (!f) return 1;
  fprintf(f, "%s %lld%09ld %s\\n", argv[2], (long long)ts.tv_sec, ts.tv_nsec, instant ? instant : "-");
  fclose(f);
  return 0;
}
`;

interface Sample {
  entry: string;
  startNs: bigint;
  plannedNs: bigint;
  latenessNs: number;
}

interface Stats {
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The spread of the per-entry medians: the entry started first vs the one started last at the same instant. */
  entryP50MinMs: number;
  entryP50MaxMs: number;
}

interface Config {
  name: string;
  /** Starts the schedule asked for in the window (entries × instants). */
  expected?: number;
  /** Instants the processes reported skipped (late: the process could not keep up) in the window. */
  skipped?: number;
  all?: Stats;
  minute?: Stats;
  rssMb?: number;
  cpuS?: number;
  processes: number;
  note?: string;
}

/** A config and its start lateness per sample (ns), for the plot only: the JSON keeps the quantiles. */
interface Measured {
  config: Config;
  latenessNs: number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

function stats(samples: Sample[]): Stats | undefined {
  if (samples.length === 0) return undefined;
  const ms = samples.map((s) => s.latenessNs / 1e6).sort((a, b) => a - b);
  const byEntry = new Map<string, number[]>();
  for (const s of samples) byEntry.set(s.entry, [...(byEntry.get(s.entry) ?? []), s.latenessNs / 1e6]);
  const medians = [...byEntry.values()].map((v) => quantile(v.sort((a, b) => a - b), 0.5));
  return { n: ms.length, p50Ms: quantile(ms, 0.5), p99Ms: quantile(ms, 0.99), maxMs: ms[ms.length - 1]!, entryP50MinMs: Math.min(...medians), entryP50MaxMs: Math.max(...medians) };
}

/** Reads the stamp file: each line's start, the grid instant before it (period), its lateness. */
function readSamples(file: string, periodNs: bigint, fromNs: bigint, toNs: bigint): Sample[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const [entry, start] = line.split(' ') as [string, string];
      const startNs = BigInt(start);
      const plannedNs = startNs - (startNs % periodNs);
      return { entry, startNs, plannedNs, latenessNs: Number(startNs - plannedNs) };
    })
    .filter((s) => s.plannedNs >= fromNs && s.plannedNs < toNs);
}

function procStatus(pid: number): { rssKb: number; cpuTicks: number } {
  try {
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { rssKb: rss, cpuTicks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return { rssKb: NaN, cpuTicks: NaN };
  }
}

/** CLK_TCK on Linux (getconf CLK_TCK): 100 on every common kernel. */
const CLOCK_TICKS_PER_S = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

function stopAll(children: ChildProcess[], signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
          c.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          c.kill(signal);
        }),
    ),
  ).then(() => {});
}

/** The first whole minute at least leadMs from now (so every config measures whole minutes). */
function nextWindowNs(leadMs: number, lengthS: number): { fromNs: bigint; toNs: bigint } {
  const nowNs = BigInt(Date.now()) * 1_000_000n + BigInt(leadMs) * 1_000_000n;
  const fromNs = nowNs - (nowNs % BigInt(PERIOD_S * 1e9)) + BigInt(PERIOD_S * 1e9);
  return { fromNs, toNs: fromNs + BigInt(lengthS) * 1_000_000_000n };
}

async function untilNs(ns: bigint): Promise<void> {
  const ms = Number(ns / 1_000_000n) - Date.now();
  if (ms > 0) await sleep(ms);
}

async function lockstepRun(dir: string, stampCmd: (file: string, name: string) => string, separate: boolean): Promise<Measured> {
  const file = join(dir, separate ? 'separate.txt' : 'crontab.txt');
  const names = Array.from({ length: ENTRIES }, (_v, i) => `e${String(i + 1).padStart(2, '0')}`);
  const expr = `*/${PERIOD_S} * * * * *`;
  const children: ChildProcess[] = [];
  const window = nextWindowNs(separate ? WARM_UP_SEPARATE_MS : WARM_UP_MS, SECONDS);
  if (separate) {
    for (const name of names) children.push(spawn(process.execPath, [CLI_PATH, 'cron', expr, '--', '/bin/sh', '-c', stampCmd(file, name)], { stdio: ['ignore', 'ignore', 'pipe'] }));
  } else {
    const crontab = join(dir, 'bench.crontab');
    writeFileSync(crontab, names.map((n) => `# name: ${n}\n${expr} ${stampCmd(file, n).replace(/%/g, '\\%')}`).join('\n') + '\n');
    children.push(spawn(process.execPath, [CLI_PATH, 'crontab', crontab], { stdio: ['ignore', 'ignore', 'pipe'] }));
  }
  // Both say `skipped #N planned ISO: reason` on stderr for an instant they did not run.
  let stderr = '';
  for (const c of children) c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await untilNs(window.fromNs);
  const cpu0 = children.map((c) => procStatus(c.pid!).cpuTicks);
  await untilNs(window.fromNs + (window.toNs - window.fromNs) / 2n);
  const rssKb = children.reduce((sum, c) => sum + procStatus(c.pid!).rssKb, 0); // halfway: warm, between instants
  await untilNs(window.toNs + 1_500_000_000n);
  const cpuS = children.reduce((sum, c, i) => sum + (procStatus(c.pid!).cpuTicks - cpu0[i]!), 0) / CLOCK_TICKS_PER_S;
  await stopAll(children);
  const samples = readSamples(file, BigInt(PERIOD_S) * 1_000_000_000n, window.fromNs, window.toNs);
  const minute = samples.filter((s) => s.plannedNs % MINUTE_NS === 0n);
  const skipped = [...stderr.matchAll(/skipped #\d+ planned (\S+):/g)].map((m) => BigInt(Date.parse(m[1]!)) * 1_000_000n).filter((ns) => ns >= window.fromNs && ns < window.toNs).length;
  const expected = ENTRIES * Number((window.toNs - window.fromNs) / (BigInt(PERIOD_S) * 1_000_000_000n));
  const config: Config = { name: separate ? `20 × lockstep cron` : 'lockstep crontab', processes: children.length, rssMb: rssKb / 1024, cpuS, expected, skipped };
  const all = stats(samples);
  const min = stats(minute);
  if (all) config.all = all;
  if (min) config.minute = min;
  return { config, latenessNs: samples.map((s) => s.latenessNs) };
}

/** Debian's cron daemon in a private mount namespace that shows it only our crontab (see the header). */
async function debianCronRun(dir: string, stampCmd: (file: string, name: string) => string): Promise<Measured> {
  const name = "Debian cron (cron -f)";
  const cron = '/usr/sbin/cron';
  if (!existsSync(cron)) return { config: { name, processes: 0, note: 'cron is not installed (.ci/ensure-deps installs it)' }, latenessNs: [] };
  if (process.getuid?.() !== 0) return { config: { name, processes: 0, note: 'needs root (a private mount namespace for its crontab)' }, latenessNs: [] };
  const file = join(dir, 'cron.txt');
  const etc = join(dir, 'etc-crontab');
  const empty = join(dir, 'empty');
  const spool = join(dir, 'spool');
  const pam = join(dir, 'pam-cron');
  mkdirSync(empty);
  mkdirSync(spool);
  const lines = Array.from({ length: ENTRIES }, (_v, i) => `* * * * * root ${stampCmd(file, `e${String(i + 1).padStart(2, '0')}`).replace(/%/g, '\\%')}`);
  writeFileSync(etc, `SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n${lines.join('\n')}\n`);
  chmodSync(etc, 0o644);
  // cron's PAM stack wants pam_loginuid, which a container refuses: the session is not what is measured.
  writeFileSync(pam, 'auth sufficient pam_permit.so\naccount sufficient pam_permit.so\nsession sufficient pam_permit.so\n');
  const script = [
    'set -e',
    `mount --bind ${etc} /etc/crontab`,
    `mount --bind ${empty} /etc/cron.d`,
    `mount --bind ${spool} /var/spool/cron/crontabs`,
    ...(existsSync('/etc/pam.d/cron') ? [`mount --bind ${pam} /etc/pam.d/cron`] : []),
    'mount -t tmpfs tmpfs /run',
    `exec ${cron} -f -L 0`,
  ].join('\n');
  // The window: whole minutes only. Start the daemon a few seconds before the first.
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const minutes = Math.max(1, Math.round(SECONDS / 60));
  let fromNs = nowNs - (nowNs % MINUTE_NS) + MINUTE_NS;
  if (fromNs - nowNs < 5_000_000_000n) fromNs += MINUTE_NS;
  const toNs = fromNs + BigInt(minutes) * MINUTE_NS;
  await untilNs(fromNs - 4_000_000_000n);
  const daemon = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'inherit', 'inherit'] });
  let rssKb = NaN;
  try {
    await untilNs(fromNs + 30_000_000_000n);
    rssKb = procStatus(daemon.pid!).rssKb;
    await untilNs(toNs - MINUTE_NS + 5_000_000_000n); // the last minute's jobs have run
  } finally {
    await stopAll([daemon]);
  }
  const samples = readSamples(file, MINUTE_NS, fromNs, toNs);
  const config: Config = { name, processes: 1, rssMb: rssKb / 1024, expected: ENTRIES * minutes };
  const min = stats(samples);
  if (min) config.minute = min;
  else config.note = `no job ran (daemon exit ${daemon.exitCode ?? daemon.signalCode})`;
  return { config, latenessNs: samples.map((s) => s.latenessNs) };
}

/**
 * Program start lateness, one CDF per config, log x (lockstep is ~ms,
 * Debian cron up to a second). lockstep's curves hold every 5 s instant,
 * Debian's the whole minutes it can fire on; the legend says which.
 */
export function plotCrontab(measured: Measured[], subtitle: string): string | undefined {
  const series = measured
    .filter((m) => m.latenessNs.length > 0)
    .map((m) => {
      const s = m.config.all ?? m.config.minute!;
      const which = m.config.all ? `every ${PERIOD_S} s` : ':00 only';
      return { label: `${m.config.name}, ${which} (n ${s.n}, p50 ${s.p50Ms.toFixed(2)} ms, p99 ${s.p99Ms.toFixed(2)} ms)`, values: m.latenessNs };
    });
  if (series.length === 0) return undefined;
  return writeSvg(benchResultPath('crontab-start-lateness.svg'), {
    kind: 'cdf', logX: true, unit: 'ns', title: `${ENTRIES} entries due together: when each program started`, subtitle,
    xLabel: 'program start − planned instant (log)', series,
  });
}

function row(cells: Array<string | number | undefined>, widths: number[]): string {
  const text = (c: string | number | undefined) => (typeof c === 'number' ? (Number.isNaN(c) ? '–' : Number.isInteger(c) ? String(c) : c.toFixed(c >= 100 ? 0 : c >= 10 ? 1 : 3)) : c ?? '–');
  return cells.map((c, i) => text(c).padStart(widths[i]!)).join('  ');
}

export async function run(): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-crontab-'));
  try {
    const stamp = join(dir, 'stamp');
    writeFileSync(`${stamp}.c`, STAMP_C);
    const cc = spawnSync('cc', ['-O2', '-o', stamp, `${stamp}.c`], { encoding: 'utf8' });
    const compiled = cc.status === 0;
    const recorder = compiled ? 'a C program compiled by the bench (clock_gettime(CLOCK_REALTIME) first thing in main)' : '`date +%s%N` (no C compiler here: includes the fork and exec of date)';
    const stampCmd = compiled ? (file: string, name: string) => `${stamp} ${file} ${name}` : (file: string, name: string) => `echo ${name} $(date +%s%N) - >> ${file}`;
    const load0 = loadavg();
    console.log(`${ENTRIES} entries due on the same instants, ${SECONDS} s each; start recorded by ${recorder}; load ${load0.map((l) => l.toFixed(2)).join(' ')}`);
    const measured: Measured[] = [];
    measured.push(await lockstepRun(dir, stampCmd, false));
    measured.push(await lockstepRun(dir, stampCmd, true));
    measured.push(await debianCronRun(dir, stampCmd));
    const configs = measured.map((m) => m.config);
    const load1 = loadavg();
    const widths = [22, 10, 7, 8, 8, 8, 19, 7, 6, 12];
    console.log(row(['', 'instants', 'starts', 'p50 ms', 'p99 ms', 'max ms', 'entry p50 min–max', 'RSS MB', 'CPU s', 'missed/asked'], widths));
    for (const c of configs) {
      for (const [label, s] of [
        ['every 5 s', c.all],
        [':00 only', c.minute],
      ] as const) {
        if (!s) continue;
        const first = label === 'every 5 s' || !c.all; // the per-process columns once per config
        const missed = c.expected === undefined ? undefined : `${c.expected - s.n}/${c.expected}`;
        console.log(row([first ? c.name : '', label, s.n, s.p50Ms, s.p99Ms, s.maxMs, `${s.entryP50MinMs.toFixed(2)}–${s.entryP50MaxMs.toFixed(2)}`, first ? c.rssMb : '', first ? c.cpuS : '', first ? missed : ''], widths));
      }
      if (c.skipped) console.log(`${c.name}: ${c.skipped} instants reported skipped as late (the process could not keep up)`);
      if (c.note) console.log(`${c.name}: ${c.note}`);
    }
    const one = configs[0]!;
    const many = configs[1]!;
    if (one.rssMb && many.rssMb) console.log(`RSS: one lockstep crontab ${one.rssMb.toFixed(1)} MB vs 20 lockstep cron processes ${many.rssMb.toFixed(1)} MB (${(many.rssMb / one.rssMb).toFixed(1)}×)`);
    const plot = plotCrontab(measured, `${SECONDS} s per config; start recorded by ${compiled ? 'a C program' : 'date +%s%N'}; load ${load0[0]!.toFixed(2)} before, ${load1[0]!.toFixed(2)} after`);
    if (plot) console.log(`(plot ${plot})`);
    console.log(`load after: ${load1.map((l) => l.toFixed(2)).join(' ')}`);
    return { entries: ENTRIES, seconds: SECONDS, periodS: PERIOD_S, recorder: compiled ? 'c-program' : 'date', load: { before: load0, after: load1 }, configs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
