/**
 * `lockstep fire ACTION --at WHEN`: one node fires a hardware action at an
 * instant. The slow work (opening the GPIO line, starting the camera) is done
 * before the instant by the actuator's prepare(); each edge is then one write
 * or one signal, right after the scheduler's spin tail.
 */
import type { Command } from '../command.js';
import { parseCommandArgs, durationNsOption, numberOption } from '../args.js';
import { UsageError, EXIT_OK, EXIT_FAILURE, EXIT_USAGE } from '../errors.js';
import { openClockSource, CLOCK_OPTIONS } from '../clock-source.js';
import { stepJson, stepLine } from '../schedule-output.js';
import { formatUtcNs } from '../../time/units.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { lowerTimerSlack } from '../../schedule/process-tuning.js';
import { parseWhen, WhenSyntaxError, WHEN_FORMATS } from '../../schedule/when.js';
import { InstantPassed } from '../../schedule/errors.js';
import { ActuatorUnavailable, type Actuator, type LaterOutcome } from '../../schedule/actuator.js';
import { rawAtMonotonic } from '../../time/clock.js';
import { exposureJson } from '../../../hardware/camera-metadata.js';
import {
  validateAction,
  scheduleAction,
  describeAction,
  actionReportJson,
  type ActionFireReport,
  type ActionSkipReport,
  type ActionSpec,
  type PastPolicy,
} from '../../schedule/actions.js';
import { buildActuator, DRIVERS, type DriverName, type HardwareOptions } from '../../../hardware/index.js';
import { SimulatedRecorder } from '../../../hardware/sim.js';

const help = `usage: lockstep fire ACTION --at WHEN [options] [--driver auto|gpiod|sysfs|sim] [--json]

Fires a hardware action at an instant, to the microsecond: everything slow
(opening the GPIO line, starting the camera) is done before, so the instant
costs one write or one signal.

  lockstep fire blink --line 17 --at +2s --on 100ms --every 1s --count 10
  lockstep fire capture --at 12:00:00 --out ~/photos --lead-ms 60
  lockstep fire command --at 12:00:10.000 -- ./start-show.sh

actions:
  blink       an LED train on a GPIO line: on at WHEN + k·every, off after --on
    --line N|NAME      BCM pin number (17) or line name (GPIO17)
    --on DUR           how long each pulse is on (default 100ms)
    --every DUR        period of the pulses (needed when more than one)
    --count N          number of pulses (default 1)   --forever  until Ctrl-C
    --chip CHIP        GPIO chip name or label (default: the Pi header's)
    --active-low       the LED lights when the pin is low
  capture     one photo; every report says when it was really exposed (the frame's
              own SensorTimestamp, in this clock's UTC) and exposureErrorNs
    --mode MODE        signal (default): a waiting rpicam-still --signal; the frame
                         saved lands within about a frame period of the instant
                       stream: rpicam-vid runs the sensor at --fps, the frame whose
                         exposure mid-point is nearest the instant is kept (within
                         half a frame period)
                       trigger: a Global Shutter camera exposed by our own GPIO
                         pulse on --trigger-line (hardware/README.md)
    --fps N            stream: the sensor's frame rate (default 60)
    --phase-lock       stream: put the frames on the UTC grid k/fps (rpicam-vid --sync
                         client following this node's own sync server), so that
                         every node's nearest frame is the same instant's
    --shutter US       stream, trigger: the fixed exposure in µs (default 5000 / 1000)
    --trigger-line N   trigger: the GPIO line wired to the camera's XTR
    --line-time DUR    rolling shutter: time per row (13.36us for a Camera Module 3
    --rows N             at 2304x1296): reports the last row's exposure too
    --frame-start-offset DUR  calibrated delay from the end of the first row's exposure
                       to the frame-start interrupt (SensorTimestamp); default 0
    --camera-sim       the simulated sensor instead of a camera (demo, tests)
    --out DIR          where the photo goes (default: the current directory)
    --name NAME        first part of the file name (default: capture):
                       NAME-NODE-000.jpg
    --node NAME        node part of the file name (default: the host name)
    --lead-ms MS       fire this much early: the camera's calibrated signal-to-
                       exposure latency (reported with every capture)
    --camera PROGRAM   rpicam-still, libcamera-still or a path
    --camera-args ARGS extra options for it, one string ("--width 2028 --height 1520")
    --warmup DUR       camera settling time after start (default 1500ms)
  command     a program started at the instant: after --, the program and its
              arguments; it gets LOCKSTEP_INSTANT_NS in its environment. A /bin/sh
              helper forked beforehand execs it at the instant (no fork of Node
              then); the exec and the program's own start-up follow (see
              'lockstep at --help' for programs that must act at the instant)

WHEN:
${WHEN_FORMATS.map((f) => `  ${f}`).join('\n')}

options:
  --at WHEN            the instant (required)
  --tz ZONE            IANA zone for wall times (default: the local zone)
  --if-past POLICY     WHEN has already passed: reject (default), skip, fire-late
  --driver DRIVER      auto (default: gpiod if libgpiod 2 is installed, else sysfs),
                       gpiod (gpioset -i kept running), sysfs, or sim (record the
                       true instants instead of acting: no hardware needed)
  --sysfs-root DIR     sysfs GPIO directory (default /sys/class/gpio)
  --ntp SERVER         use the embedded NTP client instead of the system clock
  --sync-timeout DUR   how long to wait for NTP synchronization (default 15s)
  --json               one JSON object per fire on stdout, then a summary
  --quiet              no per-fire lines, no progress on stderr

exit: 0 when every instant fired, 1 when one was skipped or failed, 2 on bad
input or when the hardware cannot be used (the message says what to install or
which group to join).`;

