import { expect } from 'chai';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { realClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { NS_PER_MS } from '../../src/time/units.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { scheduleAction } from '../../src/schedule/actions.js';
import { ActuatorFailed, ActuatorUnavailable } from '../../src/schedule/actuator.js';
import { SysfsGpio, listSysfsChips, pickSysfsChip, lineOffset, sysfsError, WARM_UP_FIRES } from '../../hardware/sysfs-gpio.js';
import { GpiodGpio, classifyGpiosetFailure, detectGpiosetVersion, gpiosetLineId } from '../../hardware/gpiod.js';
import { buildActuator, createActuator } from '../../hardware/index.js';
import { makeFakeSysfs, makeStandIns, type FakeSysfs, type StandIns } from './standins.js';
import { track, untrack, waitFor } from '../support/processes.js';

/** Generous: a shared 2-core machine. Precise figures are the benchmark's job. */
const TIMING_BOUND_NS = 30n * NS_PER_MS;

function realScheduler(): Scheduler {
  return new Scheduler({ timescale: new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1000 } }) });
}

async function expectUnavailable(promise: Promise<unknown>, kind: string, pattern: RegExp): Promise<ActuatorUnavailable> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(ActuatorUnavailable);
    expect((error as ActuatorUnavailable).kind).to.equal(kind);
    expect((error as Error).message).to.match(pattern);
    return error as ActuatorUnavailable;
  }
  throw new Error('expected ActuatorUnavailable');
}

