/**
 * `lockstep node`: a mesh node. Syncs its clock (embedded NTP client, or the
 * system clock when chrony already disciplines it), takes triggers over
 * MQTT, fires them through an actuator, reports.
 */
import { join } from 'node:path';
import { homedir, setPriority } from 'node:os';
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption, durationNsOption } from '../args.js';
import { ntpServersFromArgs } from '../ntp-servers.js';
import { UsageError } from '../errors.js';
import { MQTT_OPTIONS, MQTT_HELP, mqttFrom, topicsFrom, keysFrom } from '../mesh/options.js';
import { rawAtMonotonic, realClock, SimulatedClock, type RawClock } from '../../time/clock.js';
import { Timescale } from '../../time/timescale.js';
import { NtpClient, LAN_HUB_MIN_POLL_SECONDS } from '../../ntp/client.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { lowerTimerSlackDetailed } from '../../schedule/process-tuning.js';
import type { ActionKind, ActionSpec } from '../../schedule/actions.js';
import { MeshNode, type SyncSnapshot } from '../../mesh/node.js';
import { StateFile } from '../../mesh/state-file.js';
import { syncSnapshot } from '../mesh/sync-snapshot.js';
import { checkId, TopicError } from '../../mesh/topics.js';
import { buildActuator, DRIVERS, type DriverName, type HardwareOptions } from '../../../hardware/index.js';

const help = `usage: lockstep node --id ID [--ntp HOST[:PORT]]... [options]

Runs one mesh node: keeps its clock synchronized, takes triggers from the
broker, acks them, fires them at the instant, reports each fire.

  --id ID                this node's name (letters, digits, . _ -); also its MQTT user name in an ACL
  --ntp HOST[:PORT]      NTP server(s) to sync to (usually the hub); repeatable
  --ntp-keys FILE        NTP symmetric keys (chrony's keyfile format), for an authenticated hub
  --ntp-key-id N         authenticate the NTP servers with this key (default: the keyfile's only key)
  --system-clock         trust the system clock instead (chrony already runs here)
  --system-error DUR     error bound claimed for the system clock (default 500us; chrony's 'chronyc tracking' tells)
  --min-poll SECONDS     shortest NTP poll interval (default 0.0625: a LAN hub's NTP server answers
                         20,000 requests/s, so the node polls 16 times a second while it learns its
                         frequency, then backs off toward --max-poll; give 1 or more for a public server)
  --max-poll SECONDS     longest NTP poll interval (default 8)
  --driver NAME          auto (default), gpiod, sysfs or sim (simulated recorder)
  --chip NAME            GPIO chip name or label
  --out DIR              where captures go (default the current directory)
  --lead-ms MS           camera signal-to-exposure latency, fired early by this much
  --trigger-line N       the GPIO line wired to a Global Shutter camera's XTR (capture mode trigger)
  --camera-sim           captures use the simulated sensor instead of a camera (demo, tests)
  --line-time DUR        rolling shutter time per row, with --rows N: reports carry the last row's exposure
  --rows N
  --frame-start-offset DUR  calibrated delay from the end of exposure to the camera's SensorTimestamp
  --allow-command        accept 'command' actions from the network (they run programs)
  --require-signature    refuse unsigned triggers (default when --keys is given)
  --state-file PATH      pending triggers survive restarts here (default ~/.lockstep/node-ID.json)
  --max-ahead DUR        refuse a trigger whose first instant is further ahead (default 24h: same-day
                         shows; plan further with a crontab), with reason 'too-far-ahead'
  --max-pending N        pending triggers kept at most (default 256), more are refused 'too-many-pending'
                         (a node keeps nothing else per trigger but its id, 10,000 at most; a flood of refused
                         triggers still grows V8's heap toward limits sized for servers: run the node with
                         NODE_OPTIONS='--max-old-space-size=64 --max-semi-space-size=1', as
                         hardware/lockstep-node.service does: +9 MB of RSS after 10,000 of them, +77 MB without)
  --state-period DUR     longest interval between two state messages (default 5s; changes go at once):
                         the hub calls the node gone after 3 of them without a state
  --sim-offset SECONDS   simulate a clock this far off (demo, tests)
  --sim-drift PPM        simulate a clock running this fast
  --nice N               process priority (-20..19; negative needs root or CAP_SYS_NICE): the scheduler
                         busy-waits the last few hundred µs before each instant, and a busy machine
                         takes the core away then (like the unit's Nice=-5)
  --spin DUR             busy-wait this long before each instant instead of the learnt margin; 0 sleeps
                         to the instant (Atomics.wait: ~50-100 µs of wake-up latency, no CPU burnt),
                         better when several nodes share too few cores (the demo on one machine)
  --exit-with-stdin      stop when stdin closes (a parent that started this node died: demo, tests)
  --quiet                no log lines on stderr
${MQTT_HELP}

Stop with Ctrl-C (SIGINT) or SIGTERM.`;

