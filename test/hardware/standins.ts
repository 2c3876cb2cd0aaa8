/**
 * Stand-ins for the programs the hardware drivers keep running, written into
 * a temporary directory the tests put first on PATH: `gpioset` (libgpiod 2's
 * interactive mode, a libgpiod 2 built without it, or a v1 that lacks it) and
 * `rpicam-still` (signal mode).
 * They behave like the real ones where the drivers depend on it (the
 * "gpioset> " prompt after each command, SIGUSR1 captures into the -o
 * pattern's frame counter, SIGUSR2 exits) and append what they received to a
 * log, each entry stamped with CLOCK_MONOTONIC (process.hrtime), which every
 * process on the machine shares: the test maps it onto its own clock.
 *
 * Failure modes come from environment variables, so a CLI test can ask for
 * them through the CLI's environment.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { realClock } from '../../src/time/clock.js';

const GPIOSET = String.raw`
const fs = require('fs');
const log = process.env.STANDIN_LOG_DIR + '/gpioset.log';
const note = (entry) => fs.appendFileSync(log, JSON.stringify({ t: process.hrtime.bigint().toString(), pid: process.pid, ...entry }) + '\n');
const argv = process.argv.slice(2);
const version = process.env.STANDIN_GPIOSET_VERSION || '2.1.3';
if (argv[0] === '--version') { console.log('gpioset (libgpiod) v' + version); process.exit(0); }
// libgpiod 2 lists (and accepts) -i only when built with --enable-gpioset-interactive.
const interactive = !version.startsWith('1.') && process.env.STANDIN_GPIOSET_INTERACTIVE !== '0';
if (argv[0] === '--help') {
  console.log('Usage: gpioset [OPTIONS] <line=value>...\n  -c, --chip <chip>\trestrict scope to a particular chip\n  -h, --help\t\tdisplay this help and exit' +
    (interactive ? '\n  -i, --interactive\tset the lines then wait for additional set commands' : '') + '\n  -l, --active-low\ttreat the line as active low');
  process.exit(0);
}
note({ argv });
const fail = process.env.STANDIN_GPIOSET_FAIL;
if (fail === 'permission') { console.error("gpioset: unable to open chip '/dev/gpiochip0': Permission denied"); process.exit(1); }
if (fail === 'busy') { console.error("gpioset: unable to request lines on chip '/dev/gpiochip0': Device or resource busy"); process.exit(1); }
if (!interactive && argv.includes('-i')) { console.error("gpioset: invalid option -- 'i'"); if (!version.startsWith('1.')) console.error('gpioset: try gpioset --help'); process.exit(1); }
const known = (id) => /^GPIO([0-9]|1[0-9]|2[0-7])$/.test(id) || /^([0-9]|[1-4][0-9]|5[0-3])$/.test(id);
const lineArgs = argv.filter((a) => a.includes('='));
for (const a of lineArgs) {
  const id = a.split('=')[0];
  if (!known(id)) { console.error("gpioset: cannot find line '" + id + "'"); process.exit(1); }
}
if (!argv.includes('-i')) process.exit(0);
const ack = process.env.STANDIN_ACK_FD ? Number(process.env.STANDIN_ACK_FD) : undefined;
process.stdout.write('gpioset> ');
let buffer = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  const t = process.hrtime.bigint().toString();
  buffer += chunk;
  let nl;
  while ((nl = buffer.indexOf('\n')) !== -1) {
    const line = buffer.slice(0, nl);
    buffer = buffer.slice(nl + 1);
    if (process.env.STANDIN_QUIET !== '1') fs.appendFileSync(log, JSON.stringify({ t, pid: process.pid, line }) + '\n');
    if (line === 'exit') { process.exit(0); }
    process.stdout.write(process.env.STANDIN_QUIET === '1' ? 'gpioset> ' + t + '\n' : 'gpioset> ');
  }
});
process.stdin.on('end', () => process.exit(0));
`;

const CAMERA = String.raw`
const fs = require('fs');
const log = process.env.STANDIN_LOG_DIR + '/camera.log';
const note = (entry) => fs.appendFileSync(log, JSON.stringify({ t: process.hrtime.bigint().toString(), pid: process.pid, ...entry }) + '\n');
const argv = process.argv.slice(2);
if (argv[0] === '--help') {
  console.log('Valid options are:\n  -h [ --help ]\n  -o [ --output ] arg\n  -s [ --signal ]\n  -t [ --timeout ] arg' + (process.env.STANDIN_CAMERA_ZSL === '0' ? '' : '\n  --zsl'));
  process.exit(0);
}
// Which start of the camera this is (1-based), for failures on some starts only.
const start = 1 + (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"argv"')).length : 0);
note({ argv });
const failStarts = process.env.STANDIN_CAMERA_FAIL_STARTS;
const fail = !failStarts || failStarts.split(',').map(Number).includes(start) ? process.env.STANDIN_CAMERA_FAIL : undefined;
if (fail === 'nocamera') { console.error('ERROR: *** no cameras available ***'); process.exit(255); }
if (fail === 'permission') { console.error('ERROR: *** failed to open /dev/media0: Permission denied ***'); process.exit(255); }
if (fail === 'acquire') { console.error('ERROR: *** failed to acquire camera /base/soc/i2c0mux/i2c@1/imx708@1a ***'); process.exit(255); }
if (fail === 'busy') { console.error('ERROR: *** failed to start camera: Device or resource busy ***'); process.exit(255); }
if (process.env.STANDIN_CAMERA_EXIT_AFTER_MS) {
  setTimeout(() => { console.error('ERROR: *** camera frontend has timed out! ***'); process.exit(255); }, Number(process.env.STANDIN_CAMERA_EXIT_AFTER_MS));
}
const out = argv[argv.indexOf('-o') + 1];
let frame = 0;
const quiet = process.env.STANDIN_QUIET === '1';
process.on('SIGUSR1', () => {
  const t = process.hrtime.bigint().toString();
  if (quiet) { process.stdout.write(t + '\n'); return; }
  fs.appendFileSync(log, JSON.stringify({ t, pid: process.pid, signal: 'SIGUSR1' }) + '\n');
  const name = out.replace(/%0?(\d*)d/, (_m, width) => String(frame).padStart(Number(width || 0), '0'));
  frame++;
  fs.writeFileSync(name, 'JPEG stand-in ' + t + '\n');
  if (process.env.STANDIN_CAMERA_EXIT_AFTER_CAPTURE === '1') setTimeout(() => process.exit(0), 20);
});
process.on('SIGUSR2', () => { note({ signal: 'SIGUSR2' }); process.exit(0); });
console.error('Made DRM preview window'); // what the real one says at start
setInterval(() => undefined, 1 << 30);
`;

export interface LogEntry {
  /** CLOCK_MONOTONIC ns in the stand-in. */
  t: bigint;
  pid: number;
  argv?: string[];
  line?: string;
  signal?: string;
}

