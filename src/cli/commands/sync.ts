/**
 * `lockstep sync SERVER[:PORT]...`: runs the disciplined NTP client and shows
 * its status like `chronyc tracking` + `chronyc sources`; with --json, one
 * JSON object at the start, per model update, per change of a source's
 * state/reach/error, and at the end. --sim-offset/--sim-drift run it on a
 * simulated raw clock that is wrong on purpose, so convergence can be watched
 * (and checked: the simulation knows the truth).
 */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption } from '../args.js';
import { EXIT_FAILURE, EXIT_OK, UsageError } from '../errors.js';
import { ntpServersFromArgs } from '../ntp-servers.js';
import { NtpClient, type ClientStatus, MIN_ALLOWED_POLL_SECONDS, MAX_ALLOWED_POLL_SECONDS } from '../../ntp/client.js';
import { MAX_ESTIMATE_FREQUENCY_PPM } from '../../ntp/discipline.js';
import { Timescale } from '../../time/timescale.js';
import { SimulatedClock, realClock, type RawClock } from '../../time/clock.js';
import { formatUtcNs } from '../../time/units.js';

const HELP = `usage: lockstep sync SERVER[:PORT]... [--duration SECONDS] [--json]
                    [--sim-offset SECONDS] [--sim-drift PPM] [--keys FILE --key-id N]
                    [--min-poll SECONDS] [--max-poll SECONDS]

Run the disciplined NTP client (no root needed, the system clock is never
touched) and show its status like 'chronyc tracking' and 'chronyc sources'.

  --duration S      stop after S seconds (default: run until Ctrl-C)
  --json            one JSON object a line on stdout: event (start | update: the
                    model changed | source: a source's state, reach or lastError
                    changed | end: the status when the run stops), elapsedSeconds,
                    synchronized, offsetSeconds, frequencyPpm, errorBoundSeconds,
                    sources[] (address, reach, delaySeconds, offsetSeconds,
                    jitterSeconds, state: selected|candidate|falseticker|unreachable,
                    lastError if any), ...
  --sim-offset S    run on a simulated raw clock S seconds ahead of real time
  --sim-drift PPM   ... that gains PPM µs per second (|PPM| ≤ ${MAX_ESTIMATE_FREQUENCY_PPM})
  --keys FILE       chrony-format keyfile ("ID TYPE HEX:KEY" per line): every
                    server is authenticated with its only key, or with --key-id
  --key-id N        ... with key N from FILE (needed when FILE has several)
  --min-poll S      shortest poll interval after the initial burst (default 1)
  --max-poll S      longest poll interval while stable (default 16)

Signs, as NTP's θ: offsetSeconds = server time − local raw time; frequencyPpm
is the rate correction. With --sim-offset 3.2 --sim-drift 50 the offset
converges to −(3.2 + 50e-6 × elapsedSeconds) and the frequency to −50.
An unreachable server is reported, not fatal: the run lasts --duration either
way. Exit status: 0 if synchronized at the end, 1 if not (never synchronized
within --duration, or lost it), 2 on bad input.`;

/**
 * Human output is redrawn at most this often (JSON gets every update); JSON
 * looks this often for source changes that are not model updates (a refused
 * port, a missed reply), so a script hears of them within a second.
 */
const HUMAN_REFRESH_MS = 1000;

type JsonEvent = 'start' | 'update' | 'source' | 'end';

interface Truth {
  /** Real (true) time now and the raw clock's reading at that instant. */
  now(): { truthNs: bigint; rawNs: bigint };
}