describe('GPIO through sysfs', () => {
  let sysfs: FakeSysfs;
  beforeEach(() => {
    sysfs = makeFakeSysfs();
  });
  afterEach(() => sysfs.cleanup());

  it("finds the header's chip by label and adds its base (Pi 4 on 6.6+: 512)", () => {
    sysfs.addChip('gpiochip504', 504, 8, 'raspberrypi-exp-gpio');
    sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
    const chips = listSysfsChips(sysfs.root);
    expect(chips.map((c) => c.name)).to.deep.equal(['gpiochip504', 'gpiochip512']);
    expect(pickSysfsChip(chips).base).to.equal(512);
    expect(pickSysfsChip(chips, 'raspberrypi-exp-gpio').base).to.equal(504);
    expect(() => pickSysfsChip(chips, 'nope')).to.throw(ActuatorUnavailable, /no GPIO chip 'nope'.*pinctrl-bcm2711/);
    expect(lineOffset('GPIO17')).to.equal(17);
    expect(lineOffset(17)).to.equal(17);
    expect(() => lineOffset('ID_SDA')).to.throw(ActuatorUnavailable, /--driver gpiod/);
  });

  it('exports BCM 17 as 529 on a Pi 4, makes it an output at low, writes one byte per edge, leaves it off and unexported', async () => {
    sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
    const dir = sysfs.addLine(529);
    const gpio = new SysfsGpio({ line: 17, root: sysfs.root });
    await gpio.prepare();
    expect(sysfs.read('export')).to.equal('529');
    expect(readFileSync(join(dir, 'direction'), 'utf8')).to.equal('low');
    for (const level of [1, 0, 1, 0] as const) {
      const outcome = gpio.fire(0n, { level });
      expect(outcome.detail).to.equal(`GPIO17 (sysfs 529) = ${level}`);
      expect(outcome.costNs).to.be.a('number');
    }
    await gpio.release();
    // A plain file keeps every write: prepare's warm-up zeros (the line is 0 already), the edges, release's 0.
    expect(readFileSync(join(dir, 'value'), 'utf8')).to.equal('0'.repeat(WARM_UP_FIRES) + '10100');
    expect(sysfs.read('unexport')).to.equal('529');
    await gpio.release(); // idempotent
  });

  it('numbers from a Pi 5 (rp1 base 571) and honours active-low, starting the line at raw high (off)', async () => {
    sysfs.addChip('gpiochip512', 512, 8, 'raspberrypi-exp-gpio');
    sysfs.addChip('gpiochip571', 571, 54, 'pinctrl-rp1');
    const dir = sysfs.addLine(588);
    const gpio = new SysfsGpio({ line: 'GPIO17', root: sysfs.root, activeLow: true });
    await gpio.prepare();
    expect(readFileSync(join(dir, 'active_low'), 'utf8')).to.equal('1');
    // direction's high/low are raw levels: raw high is logical 0, the LED off from the start.
    expect(readFileSync(join(dir, 'direction'), 'utf8')).to.equal('high');
    gpio.rehearse(); // the scheduler's rehearsal before an edge: writes nothing
    expect(gpio.fire(0n, { level: 1 }, true)).to.equal(undefined); // ...as is, through fire() itself (rehearsesInFire)
    gpio.fire(0n, { level: 1 });
    gpio.rehearse();
    await gpio.release();
    expect(readFileSync(join(dir, 'value'), 'utf8')).to.equal('0'.repeat(WARM_UP_FIRES) + '10');
  });

  it('says what is wrong: unknown line, no sysfs, permission denied (root too)', async function () {
    sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
    await expectUnavailable(new SysfsGpio({ line: 60, root: sysfs.root }).prepare(), 'unknown-device', /line 60 does not exist.*58 lines/);
    await expectUnavailable(new SysfsGpio({ line: 17, root: join(sysfs.root, 'missing') }).prepare(), 'unknown-device', /no sysfs GPIO.*--driver gpiod/);
    const exportFile = join(sysfs.root, 'export');
    // Root ignores file modes, but not the immutable attribute (EPERM even for root).
    const asRoot = process.getuid?.() === 0;
    try {
      execFileSync(asRoot ? 'chattr' : 'chmod', [asRoot ? '+i' : 'a-w', exportFile], { stdio: 'ignore' });
    } catch {
      console.log(`      skipped the permission case: cannot make ${exportFile} read-only for root here (no chattr +i on this filesystem)`);
      this.skip();
    }
    try {
      const error = await expectUnavailable(new SysfsGpio({ line: 17, root: sysfs.root }).prepare(), 'permission', /permission denied to export GPIO 17 \(sysfs 529\).*gpio group/);
      expect(error.hint).to.match(/usermod -aG gpio/);
    } finally {
      if (asRoot) execFileSync('chattr', ['-i', exportFile]); // else the tree cannot be removed
    }
  });

  it("maps the kernel's errno on export/configure to what to do: busy, permission, no such line, anything else", () => {
    // EBUSY (the line requested by gpioset or a driver) cannot be made with plain files, so the mapping is checked directly.
    const errno = (code: string) => Object.assign(new Error(`${code}: from the kernel`), { code });
    const busy = sysfsError(errno('EBUSY'), 17, 529, 'export');
    expect(busy).to.be.instanceOf(ActuatorUnavailable);
    expect((busy as ActuatorUnavailable).kind).to.equal('busy');
    expect(busy.message).to.match(/^GPIO 17 \(sysfs 529\) is in use by another driver or process; find the holder with gpioinfo/);
    expect((sysfsError(errno('EPERM'), 17, 529, 'configure') as ActuatorUnavailable).kind).to.equal('permission');
    expect(sysfsError(errno('EINVAL'), 'GPIO99', 611, 'export').message).to.match(/kernel refused GPIO GPIO99 \(sysfs 611\): no such line/);
    const other = sysfsError(errno('EIO'), 17, 529, 'configure');
    expect(other).to.be.instanceOf(ActuatorFailed).and.not.instanceOf(ActuatorUnavailable);
    expect(other.message).to.equal('cannot configure GPIO 17 (sysfs 529): EIO: from the kernel');
  });

  it('a file where the kernel has a directory (EISDIR) is a failure with the errno, not a guess', async () => {
    sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
    const dir = sysfs.addLine(529);
    rmSync(join(dir, 'direction'));
    mkdirSync(join(dir, 'direction'));
    try {
      await new SysfsGpio({ line: 17, root: sysfs.root }).prepare();
      expect.fail('prepare() should have failed');
    } catch (error) {
      expect(error).to.be.instanceOf(ActuatorFailed);
      expect((error as Error).message).to.match(/cannot configure GPIO 17 \(sysfs 529\): EISDIR/);
    }
  });

  it('fires each scheduled edge at its instant (value file as a FIFO read by another process)', async function () {
    sysfs.addChip('gpiochip0', 0, 54, 'pinctrl-bcm2835');
    const dir = sysfs.addLine(17);
    const value = join(dir, 'value');
    rmSync(value);
    execFileSync('mkfifo', [value]);
    // The "kernel": another process that stamps every byte with CLOCK_MONOTONIC.
    const reader = spawn(process.execPath, ['-e', `
      const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'r'); const b = Buffer.alloc(64);
      process.stdout.write('open\\n');
      for (;;) { const n = fs.readSync(fd, b); if (n <= 0) break; const t = process.hrtime.bigint();
        for (const c of b.subarray(0, n).toString()) process.stdout.write(c + ' ' + t + '\\n'); }`, value], { stdio: ['ignore', 'pipe', 'inherit'] });
    track(reader.pid!);
    let received = '';
    reader.stdout!.on('data', (d: Buffer) => (received += d.toString()));
    const offsetNs = realClock().nowNs() - process.hrtime.bigint();
    const gpio = new SysfsGpio({ line: 17, root: sysfs.root });
    await gpio.prepare();
    // A FIFO drops what is in it when its last writer closes with no reader: wait until the reader has it open
    // (a node process that a loaded machine may start after the whole train is over).
    await waitFor(() => received.startsWith('open\n'), 10_000, 'the reader to open the FIFO');
    const scheduler = realScheduler();
    const startNs = realClock().nowNs() + 150n * NS_PER_MS;
    const run = scheduleAction(scheduler, { kind: 'blink', line: 17, onNs: 20_000_000, periodNs: 60_000_000, count: 3 }, startNs, gpio);
    await run.done;
    await gpio.release();
    await waitFor(() => received.trim().split('\n').length >= 8 + WARM_UP_FIRES, 5000, 'the reader to see every write');
    reader.kill();
    untrack(reader.pid!);
    const all = received.trim().split('\n').slice(1).map((l) => l.split(' ')).map(([c, t]) => ({ value: c, realNs: BigInt(t!) + offsetNs }));
    expect(all.map((w) => w.value).join('')).to.equal('0'.repeat(WARM_UP_FIRES) + '1010100');
    const writes = all.slice(WARM_UP_FIRES);
    const planned = [0, 20, 60, 80, 120, 140].map((ms) => startNs + BigInt(ms) * NS_PER_MS);
    planned.forEach((p, i) => {
      const error = writes[i]!.realNs - p;
      expect(error >= -1n * NS_PER_MS && error < TIMING_BOUND_NS, `edge ${i}: ${error} ns from plan`).to.equal(true);
    });
  });
});