export interface StandIns {
  dir: string;
  bin: string;
  logDir: string;
  /** PATH with the stand-ins first. */
  path: string;
  /** Environment for a child (the CLI): PATH and the log directory. */
  env(extra?: Record<string, string>): NodeJS.ProcessEnv;
  gpiosetLog(): LogEntry[];
  cameraLog(): LogEntry[];
  /** A monotonic stamp from a stand-in, on our real clock (UTC ns). */
  toRealNs(monotonicNs: bigint): bigint;
  cleanup(): void;
}

function writeScript(path: string, body: string): void {
  writeFileSync(path, `#!${process.execPath}\n${body}`);
  chmodSync(path, 0o755);
}

function readLog(path: string): LogEntry[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const e = JSON.parse(l) as Omit<LogEntry, 't'> & { t: string };
      return { ...e, t: BigInt(e.t) };
    });
}

export function makeStandIns(options: { gpioset?: boolean; camera?: boolean; cameraName?: string } = {}): StandIns {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-standins-'));
  const bin = join(dir, 'bin');
  const logDir = join(dir, 'logs');
  mkdirSync(bin);
  mkdirSync(logDir);
  if (options.gpioset ?? true) writeScript(join(bin, 'gpioset'), GPIOSET);
  if (options.camera ?? true) writeScript(join(bin, options.cameraName ?? 'rpicam-still'), CAMERA);
  const path = `${bin}${delimiter}${process.env.PATH ?? ''}`;
  process.env.STANDIN_LOG_DIR = logDir; // drivers spawned from this process inherit it
  // CLOCK_MONOTONIC → our real clock: both read back to back.
  const offsetNs = realClock().nowNs() - process.hrtime.bigint();
  return {
    dir,
    bin,
    logDir,
    path,
    env: (extra = {}) => ({ ...process.env, PATH: path, STANDIN_LOG_DIR: logDir, ...extra }),
    gpiosetLog: () => readLog(join(logDir, 'gpioset.log')),
    cameraLog: () => readLog(join(logDir, 'camera.log')),
    toRealNs: (t) => t + offsetNs,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * A temporary sysfs GPIO tree: gpiochipN directories with base/ngpio/label,
 * export/unexport as plain files, and gpioN directories made up front for the
 * lines a test will export (a plain filesystem has no kernel to make them).
 */
export interface FakeSysfs {
  root: string;
  addChip(name: string, base: number, ngpio: number, label: string): void;
  /** Creates gpioN with direction/value/active_low (what the kernel makes on export). */
  addLine(number: number): string;
  read(file: string): string;
  cleanup(): void;
}

/** In `base` (the temporary directory by default; the benchmark uses the tmpfs /dev/shm). */
export function makeFakeSysfs(base: string = tmpdir()): FakeSysfs {
  const root = mkdtempSync(join(base, 'lockstep-sysfs-'));
  writeFileSync(join(root, 'export'), '');
  writeFileSync(join(root, 'unexport'), '');
  return {
    root,
    addChip(name, base, ngpio, label) {
      mkdirSync(join(root, name));
      writeFileSync(join(root, name, 'base'), `${base}\n`);
      writeFileSync(join(root, name, 'ngpio'), `${ngpio}\n`);
      writeFileSync(join(root, name, 'label'), `${label}\n`);
    },
    addLine(number) {
      const dir = join(root, `gpio${number}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'direction'), 'in\n');
      writeFileSync(join(dir, 'value'), '');
      writeFileSync(join(dir, 'active_low'), '0\n');
      return dir;
    },
    read: (file) => readFileSync(join(root, file), 'utf8'),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