export const command: Command = {
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      duration: { type: 'string' },
      json: { type: 'boolean', default: false },
      'sim-offset': { type: 'string' },
      'sim-drift': { type: 'string' },
      keys: { type: 'string' },
      'key-id': { type: 'string' },
      'min-poll': { type: 'string' },
      'max-poll': { type: 'string' },
    });
    const durationS = values.duration !== undefined ? numberOption('duration', values.duration, { min: 0.001, max: 1e9 }) : undefined;
    const simOffset = values['sim-offset'] !== undefined ? numberOption('sim-offset', values['sim-offset'], { min: -1e10, max: 1e10 }) : undefined;
    const simDrift = values['sim-drift'] !== undefined
      ? numberOption('sim-drift', values['sim-drift'], { min: -MAX_ESTIMATE_FREQUENCY_PPM, max: MAX_ESTIMATE_FREQUENCY_PPM })
      : undefined;
    const pollRange = { min: MIN_ALLOWED_POLL_SECONDS, max: MAX_ALLOWED_POLL_SECONDS };
    const minPoll = values['min-poll'] !== undefined ? numberOption('min-poll', values['min-poll'], pollRange) : undefined;
    const maxPoll = values['max-poll'] !== undefined ? numberOption('max-poll', values['max-poll'], pollRange) : undefined;
    if (minPoll !== undefined && maxPoll !== undefined && maxPoll < minPoll) throw new UsageError('--max-poll must be ≥ --min-poll');
    const keyId = values['key-id'] !== undefined ? numberOption('key-id', values['key-id'], { min: 1, max: 0xffffffff, integer: true }) : undefined;
    const { servers, keys } = await ntpServersFromArgs(positionals, {
      ...(values.keys !== undefined ? { keysPath: values.keys } : {}),
      ...(keyId !== undefined ? { keyId } : {}),
      keysMeanAuth: { keyIdFlag: '--key-id' },
    });

    const real = realClock();
    const startTruthNs = real.nowNs();
    let clock: RawClock = real;
    let truth: Truth = { now: () => { const t = real.nowNs(); return { truthNs: t, rawNs: t }; } };
    const simulated = simOffset !== undefined || simDrift !== undefined;
    if (simulated) {
      const sim = new SimulatedClock({ offsetSeconds: simOffset ?? 0, driftPpm: simDrift ?? 0, truth: real });
      clock = sim;
      truth = { now: () => { const t = real.nowNs(); return { truthNs: t, rawNs: sim.rawAtTruth(t) }; } };
    }
    const timescale = new Timescale(clock);
    const client = new NtpClient({
      servers,
      timescale,
      ...(keys ? { keys } : {}),
      ...(minPoll !== undefined ? { minPollSeconds: minPoll } : {}),
      ...(maxPoll !== undefined ? { maxPollSeconds: Math.max(maxPoll, minPoll ?? maxPoll) } : minPoll !== undefined ? { maxPollSeconds: Math.max(16, minPoll) } : {}),
    });

    const report = (status: ClientStatus): Record<string, unknown> => {
      const { truthNs, rawNs } = truth.now();
      const out: Record<string, unknown> = {
        elapsedSeconds: Number(truthNs - startTruthNs) / 1e9,
        synchronized: status.synchronized,
        offsetSeconds: timescale.offsetSeconds(rawNs),
        frequencyPpm: status.frequencyPpm,
        frequencyErrorPpm: status.frequencyErrorPpm ?? null,
        errorBoundSeconds: Number.isFinite(status.errorBoundSeconds) ? status.errorBoundSeconds : null,
        utc: status.synchronized ? formatUtcNs(timescale.utcAt(rawNs)) : null,
        steps: timescale.steps,
        stratum: status.stratum ?? null,
        refId: status.refId ?? null,
        rootDelaySeconds: status.rootDelaySeconds ?? null,
        rootDispersionSeconds: status.rootDispersionSeconds ?? null,
        sources: status.sources.map((s) => ({
          address: s.address,
          state: s.state,
          reach: s.reach,
          stratum: s.stratum ?? null,
          refId: s.refId ?? null,
          pollSeconds: s.pollSeconds,
          delaySeconds: s.delaySeconds,
          offsetSeconds: s.offsetSeconds,
          jitterSeconds: s.jitterSeconds,
          samples: s.samples,
          ...(s.lastError ? { lastError: s.lastError } : {}),
        })),
      };
      if (simulated && status.synchronized) {
        // The simulation knows the truth: how far disciplined UTC is from it.
        out.trueErrorSeconds = Number(timescale.utcAt(rawNs) - truthNs) / 1e9;
      }
      return out;
    };

    const isTty = process.stdout.isTTY === true;
    let lastHuman = 0;
    const human = (status: ClientStatus, force = false) => {
      const nowMs = Date.now(); // display throttling only, not a time measurement
      if (!force && nowMs - lastHuman < HUMAN_REFRESH_MS) return;
      lastHuman = nowMs;
      const r = report(status);
      process.stdout.write((isTty ? '\x1b[H\x1b[2J' : '\n') + renderHuman(r) + '\n');
    };

    // What the sources looked like in the last JSON line: an unreachable source
    // never causes a model update, so its reach and error are watched for.
    let printedSources = '';
    const sourcesKey = (status: ClientStatus) => JSON.stringify(status.sources.map((s) => [s.state, s.reach, s.lastError ?? null]));
    const json = (event: JsonEvent, status: ClientStatus) => {
      printedSources = sourcesKey(status);
      process.stdout.write(JSON.stringify({ event, ...report(status) }) + '\n');
    };

    client.onUpdate((status) => {
      if (values.json) json('update', status);
      else human(status);
    });

    if (values.json) json('start', client.status());
    await client.start();
    if (!values.json) human(client.status(), true);
    // A heartbeat keeps the human view (reach, error bound growth) alive between
    // updates, and reports source changes in JSON (only when there is one).
    const heartbeat = setInterval(() => {
      const status = client.status();
      if (!values.json) human(status);
      else if (sourcesKey(status) !== printedSources) json('source', status);
    }, HUMAN_REFRESH_MS);
    await new Promise<void>((resolve) => {
      const done = () => resolve();
      if (durationS !== undefined) setTimeout(done, durationS * 1000);
      process.once('SIGINT', done);
      process.once('SIGTERM', done);
    });
    clearInterval(heartbeat);
    const final = client.status();
    await client.stop();
    if (values.json) json('end', final);
    else human(final, true);
    return final.synchronized ? EXIT_OK : EXIT_FAILURE;
  },
};