describe('GPIO through gpioset -i (stand-in)', () => {
  let standins: StandIns;
  beforeEach(() => {
    standins = makeStandIns({ camera: false });
  });
  afterEach(() => standins.cleanup());

  it('reads the version and names lines the way gpioset does', async () => {
    const v = await detectGpiosetVersion(standins.path);
    expect(v).to.include({ major: 2, version: '2.1.3', interactive: true });
    expect(gpiosetLineId(17)).to.equal('GPIO17');
    expect(gpiosetLineId(17, 'gpiochip0')).to.equal('17');
    expect(gpiosetLineId('GPIO4')).to.equal('GPIO4');
    await expectUnavailable(detectGpiosetVersion('/nonexistent'), 'missing-binary', /gpioset is not installed.*apt install gpiod/);
  });

  it('keeps one gpioset holding the line; each edge is one command line on its stdin; release drives 0 and exits', async () => {
    const gpio = new GpiodGpio({ line: 17, pathEnv: standins.path, consumer: 'test' });
    await gpio.prepare();
    expect(gpio.acknowledged).to.be.at.least(1);
    const start = standins.gpiosetLog()[0]!;
    expect(start.argv).to.deep.equal(['-i', '-C', 'test', 'GPIO17=0']);
    gpio.fire(0n, { level: 1 });
    gpio.fire(0n, { level: 0 });
    await waitFor(() => gpio.acknowledged >= 3 + WARM_UP_FIRES, 5000, 'every acknowledgement');
    await gpio.release();
    const lines = standins.gpiosetLog().filter((e) => e.line !== undefined);
    const warm = new Array(WARM_UP_FIRES).fill('set GPIO17=0');
    expect(lines.map((e) => e.line)).to.deep.equal([...warm, 'set GPIO17=1', 'set GPIO17=0', 'set GPIO17=0', 'exit']);
    expect(new Set(standins.gpiosetLog().map((e) => e.pid)).size).to.equal(1); // one process for every edge
  });

  it('uses offsets on a named chip, and active-low', async () => {
    const gpio = new GpiodGpio({ line: 4, chip: 'gpiochip0', activeLow: true, pathEnv: standins.path });
    await gpio.prepare();
    await gpio.release();
    expect(standins.gpiosetLog()[0]!.argv).to.deep.equal(['-i', '-C', 'lockstep', '-l', '-c', 'gpiochip0', '4=0']);
  });

  it('turns what gpioset says into what to do: unknown line, busy, permission, v1 tools', async () => {
    await expectUnavailable(new GpiodGpio({ line: 'GPIO99', pathEnv: standins.path }).prepare(), 'unknown-device', /cannot find line GPIO99.*gpioinfo/);
    process.env.STANDIN_GPIOSET_FAIL = 'busy';
    try {
      await expectUnavailable(new GpiodGpio({ line: 17, pathEnv: standins.path }).prepare(), 'busy', /held by another/);
      process.env.STANDIN_GPIOSET_FAIL = 'permission';
      await expectUnavailable(new GpiodGpio({ line: 17, pathEnv: standins.path }).prepare(), 'permission', /usermod -aG gpio/);
    } finally {
      delete process.env.STANDIN_GPIOSET_FAIL;
    }
    process.env.STANDIN_GPIOSET_VERSION = '1.6.3';
    try {
      await expectUnavailable(new GpiodGpio({ line: 17, pathEnv: standins.path }).prepare(), 'unsupported', /libgpiod 1\.6\.3.*no interactive mode/);
    } finally {
      delete process.env.STANDIN_GPIOSET_VERSION;
    }
  });

  it('a libgpiod 2 gpioset built without interactive mode: told before starting it, and its "invalid option" is not an unknown line', async () => {
    process.env.STANDIN_GPIOSET_INTERACTIVE = '0';
    try {
      expect(await detectGpiosetVersion(standins.path)).to.include({ major: 2, interactive: false });
      await expectUnavailable(new GpiodGpio({ line: 17, pathEnv: standins.path }).prepare(), 'unsupported', /libgpiod 2\.1\.3 built without interactive mode.*--enable-gpioset-interactive.*--driver sysfs/);
      expect(standins.gpiosetLog()).to.deep.equal([]); // refused from --help, never started with -i
    } finally {
      delete process.env.STANDIN_GPIOSET_INTERACTIVE;
    }
    // What it prints if started anyway (a --help we could not read).
    const failure = classifyGpiosetFailure("gpioset: invalid option -- 'i'\ngpioset: try gpioset --help", 'GPIO17');
    expect(failure).to.be.instanceOf(ActuatorUnavailable);
    expect((failure as ActuatorUnavailable).kind).to.equal('unsupported');
    expect(failure.message).to.match(/no interactive mode.*--enable-gpioset-interactive.*--driver sysfs/s);
  });

  it('the factory falls back from libgpiod 1.6 to sysfs, and says so; without sysfs it says what to install', async () => {
    const sysfs = makeFakeSysfs();
    process.env.STANDIN_GPIOSET_VERSION = '1.6.3';
    try {
      sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
      sysfs.addLine(529);
      const notices: string[] = [];
      const action = { kind: 'blink', line: 17, onNs: 1e8, periodNs: 1e9, count: 1 } as const;
      const actuator = await createActuator(action, { driver: 'gpiod', pathEnv: standins.path, sysfsRoot: sysfs.root, notice: (m) => notices.push(m) });
      expect(actuator).to.be.instanceOf(SysfsGpio);
      expect(notices[0]).to.match(/libgpiod 1\.6\.3.*using sysfs/);
      await actuator.release();
      await expectUnavailable(buildActuator(action, { driver: 'auto', pathEnv: standins.path, sysfsRoot: join(sysfs.root, 'none') }), 'unsupported', /no usable GPIO driver.*apt install gpiod/);
    } finally {
      delete process.env.STANDIN_GPIOSET_VERSION;
      sysfs.cleanup();
    }
    const auto = await buildActuator({ kind: 'blink', line: 17, onNs: 1e8, periodNs: 1e9, count: 1 }, { pathEnv: standins.path });
    expect(auto).to.be.instanceOf(GpiodGpio);
  });

  it('auto falls back to sysfs from a libgpiod 2 gpioset built without interactive mode, as from 1.6', async () => {
    const sysfs = makeFakeSysfs();
    process.env.STANDIN_GPIOSET_INTERACTIVE = '0';
    try {
      sysfs.addChip('gpiochip512', 512, 58, 'pinctrl-bcm2711');
      sysfs.addLine(529);
      const notices: string[] = [];
      const action = { kind: 'blink', line: 17, onNs: 1e8, periodNs: 1e9, count: 1 } as const;
      const actuator = await createActuator(action, { pathEnv: standins.path, sysfsRoot: sysfs.root, notice: (m) => notices.push(m) });
      expect(actuator).to.be.instanceOf(SysfsGpio);
      expect(notices[0]).to.match(/libgpiod 2\.1\.3 built without interactive mode.*using sysfs/);
      await actuator.release();
      const error = await expectUnavailable(buildActuator(action, { pathEnv: standins.path, sysfsRoot: join(sysfs.root, 'none') }), 'unsupported', /no usable GPIO driver.*built without interactive mode.*no sysfs GPIO.*--enable-gpioset-interactive/);
      expect(error.message).to.not.match(/or use --driver sysfs/); // there is no sysfs to use
    } finally {
      delete process.env.STANDIN_GPIOSET_INTERACTIVE;
      sysfs.cleanup();
    }
  });

  it('fires each scheduled edge at its instant (stamped by the stand-in on reading stdin)', async () => {
    const gpio = new GpiodGpio({ line: 17, pathEnv: standins.path });
    await gpio.prepare();
    const scheduler = realScheduler();
    const startNs = realClock().nowNs() + 150n * NS_PER_MS;
    const run = scheduleAction(scheduler, { kind: 'blink', line: 17, onNs: 20_000_000, periodNs: 60_000_000, count: 3 }, startNs, gpio);
    await run.done;
    await waitFor(() => gpio.acknowledged >= 7 + WARM_UP_FIRES, 5000, 'every acknowledgement');
    await gpio.release();
    const sets = standins.gpiosetLog().filter((e) => e.line?.startsWith('set')).slice(WARM_UP_FIRES);
    expect(sets.map((e) => e.line).slice(0, 6)).to.deep.equal(['set GPIO17=1', 'set GPIO17=0', 'set GPIO17=1', 'set GPIO17=0', 'set GPIO17=1', 'set GPIO17=0']);
    const planned = [0, 20, 60, 80, 120, 140].map((ms) => startNs + BigInt(ms) * NS_PER_MS);
    planned.forEach((p, i) => {
      const error = standins.toRealNs(sets[i]!.t) - p;
      expect(error >= -1n * NS_PER_MS && error < TIMING_BOUND_NS, `edge ${i}: ${error} ns from plan`).to.equal(true);
    });
  });
});

