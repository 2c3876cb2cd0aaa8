/**
 * `lockstep trigger`: a one-shot MQTT client that does the whole job of a
 * trigger: readiness gate, instant, signed publish, acks, reports, table.
 * It needs no running `lockstep hub` (which serves time and watches): the
 * retained node states on the broker are all it needs to know the group.
 */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption, durationNsOption } from '../args.js';
import { UsageError, EXIT_FAILURE } from '../errors.js';
import { MQTT_OPTIONS, MQTT_HELP, mqttFrom, topicsFrom, keysFrom } from '../mesh/options.js';
import { realClock } from '../../time/clock.js';
import { Timescale } from '../../time/timescale.js';
import { NS_PER_MS, formatUtcNs } from '../../time/units.js';
import { parseWhen, WhenSyntaxError } from '../../schedule/when.js';
import { validateAction, type ActionSpec } from '../../schedule/actions.js';
import { MqttSession, WATCH_QOS } from '../../mesh/mqtt-session.js';
import { NodeDirectory } from '../../mesh/presence.js';
import { Coordinator, resultJson, StartPassedError, type TriggerResult } from '../../mesh/coordinator.js';
import { NotReadyError, formatNs } from '../../mesh/readiness.js';
import { formatNodeTable, formatEdgeTable, TRUE_SPREAD_LABEL, CLOCK_SPREAD_LABEL } from '../../mesh/spread.js';

const help = `usage: lockstep trigger ACTION [action options] [--in 2s | --at WHEN] [--nodes ID,...] [--ready-within 1ms] [--json]
       lockstep trigger cancel TRIGGER_ID [--nodes ID,...] [--json]

Waits until every target node is synchronized within --ready-within, picks
an instant far enough ahead for delivery (or the one given), publishes the
trigger, collects the acks and fire reports, and prints per node the offset
its clock was found to have, its error bound, its lateness, and per fire the
spread of the instants across nodes.

actions:
  blink   --line N --on 100ms --every 1s --count 10 (or --count forever)
  capture [--name NAME] [--lead-ms MS] [--mode signal|stream|trigger] [--fps N] [--shutter US]
          [--phase-lock] [--trigger-line N]  each node reports its photo's exposure (exposureErrorNs); a node
                              that cannot do the mode rejects it as unavailable, with the reason
  command -- PROGRAM [ARGS...]        (nodes accept it only with --allow-command)
  cancel TRIGGER_ID                   cancel what is left of a trigger (a blink train 'forever')

  --in DURATION         first instant this long after every target is ready (default: chosen from the broker
                        round trip, ≥ 500 ms)
  --at WHEN             first instant: 2026-11-21T12:00:10.250Z, 12:00:10[.250] (next occurrence),
                        +2s, @EPOCHSECONDS[.frac]; absolute: if it passes (or is < 100 ms ahead) once the
                        targets are ready, nothing is sent and the exit status is 1
  --tz ZONE             zone of wall times in --at (default: local)
  --nodes ID,...        target these nodes (default: every online node)
  --ready-within DUR    error bound every target must report (default 1ms); when all follow the same NTP
                        server (the hub), what they add to that server's own declared error
  --ready-timeout DUR   give up (exit 1, naming the laggards) after this long (default 30s)
  --retain              keep the trigger on the broker: nodes that connect later join (in phase)
  --key-id ID           sign with this key from --keys
  --no-wait             return after the acks, without waiting for the fire reports
  --json                one JSON object with the result on stdout
${MQTT_HELP}

exit status: 0 all targets scheduled and fired, 1 not ready / rejected / missing, 2 bad usage.`;

/** --at through the shared WHEN parser (src/schedule/when.ts): bad input is a usage error. */
export function parseAt(text: string, nowNs: bigint, zone?: string): bigint {
  try {
    return parseWhen(text, zone ? { nowNs, zone } : { nowNs }).instantNs;
  } catch (error) {
    if (error instanceof WhenSyntaxError) throw new UsageError(`--at: ${error.message}`);
    throw error;
  }
}

