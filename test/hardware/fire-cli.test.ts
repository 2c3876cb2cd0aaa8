import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, runCliAll, shared, CLI_PATH } from '../support/cli.js';
import { track, untrack, waitFor } from '../support/processes.js';
import { have } from '../support/ntp-clients.js';
import { makeFakeSysfs, makeStandIns, type StandIns } from './standins.js';
import { WARM_UP_FIRES } from '../../hardware/sysfs-gpio.js';
import { command as fireCommand } from '../../src/cli/commands/fire.js';
import { UsageError } from '../../src/cli/errors.js';

interface JsonFire {
  event: string;
  kind?: string;
  index?: number;
  level?: number;
  plannedNs?: string;
  targetNs?: string;
  leadNs?: number;
  latenessNs?: number;
  errorBoundNs?: number;
  trueErrorNs?: number;
  spawnLatencyNs?: number;
  outcome?: { file?: string; costNs?: number };
  fires?: number;
  skips?: number;
  errors?: number;
  reason?: string;
}

function jsonLines(stdout: string): JsonFire[] {
  return stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as JsonFire);
}

describe('lockstep fire (CLI)', function () {
  this.timeout(30000);
  let standins: StandIns;
  before(() => {
    standins = makeStandIns();
  });
  after(() => standins.cleanup());
  /**
   * The three runs that only wait for their instant start together (the
   * first test to need one starts all three): their leads overlap instead of
   * adding up. 3 s: three Node processes start at once on a loaded 2-core machine.
   */
  const waiting = shared(async () => {
    const [train, human, command] = await Promise.all([
      runCli(['fire', 'blink', '--line', '17', '--at', '+3s', '--on', '20ms', '--every', '60ms', '--count', '3', '--driver', 'sim', '--json']),
      runCli(['fire', 'blink', '--line', 'GPIO4', '--at', '+3s', '--driver', 'sim']),
      runCli(['fire', 'command', '--at', '+3s', '--json', '--', 'sh', '-c', 'echo ran at $LOCKSTEP_INSTANT_NS >&2']),
    ]);
    return { train: train!, human: human!, command: command! };
  });

  it('blinks a simulated LED train: every edge reported with planned, actual, lateness, error bound and the true instant', async () => {
    const r = (await waiting()).train;
    expect(r.code, r.stderr).to.equal(0);
    const lines = jsonLines(r.stdout);
    const fires = lines.filter((l) => l.event === 'fire');
    expect(fires.map((f) => [f.index, f.level])).to.deep.equal([[0, 1], [0, 0], [1, 1], [1, 0], [2, 1], [2, 0]]);
    const planned = fires.map((f) => BigInt(f.plannedNs!));
    expect(planned.map((p) => Number((p - planned[0]!) / 1_000_000n))).to.deep.equal([0, 20, 60, 80, 120, 140]);
    for (const f of fires) {
      expect(f.latenessNs).to.be.a('number').and.at.least(0);
      expect(f.errorBoundNs).to.be.a('number');
      expect(f.trueErrorNs).to.be.a('number').and.below(50_000_000);
    }
    expect(lines.at(-1)).to.include({ event: 'done', fires: 6, skips: 0, errors: 0 });
  });

  it('prints one human line per edge without --json', async () => {
    const r = (await waiting()).human;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^blink #0 on  at \d{4}-.*late .*clock ±/m);
    expect(r.stdout).to.match(/^blink #0 off at/m);
    expect(r.stderr).to.match(/blink line GPIO4: 100 ms on.*done: 2 fired/s);
  });

  it('drives a stand-in gpioset -i: one process, one command line per edge, the LED left off', async () => {
    const before = standins.gpiosetLog().length;
    // 3 s: this process and the gpioset stand-in (a Node script) both start first; 2 s was missed at load 10.
    const r = await runCli(['fire', 'blink', '--line', '17', '--at', '+3s', '--on', '20ms', '--every', '60ms', '--count', '2', '--driver', 'gpiod', '--json'], { env: standins.env() });
    expect(r.code, r.stderr).to.equal(0);
    const log = standins.gpiosetLog().slice(before);
    expect(log[0]!.argv).to.deep.equal(['-i', '-C', 'lockstep', 'GPIO17=0']);
    expect(log.filter((e) => e.line).map((e) => e.line)).to.deep.equal([...new Array(WARM_UP_FIRES).fill('set GPIO17=0'), 'set GPIO17=1', 'set GPIO17=0', 'set GPIO17=1', 'set GPIO17=0', 'set GPIO17=0', 'exit']);
    const fires = jsonLines(r.stdout).filter((l) => l.event === 'fire');
    const stamped = log.filter((e) => e.line?.startsWith('set')).slice(WARM_UP_FIRES, WARM_UP_FIRES + 4);
    fires.forEach((f, i) => {
      const error = standins.toRealNs(stamped[i]!.t) - BigInt(f.plannedNs!);
      expect(Number(error), `edge ${i}`).to.be.within(-1_000_000, 50_000_000);
    });
  });

  it('drives a sysfs tree, and Ctrl-C on a --forever train leaves the LED off and the line unexported', async () => {
    const sysfs = makeFakeSysfs();
    try {
      sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
      const dir = sysfs.addLine(529);
      const child = spawn(process.execPath, [CLI_PATH, 'fire', 'blink', '--line', '17', '--at', '+1200ms', '--on', '30ms', '--every', '60ms', '--forever', '--driver', 'sysfs', '--sysfs-root', sysfs.root, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      track(child.pid!);
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      // Stop it mid-pulse: right after an "on" edge was reported.
      await waitFor(() => jsonLines(stdout).filter((l) => l.event === 'fire').length >= 5, 10000, 'five edges');
      child.kill('SIGINT');
      const code = await exited;
      untrack(child.pid!);
      expect(code).to.equal(0);
      const value = readFileSync(join(dir, 'value'), 'utf8');
      expect(value).to.match(/^000(10)+1?0+$/); // warm-up zeros, the pulses, the 0 of Ctrl-C and of release
      expect(value.endsWith('0')).to.equal(true);
      expect(sysfs.read('unexport')).to.equal('529');
      expect(jsonLines(stdout).at(-1)).to.include({ event: 'done' });
    } finally {
      sysfs.cleanup();
    }
  });

  it('takes a timed photo with a stand-in rpicam-still: fired early by the lead, reported, file named after trigger and node; a second run never overwrites it', async () => {
    const out = mkdtempSync(join(tmpdir(), 'lockstep-cli-photo-'));
    try {
      // The warm-up covers the stand-in's own start (a Node.js script) on a loaded machine.
      const shoot = () => runCli(['fire', 'capture', '--at', '+1500ms', '--out', out, '--name', 'team', '--node', 'pi3', '--lead-ms', '30', '--warmup', '400ms', '--json'], { env: standins.env() });
      const r = await shoot();
      expect(r.code, r.stderr).to.equal(0);
      const fire = jsonLines(r.stdout).find((l) => l.event === 'fire')!;
      expect(fire.leadNs).to.equal(30_000_000);
      expect(BigInt(fire.targetNs!) - BigInt(fire.plannedNs!)).to.equal(30_000_000n);
      expect(fire.outcome!.file).to.equal(join(out, 'team-pi3-000.jpg'));
      expect(readdirSync(out)).to.deep.equal(['team-pi3-000.jpg']);
      const first = readFileSync(join(out, 'team-pi3-000.jpg'), 'utf8');
      const again = await shoot();
      expect(again.code, again.stderr).to.equal(0);
      expect(jsonLines(again.stdout).find((l) => l.event === 'fire')!.outcome!.file).to.equal(join(out, 'team-pi3-001.jpg'));
      expect(readdirSync(out).sort()).to.deep.equal(['team-pi3-000.jpg', 'team-pi3-001.jpg']);
      expect(readFileSync(join(out, 'team-pi3-000.jpg'), 'utf8')).to.equal(first);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('starts a command at the instant and reports its spawn latency', async () => {
    const r = (await waiting()).command;
    expect(r.code, r.stderr).to.equal(0);
    const fire = jsonLines(r.stdout).find((l) => l.event === 'fire')!;
    expect(fire.spawnLatencyNs).to.be.a('number').and.above(0);
    expect(r.stderr).to.contain(`ran at ${fire.targetNs}`);
  });

  describe('hardware that cannot be used: exit 2 and what to do', () => {
    const cases: { name: string; args: string[]; env: () => NodeJS.ProcessEnv; message: RegExp }[] = [
      {
        name: 'gpioset missing and no sysfs',
        args: ['fire', 'blink', '--line', '17', '--at', '+5s', '--sysfs-root', '/nonexistent'],
        env: () => ({ ...process.env, PATH: '/nonexistent' }),
        message: /gpioset is not installed.*no sysfs GPIO at \/nonexistent.*apt install gpiod/,
      },
      {
        name: 'libgpiod 1.6 tools and no sysfs',
        args: ['fire', 'blink', '--line', '17', '--at', '+5s', '--driver', 'gpiod', '--sysfs-root', '/nonexistent'],
        env: () => standins.env({ STANDIN_GPIOSET_VERSION: '1.6.3' }),
        message: /libgpiod 1\.6\.3, which has no interactive mode.*apt install gpiod/,
      },
      {
        name: 'libgpiod 2 built without interactive mode and no sysfs',
        args: ['fire', 'blink', '--line', '17', '--at', '+5s', '--sysfs-root', '/nonexistent'],
        env: () => standins.env({ STANDIN_GPIOSET_INTERACTIVE: '0' }),
        message: /libgpiod 2\.1\.3 built without interactive mode.*no sysfs GPIO at \/nonexistent.*--enable-gpioset-interactive/,
      },
      {
        name: 'unknown line',
        args: ['fire', 'blink', '--line', 'GPIO99', '--at', '+5s', '--driver', 'gpiod'],
        env: () => standins.env(),
        message: /cannot find line GPIO99.*gpioinfo/,
      },
      {
        name: 'busy line',
        args: ['fire', 'blink', '--line', '17', '--at', '+5s', '--driver', 'gpiod'],
        env: () => standins.env({ STANDIN_GPIOSET_FAIL: 'busy' }),
        message: /held by another process/,
      },
      {
        name: 'GPIO permission denied',
        args: ['fire', 'blink', '--line', '17', '--at', '+5s', '--driver', 'gpiod'],
        env: () => standins.env({ STANDIN_GPIOSET_FAIL: 'permission' }),
        message: /Permission denied.*usermod -aG gpio \$USER/,
      },
      {
        name: 'camera program missing',
        args: ['fire', 'capture', '--at', '+5s'],
        env: () => ({ ...process.env, PATH: '/nonexistent' }),
        message: /rpicam-still or libcamera-still is not installed.*apt install rpicam-apps/,
      },
      {
        name: 'camera permission denied',
        args: ['fire', 'capture', '--at', '+5s', '--out', tmpdir()],
        env: () => standins.env({ STANDIN_CAMERA_FAIL: 'permission' }),
        message: /usermod -aG video/,
      },
      {
        name: 'camera in use (rpicam-still cannot acquire it)',
        args: ['fire', 'capture', '--at', '+5s', '--out', tmpdir()],
        env: () => standins.env({ STANDIN_CAMERA_FAIL: 'acquire' }),
        message: /the camera is in use \(ERROR: \*\*\* failed to acquire camera .*\); stop the other camera program \(another rpicam-still, a motion service\)/,
      },
      {
        name: 'camera busy (device or resource busy)',
        args: ['fire', 'capture', '--at', '+5s', '--out', tmpdir()],
        env: () => standins.env({ STANDIN_CAMERA_FAIL: 'busy' }),
        message: /the camera is in use \(.*Device or resource busy.*\); stop the other camera program/,
      },
      {
        name: 'command not found',
        args: ['fire', 'command', '--at', '+5s', '--', 'no-such-program-xyz'],
        env: () => process.env,
        message: /cannot find the program 'no-such-program-xyz'/,
      },
    ];
    // Each exits at once: all of them run a few at a time, when the first case needs its result.
    const results = shared(() => runCliAll(cases.map((c) => ({ args: c.args, options: { env: c.env() } }))));
    for (const [k, c] of cases.entries()) {
      it(c.name, async () => {
        const r = (await results())[k]!;
        expect(r.code, r.stderr).to.equal(2);
        expect(r.stderr).to.match(c.message);
        expect(r.stdout).to.equal('');
      });
    }
  });

  it('sysfs permission denied (run as nobody against a root-owned tree): exit 2, says to join the gpio group', async function () {
    if (process.getuid?.() !== 0 || !have('setpriv', ['--version'])) this.skip(); // needs root to drop to nobody
    const sysfs = makeFakeSysfs();
    try {
      chmodSync(sysfs.root, 0o755); // nobody may read the tree, but not write export
      sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
      sysfs.addLine(529);
      const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI_PATH, 'fire', 'blink', '--line', '17', '--at', '+5s', '--driver', 'sysfs', '--sysfs-root', sysfs.root], { stdio: ['ignore', 'pipe', 'pipe'] });
        track(child.pid!);
        let stdout = '';
        let stderr = '';
        child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        child.once('close', (code) => {
          untrack(child.pid!);
          resolve({ code, stdout, stderr });
        });
      });
      expect(result.code, result.stderr).to.equal(2);
      expect(result.stderr).to.match(/permission denied to export GPIO 17 \(sysfs 529\); add yourself to the gpio group: sudo usermod -aG gpio \$USER/);
      expect(result.stdout).to.equal('');
      expect(sysfs.read('export')).to.equal(''); // nothing was exported
    } finally {
      sysfs.cleanup();
    }
  });

  it('refuses bad input with exit 2 and says why', async () => {
    const bad: [string[], RegExp][] = [
      [['fire'], /which action/],
      [['fire', 'dance', '--at', '+1s'], /unknown action 'dance'/],
      [['fire', 'blink', '--line', '17'], /--at WHEN is required/],
      [['fire', 'blink', '--line', '17', '--at', 'tomorrow'], /cannot read WHEN 'tomorrow'/],
      [['fire', 'blink', '--line', '17', '--at', '+1s', '--count', '3'], /needs --every/],
      [['fire', 'blink', '--line', '17', '--at', '+1s', '--on', '1s', '--every', '500ms', '--count', '3'], /periodNs .* longer than/],
      [['fire', 'blink', '--line', '17', '--at', '+1s', '--count', '2', '--forever'], /--count or --forever/],
      [['fire', 'blink', '--line', '17', '--at', '+1s', '--out', '/tmp'], /--out is for capture/],
      [['fire', 'blink', '--line', '17', '--at', '+1s', '--driver', 'magic'], /--driver takes auto, gpiod, sysfs, sim/],
      [['fire', 'command', '--at', '+1s'], /needs the program after '--'/],
      [['fire', 'capture', '--at', '+1s', '--name', '../x'], /capture.name/],
    ];
    // The first through the CLI (a UsageError is exit 2 and its message); the rest in this process, where
    // the command throws that UsageError (each would otherwise cost a Node start, eager compilation included).
    const [cli, help] = await runCliAll([{ args: bad[0]![0] }, { args: ['fire', '--help'] }]);
    expect(cli!.code, cli!.stderr).to.equal(2);
    expect(cli!.stderr).to.match(bad[0]![1]).and.match(/^lockstep fire: /);
    for (const [args, message] of bad) {
      let thrown: unknown;
      await fireCommand.run(args.slice(1)).catch((error: unknown) => (thrown = error));
      expect(thrown, args.join(' ')).to.be.instanceOf(UsageError);
      expect((thrown as Error).message, args.join(' ')).to.match(message);
    }
    expect(help!.code).to.equal(0);
    expect(help!.stdout).to.match(/^usage: lockstep fire ACTION --at WHEN/);
  });

  it('an instant already past: exit 1 (reject), or reported as skipped', async () => {
    const [rejected, skipped] = await runCliAll([{ args: ['fire', 'blink', '--line', '17', '--at', '@1000', '--driver', 'sim'] }, { args: ['fire', 'capture', '--at', '@1000', '--driver', 'sim', '--if-past', 'skip', '--json'] }]);
    expect(rejected!.code).to.equal(1);
    expect(rejected!.stderr).to.match(/fire-late|passed/);
    expect(skipped!.code).to.equal(1);
    expect(jsonLines(skipped!.stdout).map((l) => l.event)).to.deep.equal(['skip', 'done']);
  });
});