function positiveDuration(name: string, text: string): bigint {
  const ns = durationNsOption(name, text);
  if (ns <= 0n) throw new UsageError(`--${name} must be longer than 0`);
  return ns;
}

function log(quiet: boolean, id: string) {
  return (line: string) => {
    if (!quiet) process.stderr.write(`[node ${id}] ${line}\n`);
  };
}

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      ...MQTT_OPTIONS,
      id: { type: 'string' },
      ntp: { type: 'string', multiple: true },
      'ntp-keys': { type: 'string' },
      'ntp-key-id': { type: 'string' },
      'system-clock': { type: 'boolean' },
      'system-error': { type: 'string' },
      'min-poll': { type: 'string' },
      'max-poll': { type: 'string' },
      driver: { type: 'string' },
      chip: { type: 'string' },
      out: { type: 'string' },
      'lead-ms': { type: 'string' },
      'trigger-line': { type: 'string' },
      'camera-sim': { type: 'boolean' },
      'line-time': { type: 'string' },
      rows: { type: 'string' },
      'frame-start-offset': { type: 'string' },
      'allow-command': { type: 'boolean' },
      'require-signature': { type: 'boolean' },
      'state-file': { type: 'string' },
      'sim-offset': { type: 'string' },
      'sim-drift': { type: 'string' },
      quiet: { type: 'boolean' },
      nice: { type: 'string' },
      'exit-with-stdin': { type: 'boolean' },
      spin: { type: 'string' },
      'max-ahead': { type: 'string' },
      'max-pending': { type: 'string' },
      'state-period': { type: 'string' },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    if (!values.id) throw new UsageError('--id is required');
    try {
      checkId('node id', values.id);
    } catch (error) {
      if (error instanceof TopicError) throw new UsageError(error.message);
      throw error;
    }
    const id = values.id;
    const ntpSpecs = values.ntp ?? [];
    if (ntpSpecs.length === 0 && !values['system-clock']) throw new UsageError('give --ntp HOST[:PORT] (the hub) or --system-clock');
    if (ntpSpecs.length > 0 && values['system-clock']) throw new UsageError('--ntp and --system-clock exclude each other');
    const simulated = values['sim-offset'] !== undefined || values['sim-drift'] !== undefined;
    if (simulated && values['system-clock']) throw new UsageError('a simulated clock needs --ntp to be corrected');
    const driver = (values.driver ?? 'auto') as DriverName;
    if (!DRIVERS.includes(driver)) throw new UsageError(`--driver must be one of ${DRIVERS.join(', ')}`);
    const topics = topicsFrom(values);
    const mqtt = mqttFrom(values);
    const keys = keysFrom(values);

    let clock: RawClock = realClock();
    if (simulated) {
      clock = new SimulatedClock({
        offsetSeconds: values['sim-offset'] === undefined ? 0 : numberOption('sim-offset', values['sim-offset'], { min: -1e6, max: 1e6 }),
        driftPpm: values['sim-drift'] === undefined ? 0 : numberOption('sim-drift', values['sim-drift'], { min: -1000, max: 1000 }),
      });
    }
    const systemErrorNs = values['system-error'] ? Number(durationNsOption('system-error', values['system-error'])) : 500_000;
    const timescale = values['system-clock'] ? new Timescale(clock, { trustRawClock: { errorBoundNs: systemErrorNs } }) : new Timescale(clock);
    let client: NtpClient | undefined;
    if (ntpSpecs.length) {
      const minPoll = values['min-poll'] ? numberOption('min-poll', values['min-poll'], { min: 1 / 64, max: 1024 }) : LAN_HUB_MIN_POLL_SECONDS;
      const maxPoll = values['max-poll'] ? numberOption('max-poll', values['max-poll'], { min: minPoll, max: 131072 }) : Math.max(8, minPoll);
      // Not resolved now: at boot the hub's name (mDNS) may not resolve yet; the client retries.
      const { servers, keys: ntpKeys } = await ntpServersFromArgs(ntpSpecs, {
        keysPath: values['ntp-keys'],
        keyId: values['ntp-key-id'] === undefined ? undefined : numberOption('ntp-key-id', values['ntp-key-id'], { min: 1, max: 2 ** 32 - 1, integer: true }),
        resolve: false,
        keysMeanAuth: { keyIdFlag: '--ntp-key-id' },
      });
      client = new NtpClient({
        servers,
        ...(ntpKeys ? { keys: ntpKeys } : {}),
        timescale,
        minPollSeconds: minPoll,
        maxPollSeconds: maxPoll,
      });
    }
    const sync = (): SyncSnapshot => syncSnapshot(clock, timescale, client);

    // Wake-ups before each instant come within ~1 µs instead of up to 50 µs late (see process-tuning.ts).
    const slack = lowerTimerSlackDetailed();
    if (values.nice !== undefined) {
      const nice = numberOption('nice', values.nice, { min: -20, max: 19, integer: true });
      try {
        setPriority(nice);
      } catch (error) {
        log(!!values.quiet, id)(`cannot set priority ${nice} (${(error as NodeJS.ErrnoException).code}): running at the default`);
      }
    }
    let spinMargin: { initialNs: number; minNs: number; maxNs: number; adapt: boolean } | undefined;
    if (values.spin !== undefined) {
      // '0' alone is accepted as the help says: no unit is needed for nothing.
      const spinNs = values.spin.trim() === '0' ? 0 : Number(durationNsOption('spin', values.spin));
      spinMargin = { initialNs: spinNs, minNs: spinNs, maxNs: spinNs, adapt: false };
    }
    const scheduler = new Scheduler(spinMargin ? { timescale, spinMargin } : { timescale });
    // The simulated recorder knows the true instant of each edge; the report carries it.
    let lastTrueNs: bigint | undefined;
    const hardware: HardwareOptions = { driver, node: id, notice: log(!!values.quiet, id) };
    if (values.chip) hardware.chip = values.chip;
    if (values.out) hardware.outDir = values.out;
    if (values['lead-ms']) hardware.leadMs = numberOption('lead-ms', values['lead-ms'], { min: 0, max: 10_000 });
    if (driver === 'sim') hardware.sim = { clock, onRecord: (r) => (lastTrueNs = r.trueNs) };
    if (values['trigger-line'] !== undefined) hardware.triggerLine = /^\d+$/.test(values['trigger-line']) ? Number(values['trigger-line']) : values['trigger-line'];
    if (values['camera-sim']) hardware.cameraSim = true;
    if ((values['line-time'] === undefined) !== (values.rows === undefined)) throw new UsageError('--line-time and --rows go together');
    if (values['line-time'] !== undefined) hardware.cameraGeometry = { lineTimeNs: Number(durationNsOption('line-time', values['line-time'])), rows: numberOption('rows', values.rows!, { min: 2, max: 100_000, integer: true }) };
    if (values['frame-start-offset'] !== undefined) hardware.cameraGeometry = { ...hardware.cameraGeometry, frameStartOffsetNs: Number(durationNsOption('frame-start-offset', values['frame-start-offset'])) };
    // Frames' SensorTimestamps (CLOCK_MONOTONIC) are judged on this node's disciplined clock.
    hardware.utcAtMonotonic = (monotonicNs) => timescale.utcAt(rawAtMonotonic(clock, monotonicNs));
    const allowKinds: ActionKind[] = values['allow-command'] ? ['blink', 'capture', 'command'] : ['blink', 'capture'];
    const node = new MeshNode({
      id,
      topics,
      mqtt,
      timescale,
      scheduler,
      sync,
      actuatorFor: (action: ActionSpec) => lazyActuator(action, hardware),
      truthNs: driver === 'sim' ? () => lastTrueNs! : undefined,
      clockTruthAt: clock instanceof SimulatedClock ? (utcNs) => (clock as SimulatedClock).truthAtRaw(timescale.rawAt(utcNs)) : undefined,
      keys,
      requireSignature: values['require-signature'] ?? !!keys,
      stateFile: new StateFile(values['state-file'] ?? join(homedir(), '.lockstep', `node-${id}.json`)),
      allowKinds,
      log: log(!!values.quiet, id),
      ...(values['max-ahead'] !== undefined ? { maxAheadNs: positiveDuration('max-ahead', values['max-ahead']) } : {}),
      ...(values['state-period'] !== undefined ? { statePeriodMs: Number(positiveDuration('state-period', values['state-period']) / 1_000_000n) || 1 } : {}),
      ...(values['max-pending'] !== undefined ? { maxPending: numberOption('max-pending', values['max-pending'], { min: 1, max: 100_000, integer: true }) } : {}),
    });
    // System-clock mode: chrony keeps disciplining it, so the claimed bound does not grow with time.
    const refresh = values['system-clock']
      ? setInterval(() => timescale.apply({ rawNs: clock.nowNs(), offsetNs: 0n, frequencyPpm: 0, errorBoundNs: systemErrorNs }), 1000)
      : undefined;
    refresh?.unref();
    await node.start();
    await client?.start();
    log(!!values.quiet, id)(
      `running: broker ${(mqtt.servers ?? [mqtt.url]).join(' or ')}, topics ${topics.prefix}/, ${client ? `NTP ${ntpSpecs.join(' ')}` : 'system clock'}, driver ${driver}, ` +
        (slack.lowered ? 'timer slack 1 ns' : `timer slack left at ${slack.slackNs ?? '?'} ns (${slack.reason})`),
    );

    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      if (values['exit-with-stdin']) {
        // The parent holds the other end: when it dies, however it dies, this node goes too.
        process.stdin.on('end', stop);
        process.stdin.on('error', stop);
        process.stdin.resume();
      }
    });
    // The resumed stdin would keep the event loop alive after a signal: the node stopped but never exited,
    // and every demo stop waited for its SIGKILL (3 s). Let go of it first.
    if (values['exit-with-stdin']) process.stdin.destroy();
    if (refresh) clearInterval(refresh);
    await node.stop();
    await client?.stop();
    scheduler.stop();
    return 0;
  },
};

import type { Actuator } from '../../schedule/actuator.js';

/** buildActuator is async (it probes the machine); the node's factory is sync, so defer to prepare(). */
function lazyActuator(action: ActionSpec, hardware: HardwareOptions): Actuator {
  let inner: Actuator | undefined;
  return {
    get name() {
      return inner?.name ?? `${action.kind} (preparing)`;
    },
    get leadNs() {
      return inner?.leadNs;
    },
    async prepare() {
      inner = await buildActuator(action, hardware);
      await inner.prepare();
    },
    get rehearsesInFire() {
      return inner?.rehearsesInFire === true;
    },
    // One call site for the rehearsals and the instant (Actuator.rehearsesInFire); true only reaches a driver that declared it.
    fire(instantNs, input, rehearsal) {
      return inner!.fire(instantNs, input, rehearsal === true);
    },
    // Without it the scheduler's rehearsals stopped here, short of the driver (src/schedule/warm-up.ts).
    rehearse(instantNs, input) {
      inner?.rehearse?.(instantNs, input);
    },
    async release() {
      await inner?.release();
    },
  };
}