function us(seconds: unknown): string {
  return typeof seconds === 'number' ? `${(seconds * 1e6).toFixed(1)} µs` : '-';
}

function renderHuman(r: Record<string, unknown>): string {
  const sources = r.sources as Array<Record<string, unknown>>;
  const mark: Record<string, string> = { selected: '*', candidate: '+', falseticker: 'x', unreachable: '?' };
  const lines = [
    `Elapsed         : ${(r.elapsedSeconds as number).toFixed(1)} s`,
    `Synchronized    : ${r.synchronized ? 'yes' : 'no'}${r.synchronized ? ` (UTC ${r.utc})` : ''}`,
    `Reference       : ${r.refId ?? '-'} (stratum ${r.stratum ?? '-'})`,
    `Offset          : ${(r.offsetSeconds as number).toFixed(9)} s (UTC − raw clock)`,
    `Frequency       : ${(r.frequencyPpm as number).toFixed(3)} ppm`,
    `Error bound     : ${r.errorBoundSeconds === null ? 'unknown' : us(r.errorBoundSeconds)}`,
    `Root delay/disp : ${us(r.rootDelaySeconds)} / ${us(r.rootDispersionSeconds)}`,
    `Steps           : ${r.steps}`,
  ];
  if (r.trueErrorSeconds !== undefined) lines.push(`True error      : ${us(r.trueErrorSeconds)} (simulation)`);
  lines.push('', 'S Source                       Reach Poll  Delay        Offset             Jitter');
  for (const s of sources) {
    const line =
      `${mark[s.state as string] ?? ' '} ${String(s.address).padEnd(28)} ${(s.reach as number).toString(8).padStart(5)} ` +
      `${String(s.pollSeconds).padStart(4)}s ${us(s.delaySeconds).padStart(12)} ${((s.offsetSeconds as number) >= 0 ? '+' : '') + (s.offsetSeconds as number).toFixed(9)} s ${us(s.jitterSeconds).padStart(12)}`;
    lines.push(s.lastError ? `${line}\n    ${s.lastError}` : line);
  }
  lines.push('', 'S: * selected, + candidate, x falseticker, ? unreachable');
  return lines.join('\n');
}