function actionFrom(kind: string | undefined, v: Record<string, string | string[] | boolean | undefined>, rest: string[]): ActionSpec {
  let spec: Record<string, unknown>;
  switch (kind) {
    case 'blink': {
      if (v.line === undefined) throw new UsageError('blink needs --line');
      const count = v.count === undefined ? 1 : v.count === 'forever' ? 'forever' : numberOption('count', String(v.count), { min: 1, integer: true });
      spec = {
        kind: 'blink',
        line: /^\d+$/.test(String(v.line)) ? Number(v.line) : v.line,
        onNs: Number(durationNsOption('on', String(v.on ?? '100ms'))),
        periodNs: Number(durationNsOption('every', String(v.every ?? '1s'))),
        count,
      };
      break;
    }
    case 'capture':
      spec = { kind: 'capture' };
      if (v.name) spec.name = v.name;
      if (v['lead-ms']) spec.leadNs = Math.round(numberOption('lead-ms', String(v['lead-ms']), { min: 0, max: 10_000 }) * 1e6);
      if (v.mode) spec.mode = v.mode;
      if (v.fps) spec.fps = numberOption('fps', String(v.fps), { min: 0.001, max: 1000 });
      if (v['phase-lock']) spec.phaseLock = true;
      if (v.shutter) spec.shutterUs = numberOption('shutter', String(v.shutter), { min: 1, max: 10_000_000, integer: true });
      if (v['trigger-line']) spec.triggerLine = v['trigger-line'];
      break;
    case 'command':
      spec = { kind: 'command', argv: rest };
      break;
    default:
      throw new UsageError(kind === undefined ? 'name an action: blink, capture or command' : `unknown action '${kind}' (blink, capture, command)`);
  }
  const checked = validateAction(spec);
  if (!checked.ok) throw new UsageError(checked.reason);
  return checked.action;
}

