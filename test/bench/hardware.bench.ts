/**
 * Cost of one edge, p50 / p99, for each way of acting at an instant:
 *   - sysfs: fire() = one write(2) on an open value file (a tmpfs tree);
 *   - gpioset -i: fire() = one line on a running stand-in gpioset's stdin,
 *     and until the stand-in has read it (it reports the CLOCK_MONOTONIC
 *     instant it read the line back on its stdout, with its prompt);
 *   - camera: fire() = SIGUSR1 to a pre-started stand-in rpicam-still, and
 *     until its handler ran (it reports the instant);
 *   - spawning a process per edge, side by side: spawn() of /bin/true (libuv
 *     returns once the child has exec'd) and of the real gpioset binary, until
 *     it has exited.
 * "delivered" is measured on CLOCK_MONOTONIC, which all processes share.
 * The stand-ins come twice when a C compiler is there: the tests' node
 * scripts (an event loop between the kernel and the handler) and small C
 * programs that block in read(2) / handle the signal in C, as gpioset and
 * rpicam-still do: the C row is the one that says what the mechanism costs.
 *
 *   node .build/<you>/test/bench/run.js hardware      (npm run bench -- hardware)
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { SysfsGpio, WARM_UP_FIRES } from '../../hardware/sysfs-gpio.js';
import { GpiodGpio } from '../../hardware/gpiod.js';
import { CameraActuator } from '../../hardware/camera.js';
import { findExecutable } from '../../hardware/executables.js';
import { makeFakeSysfs, makeStandIns } from '../hardware/standins.js';

const SYSFS_EDGES = 5000;
const PIPE_EDGES = 2000;
const SIGNAL_EDGES = 1000;
const SPAWN_EDGES = 200;
/** Keep the stand-ins' reactions from queueing behind each other: one edge in flight at a time. */
const ACK_TIMEOUT_MS = 2000;
/** The issue's targets. */
const TARGET_P99_US = 100;
const SPAWN_FLOOR_US = 1000;

interface Stats {
  n: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

function stats(samplesNs: number[]): Stats {
  const sorted = [...samplesNs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! / 1000;
  return { n: sorted.length, p50Us: round(at(0.5)), p99Us: round(at(0.99)), maxUs: round(sorted.at(-1)! / 1000) };
}

function round(us: number): number {
  return Math.round(us * 10) / 10;
}

function now(): bigint {
  return process.hrtime.bigint();
}

/**
 * Counts what a stand-in reports and lets the bench wait for the next report
 * without spinning: a busy wait would take one of the two cores from the
 * stand-in it is waiting for.
 */
class Reports {
  readonly at: bigint[] = [];
  private waiter: { want: number; resolve: (ok: boolean) => void; timer: NodeJS.Timeout } | undefined;
  private buffered = '';

  constructor(private readonly pattern: RegExp) {}

  feed(chunk: string): void {
    this.buffered += chunk;
    let nl;
    while ((nl = this.buffered.indexOf('\n')) !== -1) {
      const m = this.pattern.exec(this.buffered.slice(0, nl));
      if (m) this.at.push(BigInt(m[1]!));
      this.buffered = this.buffered.slice(nl + 1);
    }
    if (this.waiter && this.at.length >= this.waiter.want) {
      clearTimeout(this.waiter.timer);
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve(true);
    }
  }

  next(want: number): Promise<boolean> {
    if (this.at.length >= want) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(false);
      }, ACK_TIMEOUT_MS);
      this.waiter = { want, resolve, timer };
    });
  }
}

/** A tmpfs, like sysfs a file system in memory: no disk under the write. */
const TMPFS = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

async function benchSysfs(): Promise<{ fire: Stats }> {
  const sysfs = makeFakeSysfs(TMPFS);
  try {
    sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
    sysfs.addLine(529);
    const gpio = new SysfsGpio({ line: 17, root: sysfs.root });
    await gpio.prepare();
    const costs: number[] = [];
    for (let i = 0; i < SYSFS_EDGES; i++) {
      const t0 = now();
      gpio.fire(0n, { level: (i & 1) as 0 | 1 });
      costs.push(Number(now() - t0));
    }
    await gpio.release();
    return { fire: stats(costs) };
  } finally {
    sysfs.cleanup();
  }
}