const OPTIONS = {
  ...CLOCK_OPTIONS,
  at: { type: 'string' },
  tz: { type: 'string' },
  'if-past': { type: 'string' },
  driver: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  // blink
  line: { type: 'string' },
  on: { type: 'string' },
  every: { type: 'string' },
  count: { type: 'string' },
  forever: { type: 'boolean' },
  chip: { type: 'string' },
  'active-low': { type: 'boolean' },
  'sysfs-root': { type: 'string' },
  // capture
  out: { type: 'string' },
  name: { type: 'string' },
  node: { type: 'string' },
  'lead-ms': { type: 'string' },
  camera: { type: 'string' },
  'camera-args': { type: 'string' },
  warmup: { type: 'string' },
  mode: { type: 'string' },
  fps: { type: 'string' },
  'phase-lock': { type: 'boolean' },
  shutter: { type: 'string' },
  'trigger-line': { type: 'string' },
  'line-time': { type: 'string' },
  rows: { type: 'string' },
  'frame-start-offset': { type: 'string' },
  'camera-sim': { type: 'boolean' },
} as const;

/** The capture options, for "--X is for capture" checks. */
const CAPTURE_FLAGS = ['out', 'name', 'node', 'lead-ms', 'camera', 'camera-args', 'warmup', 'mode', 'fps', 'phase-lock', 'shutter', 'trigger-line', 'line-time', 'rows', 'frame-start-offset', 'camera-sim'] as const;

/** Default pulse length when --on is not given: visible, and short enough for a 1 s train. */
const DEFAULT_ON = '100ms';

type Values = ReturnType<typeof parseCommandArgs<typeof OPTIONS>>['values'];