export function printResult(result: TriggerResult, out: (s: string) => void): void {
  out(`trigger ${result.triggerId}: first instant ${formatUtcNs(result.startNs)} (chosen ${result.leadMs.toFixed(0)} ms ahead)\n\n`);
  out(formatNodeTable(result.rows) + '\n');
  if (result.edges.length) out('\n' + formatEdgeTable(result.edges) + '\n');
  const s = result.spread;
  if (s) out(`\nspread of reported instants across nodes: p50 ${formatNs(s.p50)}, p99 ${formatNs(s.p99)}, max ${formatNs(s.max)} over ${s.n} edges\n`);
  const t = result.trueSpread;
  if (t) out(`${TRUE_SPREAD_LABEL} (simulated actuators; all nodes on THIS machine's cores): p50 ${formatNs(t.p50)}, p99 ${formatNs(t.p99)}, max ${formatNs(t.max)}\n`);
  const c = result.clockSpread;
  if (c) out(`${CLOCK_SPREAD_LABEL} (when each node's clock read the instant; one node per computer adds only its own fire latency): p50 ${formatNs(c.p50)}, p99 ${formatNs(c.p99)}, max ${formatNs(c.max)}\n`);
  if (result.allAcksMs !== undefined) out(`all acks ${result.allAcksMs.toFixed(1)} ms after publishing\n`);
}

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals, rest } = parseCommandArgs(argv, {
      ...MQTT_OPTIONS,
      line: { type: 'string' },
      on: { type: 'string' },
      every: { type: 'string' },
      count: { type: 'string' },
      name: { type: 'string' },
      'lead-ms': { type: 'string' },
      mode: { type: 'string' },
      fps: { type: 'string' },
      'phase-lock': { type: 'boolean' },
      shutter: { type: 'string' },
      'trigger-line': { type: 'string' },
      in: { type: 'string' },
      at: { type: 'string' },
      tz: { type: 'string' },
      nodes: { type: 'string' },
      'ready-within': { type: 'string' },
      'ready-timeout': { type: 'string' },
      retain: { type: 'boolean' },
      'key-id': { type: 'string' },
      'no-wait': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const cancelling = positionals[0] === 'cancel';
    if (cancelling && positionals.length !== 2) throw new UsageError('usage: lockstep trigger cancel TRIGGER_ID');
    if (!cancelling && positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
    const action = cancelling ? undefined : actionFrom(positionals[0], values, rest);
    if (values.in && values.at) throw new UsageError('give --in or --at, not both');
    const topics = topicsFrom(values);
    const mqtt = mqttFrom(values);
    const keys = keysFrom(values);
    if (values['key-id'] && !keys) throw new UsageError('--key-id needs --keys');
    if (keys && values['key-id'] && !keys.get(values['key-id'])) throw new UsageError(`no key '${values['key-id']}' in ${values.keys}`);
    const keyId = values['key-id'] ?? (keys ? keys.ids()[0] : undefined);
    const nodes = values.nodes ? values.nodes.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
    const readyWithinNs = Number(durationNsOption('ready-within', values['ready-within'] ?? '1ms'));
    const readyTimeoutMs = Number(durationNsOption('ready-timeout', values['ready-timeout'] ?? '30s') / NS_PER_MS);
    // The sender's clock: the system clock (a hub normally runs chrony or is the time source itself).
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
    const startNs = values.at ? parseAt(values.at, timescale.nowNs(), values.tz) : undefined;
    const inNs = values.in ? durationNsOption('in', values.in) : undefined;

    const session = new MqttSession({ ...mqtt, clientId: `lockstep-trigger-${process.pid}-${Date.now().toString(36)}` });
    const directory = new NodeDirectory(topics, () => timescale.nowNs());
    const coordinator = new Coordinator({ session, topics, directory, timescale, keys, keyId });
    const err = (line: string) => {
      if (!values.json) process.stderr.write(line + '\n');
    };
    try {
      await session.waitConnected(10_000);
      await session.subscribe(coordinator.filters(), { qos: WATCH_QOS });
      if (!action) {
        await new Promise((r) => setTimeout(r, 500)); // retained states: who is online
        const answers = await coordinator.cancel(positionals[1]!, nodes);
        const list = [...answers.values()].map((a) => ({ node: a.node, status: a.status, reason: a.reason, detail: a.detail }));
        if (values.json) process.stdout.write(JSON.stringify({ triggerId: positionals[1], answers: list }) + '\n');
        else for (const a of list) process.stdout.write(`${a.node}: ${a.status}${a.reason ? ` (${a.reason})` : ''}\n`);
        return list.some((a) => a.status === 'cancelled') ? 0 : EXIT_FAILURE;
      }
      const result = await coordinator.run({
        action,
        startNs,
        inNs,
        nodes,
        readyWithinNs,
        readyTimeoutMs,
        retain: !!values.retain,
        collect: !values['no-wait'],
        progress: err,
      });
      if (values.json) process.stdout.write(JSON.stringify(resultJson(result)) + '\n');
      else printResult(result, (s) => process.stdout.write(s));
      const ok = result.rows.every((r) => r.ack === 'scheduled' && (values['no-wait'] || r.expectedFires === undefined || r.fires >= r.expectedFires));
      return ok ? 0 : EXIT_FAILURE;
    } catch (error) {
      if (error instanceof StartPassedError) {
        if (values.json) process.stdout.write(JSON.stringify({ error: 'start-passed', message: error.message, startNs: error.startNs.toString() }) + '\n');
        else process.stderr.write(`lockstep trigger: ${error.message}\n`);
        return EXIT_FAILURE;
      }
      if (error instanceof NotReadyError) {
        if (values.json) process.stdout.write(JSON.stringify({ error: 'not-ready', message: error.message, laggards: error.laggards }) + '\n');
        else process.stderr.write(`lockstep trigger: ${error.message}\n`);
        return EXIT_FAILURE;
      }
      throw error;
    } finally {
      await session.close(true);
    }
  },
};