describe('gpio-sim: a simulated chip through the real character device', () => {
  it('drives a gpio-sim line with gpioset -i and reads it back', async function () {
    const configfs = '/sys/kernel/config/gpio-sim';
    const reasons: string[] = [];
    if (!existsSync('/sys/kernel/config')) reasons.push('no configfs (/sys/kernel/config)');
    else if (!existsSync(configfs)) {
      try {
        execFileSync('modprobe', ['gpio-sim'], { stdio: 'ignore' });
      } catch {
        /* reported below */
      }
      if (!existsSync(configfs)) reasons.push('no gpio-sim module (modprobe gpio-sim failed)');
    }
    let version: Awaited<ReturnType<typeof detectGpiosetVersion>> | undefined;
    try {
      version = await detectGpiosetVersion();
      if (version.major < 2) reasons.push(`gpioset is libgpiod ${version.version} (no -i)`);
    } catch (error) {
      reasons.push((error as Error).message);
    }
    if (reasons.length > 0) {
      console.log(`      skipped: this kernel/machine cannot run gpio-sim: ${reasons.join('; ')}`);
      this.skip();
    }
    // Make a chip with 8 lines, line 3 named LOCKSTEP_LED, then drive it.
    const { mkdirSync, writeFileSync, readdirSync, rmdirSync } = await import('node:fs');
    const dev = join(configfs, `lockstep-${process.pid}`);
    mkdirSync(dev);
    mkdirSync(join(dev, 'bank0'));
    writeFileSync(join(dev, 'bank0', 'num_lines'), '8');
    mkdirSync(join(dev, 'bank0', 'line3'));
    writeFileSync(join(dev, 'bank0', 'line3', 'name'), 'LOCKSTEP_LED');
    writeFileSync(join(dev, 'live'), '1');
    try {
      const chipName = readFileSync(join(dev, 'bank0', 'chip_name'), 'utf8').trim();
      const devName = readFileSync(join(dev, 'dev_name'), 'utf8').trim();
      const valueFile = join('/sys/devices/platform', devName, chipName, 'sim_gpio3', 'value');
      const gpio = await createActuator({ kind: 'blink', line: 'LOCKSTEP_LED', onNs: 1e8, periodNs: 1e9, count: 1 }, { driver: 'gpiod' });
      gpio.fire(0n, { level: 1 });
      await waitFor(() => readFileSync(valueFile, 'utf8').trim() === '1', 2000, 'the simulated line to read 1');
      gpio.fire(0n, { level: 0 });
      await waitFor(() => readFileSync(valueFile, 'utf8').trim() === '0', 2000, 'the simulated line to read 0');
      await gpio.release();
    } finally {
      writeFileSync(join(dev, 'live'), '0');
      for (const d of readdirSync(join(dev, 'bank0')).filter((n) => n.startsWith('line'))) rmdirSync(join(dev, 'bank0', d));
      rmdirSync(join(dev, 'bank0'));
      rmdirSync(dev);
    }
  });
});