/** Builds the action spec from the command line, through the same validator the mesh uses. */
function actionFromArgs(kind: string | undefined, values: Values, rest: string[]): ActionSpec {
  if (kind === undefined) throw new UsageError('which action? blink, capture or command');
  const onlyFor = (names: (keyof Values)[], action: string) => {
    const stray = names.find((n) => values[n] !== undefined);
    if (stray) throw new UsageError(`--${String(stray)} is for ${action}, not ${kind}`);
  };
  let raw: Record<string, unknown>;
  switch (kind) {
    case 'blink': {
      onlyFor([...CAPTURE_FLAGS], 'capture');
      if (values.line === undefined) throw new UsageError('blink needs --line (a BCM pin number such as 17, or a line name such as GPIO17)');
      if (values.forever && values.count !== undefined) throw new UsageError('give --count or --forever, not both');
      const count = values.forever ? 'forever' : values.count === undefined ? 1 : numberOption('count', values.count, { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true });
      const onNs = durationNsOption('on', values.on ?? DEFAULT_ON);
      if (values.every === undefined && count !== 1) throw new UsageError('more than one pulse needs --every (the period, e.g. --every 1s)');
      const periodNs = values.every === undefined ? onNs * 2n : durationNsOption('every', values.every);
      raw = { kind, line: values.line, onNs: Number(onNs), periodNs: Number(periodNs), count };
      break;
    }
    case 'capture': {
      onlyFor(['line', 'on', 'every', 'count', 'forever', 'chip', 'active-low'], 'blink');
      raw = { kind };
      if (values.out !== undefined) raw.outDir = values.out;
      if (values.name !== undefined) raw.name = values.name;
      if (values.mode !== undefined) raw.mode = values.mode;
      if (values.fps !== undefined) raw.fps = numberOption('fps', values.fps, { min: 0.001, max: 1000 });
      if (values['phase-lock']) raw.phaseLock = true;
      if (values.shutter !== undefined) raw.shutterUs = numberOption('shutter', values.shutter, { min: 1, max: 10_000_000, integer: true });
      if (values['trigger-line'] !== undefined) raw.triggerLine = values['trigger-line'];
      break;
    }
    case 'command': {
      onlyFor(['line', 'on', 'every', 'count', 'forever', 'chip', 'active-low'], 'blink');
      onlyFor([...CAPTURE_FLAGS], 'capture');
      if (rest.length === 0) throw new UsageError("command needs the program after '--': lockstep fire command --at WHEN -- PROGRAM [ARGS...]");
      raw = { kind, argv: rest };
      break;
    }
    default:
      throw new UsageError(`unknown action '${kind}' (expected blink, capture or command)`);
  }
  if (kind !== 'command' && rest.length > 0) throw new UsageError(`'-- ${rest.join(' ')}': only the command action takes a program`);
  const result = validateAction(raw);
  if (!result.ok) throw new UsageError(result.reason);
  return result.action;
}

function hardwareOptions(values: Values, notice: (m: string) => void): HardwareOptions {
  const driver = (values.driver ?? 'auto') as DriverName;
  if (!DRIVERS.includes(driver)) throw new UsageError(`--driver takes ${DRIVERS.join(', ')}, not '${values.driver}'`);
  const options: HardwareOptions = { driver, notice };
  if (values['sysfs-root'] !== undefined) options.sysfsRoot = values['sysfs-root'];
  if (values.chip !== undefined) options.chip = values.chip;
  if (values['active-low']) options.activeLow = true;
  if (values.node !== undefined) options.node = values.node;
  if (values['lead-ms'] !== undefined) options.leadMs = numberOption('lead-ms', values['lead-ms'], { min: 0, max: 10_000 });
  if (values.camera !== undefined) options.cameraBinary = values.camera;
  if (values['camera-args'] !== undefined) options.cameraArgs = values['camera-args'].split(/\s+/).filter(Boolean);
  if (values.warmup !== undefined) options.cameraWarmupMs = Number(durationNsOption('warmup', values.warmup) / 1_000_000n);
  if ((values['line-time'] === undefined) !== (values.rows === undefined)) throw new UsageError('--line-time and --rows go together (the last row is exposed (rows − 1) line times after the first)');
  if (values['line-time'] !== undefined) {
    options.cameraGeometry = { lineTimeNs: Number(durationNsOption('line-time', values['line-time'])), rows: numberOption('rows', values.rows!, { min: 2, max: 100_000, integer: true }) };
  }
  if (values['frame-start-offset'] !== undefined) {
    options.cameraGeometry = { ...options.cameraGeometry, frameStartOffsetNs: Number(durationNsOption('frame-start-offset', values['frame-start-offset'])) };
  }
  if (values['camera-sim']) options.cameraSim = true;
  return options;
}