async function benchGpioset(pathEnv: string): Promise<{ fire: Stats; delivered: Stats; lost: number }> {
  process.env.STANDIN_QUIET = '1';
  const gpio = new GpiodGpio({ line: 17, pathEnv });
  try {
    await gpio.prepare();
  } finally {
    delete process.env.STANDIN_QUIET;
  }
  // Let the warm-up commands of prepare() be acknowledged first.
  const deadline = Date.now() + ACK_TIMEOUT_MS;
  while (gpio.acknowledged < 1 + WARM_UP_FIRES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const reports = new Reports(/gpioset> (\d+)/);
  gpio.onOutput = (chunk) => reports.feed(chunk);
  const readAt = reports.at;
  const costs: number[] = [];
  const delivered: number[] = [];
  let lost = 0;
  for (let i = 0; i < PIPE_EDGES; i++) {
    const want = readAt.length + 1;
    const t0 = now();
    gpio.fire(0n, { level: (i & 1) as 0 | 1 });
    costs.push(Number(now() - t0));
    if (!(await reports.next(want))) {
      lost++;
      continue;
    }
    delivered.push(Number(readAt[want - 1]! - t0));
  }
  await gpio.release();
  return { fire: stats(costs), delivered: stats(delivered), lost };
}

async function benchCamera(pathEnv: string): Promise<{ fire: Stats; delivered: Stats; lost: number }> {
  const out = mkdtempSync(join(tmpdir(), 'lockstep-bench-cam-'));
  process.env.STANDIN_QUIET = '1';
  const camera = new CameraActuator({ outDir: out, warmupMs: 300, pathEnv, nameFiles: false });
  try {
    await camera.prepare();
  } finally {
    delete process.env.STANDIN_QUIET;
  }
  const reports = new Reports(/^(\d+)$/);
  camera.onOutput = (chunk) => reports.feed(chunk);
  const handledAt = reports.at;
  const costs: number[] = [];
  const delivered: number[] = [];
  let lost = 0;
  for (let i = 0; i < SIGNAL_EDGES; i++) {
    const want = handledAt.length + 1;
    const t0 = now();
    camera.fire(0n, { index: i });
    costs.push(Number(now() - t0));
    if (!(await reports.next(want))) {
      lost++;
      continue;
    }
    delivered.push(Number(handledAt[want - 1]! - t0));
  }
  await camera.release();
  rmSync(out, { recursive: true, force: true });
  return { fire: stats(costs), delivered: stats(delivered), lost };
}

async function benchSpawn(program: string, args: string[]): Promise<{ fire: Stats; delivered: Stats }> {
  const costs: number[] = [];
  const exited: number[] = [];
  for (let i = 0; i < SPAWN_EDGES; i++) {
    const t0 = now();
    const child = spawn(program, args, { stdio: 'ignore' });
    costs.push(Number(now() - t0)); // spawn() returns once the child has exec'd
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
    exited.push(Number(now() - t0));
  }
  return { fire: stats(costs), delivered: stats(exited) };
}

/** gpioset -i in C: prompt, then per line the CLOCK_MONOTONIC instant read(2) returned it. */
const C_GPIOSET = String.raw`
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static unsigned long long mono(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ULL + t.tv_nsec; }
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) { puts("gpioset (libgpiod) v2.1.3"); return 0; }
  if (argc > 1 && strcmp(argv[1], "--help") == 0) { puts("  -i, --interactive\tset the lines then wait for additional set commands"); return 0; }
  char buf[256]; char out[64]; size_t have = 0;
  write(1, "gpioset> ", 9);
  for (;;) {
    ssize_t n = read(0, buf + have, sizeof buf - have);
    if (n <= 0) return 0;
    unsigned long long t = mono();
    have += n;
    char *nl;
    while ((nl = memchr(buf, 10, have)) != NULL) {
      size_t len = nl - buf + 1;
      if (len >= 4 && strncmp(buf, "exit", 4) == 0) return 0;
      int m = snprintf(out, sizeof out, "gpioset> %llu\n", t);
      write(1, out, m);
      memmove(buf, buf + len, have - len); have -= len;
    }
  }
}`;

/** rpicam-still --signal in C: the SIGUSR1 handler writes the instant it ran. */
const C_CAMERA = String.raw`
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t done = 0;
static void on_usr1(int s) { (void)s; struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  char out[32]; int i = 31; out[i] = 10; unsigned long long v = t.tv_sec * 1000000000ULL + t.tv_nsec;
  do { out[--i] = '0' + v % 10; v /= 10; } while (v); write(1, out + i, 32 - i); }
static void on_usr2(int s) { (void)s; done = 1; }
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--help") == 0) { puts("  --zsl\n  -s [ --signal ]"); return 0; }
  struct sigaction a; memset(&a, 0, sizeof a); a.sa_handler = on_usr1; sigaction(SIGUSR1, &a, NULL);
  a.sa_handler = on_usr2; sigaction(SIGUSR2, &a, NULL);
  while (!done) pause();
  return 0;
}`;

/** Compiles the C stand-ins into dir/bin; undefined when there is no compiler. */
function nativeStandIns(dir: string): string | undefined {
  const cc = findExecutable('cc', process.env.PATH) ?? findExecutable('gcc', process.env.PATH);
  if (!cc) return undefined;
  try {
    execFileSync('mkdir', ['-p', join(dir, 'bin')]);
    writeFileSync(join(dir, 'gpioset.c'), C_GPIOSET);
    writeFileSync(join(dir, 'camera.c'), C_CAMERA);
    execFileSync(cc, ['-O2', '-o', join(dir, 'bin', 'gpioset'), join(dir, 'gpioset.c')]);
    execFileSync(cc, ['-O2', '-o', join(dir, 'bin', 'rpicam-still'), join(dir, 'camera.c')]);
    return `${join(dir, 'bin')}:${process.env.PATH ?? ''}`;
  } catch {
    return undefined;
  }
}

export async function run(): Promise<unknown> {
  const standins = makeStandIns();
  const rows: { method: string; fire: Stats; delivered?: Stats; lost?: number; note: string }[] = [];
  try {
    rows.push({ method: 'sysfs write', ...(await benchSysfs()), note: `value file on ${TMPFS}` });
    rows.push({ method: 'gpioset -i stdin', ...(await benchGpioset(standins.path)), note: 'delivered = stand-in (node) read the line' });
    rows.push({ method: 'SIGUSR1 to camera', ...(await benchCamera(standins.path)), note: 'delivered = stand-in (node) handler ran' });
    const native = nativeStandIns(join(standins.dir, 'native'));
    if (native) {
      rows.push({ method: 'gpioset -i stdin (C)', ...(await benchGpioset(native)), note: 'delivered = C stand-in read(2) returned the line' });
      rows.push({ method: 'SIGUSR1 camera (C)', ...(await benchCamera(native)), note: 'delivered = C stand-in signal handler ran' });
    } else {
      console.log('(no C compiler: only the node stand-ins, whose event loop adds to "delivered")');
    }
    rows.push({ method: 'spawn /bin/true', ...(await benchSpawn('/bin/true', [])), note: 'fire = spawn() (child exec\'d); delivered = exited' });
    const gpioset = findExecutable('gpioset', process.env.PATH);
    if (gpioset) rows.push({ method: 'spawn gpioset', ...(await benchSpawn(gpioset, ['--version'])), note: `${gpioset} --version: a process per edge` });
  } finally {
    standins.cleanup();
  }
  const pad = (s: string, n: number) => s.padEnd(n);
  const num = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1)).padStart(9);
  console.log(`machine: ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (anything else running makes the tails worse)`);
  console.log(`${pad('method', 21)} ${'fire p50'.padStart(9)} ${'fire p99'.padStart(9)} ${'dlv p50'.padStart(9)} ${'dlv p99'.padStart(9)} ${'dlv max'.padStart(9)}     n  (µs)`);
  for (const r of rows) {
    console.log(`${pad(r.method, 21)} ${num(r.fire.p50Us)} ${num(r.fire.p99Us)} ${num(r.delivered?.p50Us)} ${num(r.delivered?.p99Us)} ${num(r.delivered?.maxUs)} ${String(r.fire.n).padStart(5)}  ${r.note}${r.lost ? `, ${r.lost} unacknowledged` : ''}`);
  }
  // The mechanism's cost: the C stand-ins when there are some (the node ones add their event loop).
  const haveNative = rows.some((r) => r.method.endsWith('(C)'));
  const cheap = rows.filter((r) => !r.method.startsWith('spawn') && (r.method === 'sysfs write' || !haveNative || r.method.endsWith('(C)')));
  const spawns = rows.filter((r) => r.method.startsWith('spawn'));
  const verdict = {
    targetP99Us: TARGET_P99_US,
    fireWithinTarget: cheap.every((r) => r.fire.p99Us <= TARGET_P99_US),
    deliveredWithinTarget: cheap.every((r) => (r.delivered ?? r.fire).p99Us <= TARGET_P99_US),
    spawnAtLeastUs: SPAWN_FLOOR_US,
    spawnSlowerThanFloor: spawns.every((r) => r.fire.p50Us >= SPAWN_FLOOR_US || (r.delivered?.p50Us ?? 0) >= SPAWN_FLOOR_US),
  };
  console.log(`target p99 ≤ ${TARGET_P99_US} µs (${cheap.map((r) => r.method).join(', ')}): fire() ${verdict.fireWithinTarget ? 'met' : 'MISSED'}, delivered ${verdict.deliveredWithinTarget ? 'met' : 'MISSED'}; spawn per edge ≥ ${SPAWN_FLOOR_US} µs: ${verdict.spawnSlowerThanFloor ? 'yes' : 'no'}`);
  return { machine: { cores: cpus().length, loadavg: loadavg(), shared: true }, rows, verdict };
}