function micro(ns: number): string {
  return Math.abs(ns) >= 1e6 ? `${(ns / 1e6).toFixed(3)} ms` : `${(ns / 1e3).toFixed(1)} µs`;
}

function fireLine(r: ActionFireReport, trueErrorNs: number | undefined, later?: LaterOutcome): string {
  const what = r.level !== undefined ? `#${r.index} ${r.level ? 'on ' : 'off'}` : `#${r.index}`;
  const parts = [`${r.kind} ${what} at ${formatUtcNs(r.actualNs)}`, `late ${micro(r.latenessNs)}`];
  if (r.actionLatenessNs !== undefined) parts.push(`at the actuator ${micro(r.actionLatenessNs)}`);
  parts.push(Number.isFinite(r.errorBoundNs) ? `clock ±${micro(r.errorBoundNs)}` : 'clock unsynchronized');
  if (r.leadNs) parts.push(`lead ${micro(r.leadNs)} (target ${formatUtcNs(r.targetNs)})`);
  if (r.outcome?.costNs !== undefined) parts.push(`fire() ${micro(r.outcome.costNs)}`);
  if (r.outcome?.file) parts.push(`file ${r.outcome.file}`);
  if (later?.exposure) parts.push(`exposed ${formatUtcNs(later.exposure.startNs)}, mid-point ${later.exposure.errorNs >= 0 ? '+' : ''}${micro(later.exposure.errorNs)} from the instant`);
  else if (later?.exposureUnknown) parts.push(`exposure unknown: ${later.exposureUnknown}`);
  if (trueErrorNs !== undefined) parts.push(`true instant ${trueErrorNs >= 0 ? '+' : ''}${micro(trueErrorNs)} from plan`);
  if (r.error) parts.push(`FAILED: ${r.error}`);
  return parts.join(', ');
}

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals, rest } = parseCommandArgs(argv, OPTIONS);
    if (positionals.length > 1) throw new UsageError(`unexpected '${positionals[1]}' (a command's arguments go after '--')`);
    const action = actionFromArgs(positionals[0], values, rest);
    if (values.at === undefined) throw new UsageError('--at WHEN is required (e.g. --at +2s, --at 12:00:00)');
    const ifPast = (values['if-past'] ?? 'reject') as PastPolicy;
    if (!['reject', 'skip', 'fire-late'].includes(ifPast)) throw new UsageError(`--if-past takes reject, skip or fire-late, not '${values['if-past']}'`);
    // A reader that went away (`| head -1`) must not crash a train in progress: stop writing, keep firing.
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
    const err = (line: string) => process.stderr.write(`lockstep fire: ${line}\n`);
    const say = (line: string) => values.quiet || err(line);
    const options = hardwareOptions(values, (m) => err(m));

    const clock = await openClockSource(values, say);
    // A frame's SensorTimestamp is CLOCK_MONOTONIC: judged on the same disciplined UTC as the instant.
    options.utcAtMonotonic = (monotonicNs) => clock.timescale.utcAt(rawAtMonotonic(clock.timescale.clock, monotonicNs));
    // A step of the clock moves every pending edge: say so, as wait/at/cron do.
    clock.onStep((step) => {
      if (values.json) process.stdout.write(stepJson(step, clock.description) + '\n');
      else say(stepLine(step, clock.description));
    });
    let actuator: Actuator | undefined;
    let stopSignals = () => {};
    try {
      let startNs: bigint;
      try {
        startNs = parseWhen(values.at, { nowNs: clock.timescale.nowNs(), ...(values.tz ? { zone: values.tz } : {}) }).instantNs;
      } catch (error) {
        if (error instanceof WhenSyntaxError) throw new UsageError(error.message);
        throw error;
      }
      let prepared: Actuator;
      try {
        prepared = await buildActuator(action, options);
        actuator = prepared;
        await prepared.prepare();
      } catch (error) {
        if (error instanceof ActuatorUnavailable) {
          err(error.message);
          return EXIT_USAGE;
        }
        throw error;
      }
      say(`${describeAction(action)} with ${prepared.name}, from ${formatUtcNs(startNs)} (clock: ${clock.description})`);
      lowerTimerSlack(); // wake-ups ~50 µs sooner, less spin (src/schedule/process-tuning.ts); best effort
      const scheduler = new Scheduler({ timescale: clock.timescale });
      clock.attach(scheduler);

      // Reports are printed off the hot path: the scheduler calls onFire right after the spin tail.
      const queue: string[] = [];
      const pendingLater: Promise<void>[] = [];
      let flushing = false;
      const flush = () => {
        flushing = false;
        for (const line of queue.splice(0)) process.stdout.write(line + '\n');
      };
      const emit = (line: string) => {
        queue.push(line);
        if (!flushing) {
          flushing = true;
          setImmediate(flush);
        }
      };
      const sim = prepared instanceof SimulatedRecorder ? prepared : undefined;
      let failures = 0;
      const onFire = (r: ActionFireReport) => {
        if (r.error) failures++;
        const trueErrorNs = sim ? sim.records.at(-1)?.errorNs : undefined;
        const publish = (extra: LaterOutcome) => {
          if (extra.error) failures++;
          const { exposure, ...plain } = extra;
          if (values.json) emit(JSON.stringify({ event: 'fire', ...actionReportJson(r), ...(trueErrorNs !== undefined ? { trueErrorNs } : {}), ...plain, ...(exposure ? exposureJson(exposure) : {}) }));
          else if (!values.quiet) {
            const tail = (extra.spawnLatencyNs !== undefined ? `, spawn ${micro(extra.spawnLatencyNs)}` : '') + (extra.error ? `, FAILED: ${extra.error}` : '');
            emit(fireLine(r, trueErrorNs, extra) + tail);
          }
        };
        const later = r.outcome?.later;
        if (later) pendingLater.push(later.then((l) => publish(l)));
        else publish({});
      };
      const onSkip = (s: ActionSkipReport) => {
        failures++;
        if (values.json) emit(JSON.stringify({ event: 'skip', kind: s.kind, index: s.index, ...(s.level !== undefined ? { level: s.level } : {}), plannedNs: s.plannedNs.toString(), reason: s.reason }));
        else if (!values.quiet) emit(`skipped ${s.kind} #${s.index} planned ${formatUtcNs(s.plannedNs)}: ${s.reason}`);
      };

      let run;
      try {
        run = scheduleAction(scheduler, action, startNs, prepared, { tag: action.kind === 'capture' ? action.name ?? 'capture' : 'lockstep', ifPast, onFire, onSkip });
      } catch (error) {
        if (error instanceof InstantPassed) {
          err(`${error.message} (use --if-past fire-late or skip, or a later --at)`);
          return EXIT_FAILURE;
        }
        throw error;
      }
      // Ctrl-C or a service stop: cancel what is left; release() then leaves the LED off.
      let interrupted: NodeJS.Signals | undefined;
      const onSignal = (signal: NodeJS.Signals) => {
        interrupted = signal;
        run.cancel();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      stopSignals = () => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      };
      const summary = await run.done;
      scheduler.stop();
      await Promise.all(pendingLater);
      actuator = undefined;
      await prepared.release();
      flush();
      if (values.json) process.stdout.write(JSON.stringify({ event: 'done', ...summary, interrupted: interrupted ?? null }) + '\n');
      say(`done: ${summary.fires} fired, ${summary.skips} skipped, ${summary.errors} failed${interrupted ? ` (stopped by ${interrupted})` : ''}`);
      if (interrupted) return 0;
      return summary.errors + summary.skips + failures > 0 ? EXIT_FAILURE : EXIT_OK;
    } finally {
      stopSignals();
      await actuator?.release().catch(() => undefined);
      await clock.close();
    }
  },
};
