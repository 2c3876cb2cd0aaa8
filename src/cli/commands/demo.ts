/**
 * `lockstep demo`: the whole product on one machine. A private Mosquitto, the
 * hub serving time, and N node processes whose clocks are wrong by up to ±5 s
 * and ±100 ppm; once every node's error bound is under the threshold, a train
 * of 10 blinks at 1 Hz; then per node what was found and how late it fired,
 * and per blink the TRUE spread across nodes (the simulated LEDs know truth).
 */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption, durationNsOption } from '../args.js';
import { UsageError, EXIT_FAILURE } from '../errors.js';
import { Cluster, SWARM_ABOVE_NODES, DEFAULT_NODES_PER_PROCESS } from '../mesh/cluster.js';
import { printResult } from './trigger.js';
import { resultJson } from '../../mesh/coordinator.js';
import { NotReadyError, formatNs } from '../../mesh/readiness.js';
import { quantiles, TRUE_SPREAD_LABEL, CLOCK_SPREAD_LABEL } from '../../mesh/spread.js';
import { cpus, tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { startDashboard, httpAddress, DEFAULT_HTTP, type RunningDashboard } from '../mesh/dashboard.js';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { CAPTURE_MODES, describeAction, type CaptureAction, type CaptureMode } from '../../schedule/actions.js';
import { runPhotos, type PhotoRun } from '../mesh/photo-run.js';

/** Per photo and per node: what the node reported, and what the simulated sensor knows was true. */
function printPhotos(runs: PhotoRun[], dir: string, out: (s: string) => void): void {
  const sign = (ns: number | undefined) => (ns === undefined ? '-' : `${ns >= 0 ? '+' : ''}${formatNs(ns)}`);
  for (const run of runs) {
    out(`\nphoto ${run.index + 1} (trigger ${run.result.triggerId}, instant ${run.result.startNs}):\n`);
    const rows = run.nodes.map((n) => [n.node, sign(n.exposureErrorNs), sign(n.trueErrorNs), sign(n.reportErrorNs), n.unknown ?? '']);
    const header = ['node', 'reported exposure error', 'true exposure error', 'reported − true', ''];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows]) out(`  ${row.map((x, i) => x.padEnd(widths[i]!)).join('   ').trimEnd()}\n`);
    out(`  true exposure mid-point spread across nodes: ${run.trueSpreadNs === undefined ? '-' : formatNs(run.trueSpreadNs)}\n`);
  }
  out(`\nphotos (and sensor-truth.jsonl, what the simulated sensors really did) in ${dir}\n`);
}

const help = `usage: lockstep demo [--nodes 10] [--wifi] [--json]

Starts a private Mosquitto on a free loopback port, the hub (its NTP server on
a free port) and N 'lockstep node' processes with simulated clocks off by up
to ±5 s and drifting up to ±100 ppm, each driving a simulated LED that records
the TRUE instant of every edge. Waits until every node is synchronized, fires
10 blinks at 1 Hz on all of them, and prints how close they were. Stops
everything it started, also on Ctrl-C.

  --nodes N            how many nodes (default 10, at most 2000). Up to 50: one 'lockstep node' process
                       each. Above: the swarm layout ('lockstep swarm' processes of 100 simulated nodes,
                       each node with its own MQTT connection, NTP client, clock and LED, but no spin:
                       it shows the hub and broker at scale, not fire precision)
  --layout L           processes or swarm (default: by --nodes, as above)
  --wifi               NTP through a Wi-Fi-like relay (1 ms + exponential 3 ms each way)
  --blinks N           blinks in the train (default 10)
  --ready-within DUR   error bound every node must reach first (default 1ms; 2ms with --wifi, whose honest
                       bound keeps a quarter of the relay's 1 ms fixed delay for an unseen asymmetry
                       and gets under 2 ms within seconds, under 1 ms within tens of seconds on a busy machine;
                       1s in the swarm layout, whose bounds include the CPU queueing of a hundred nodes per
                       process on this machine)
  --nice N             node process priority (default -5 as in the systemd unit; best effort,
                       0 to leave it): their spin tails then keep the core on a busy machine
  --settle DUR         wait this long before the gate (default 0: the gate itself waits for honest bounds)
  --spin DUR           the nodes' busy-wait before each instant (lockstep node --spin)
  --json               the result as one JSON object on stdout
  --http [HOST:PORT]   also serve the hub's page (default ${DEFAULT_HTTP}) and keep the hub and the nodes
                       running after the train until Ctrl-C; the page's token is printed (a fresh one each run)
  --capture            photos instead of blinks: every node's camera is the simulated sensor
                       (hardware/sensor-sim.ts), and each photo is judged by when it was
                       really exposed
  --mode MODE          with --capture: stream (default: frame select at 60 fps), signal, trigger
  --phase-lock         with --capture --mode stream: every node's frames on one UTC grid
  --photos N           with --capture: how many (default 3)
  --out DIR            with --capture: where the photos go (default: a new directory under /tmp, kept)`;

/**
 * After a signal, the longest the graceful stop may take before the demo exits anyway (node
 * processes get 3 s before SIGKILL, so do the broker's); the exit hook kills what is left by pid.
 */
const STOP_DEADLINE_MS = 8_000;
/** As hardware/lockstep-node.service: a little priority for the spin tail. */
const DEFAULT_DEMO_NICE = -5;
/** A thousand nodes is the issue's scale; 2,000 connections still fit a default Mosquitto and 2 cores (slowly). */
const MAX_DEMO_NODES = 2_000;

export const command: Command = {
  help,
  async run(argv) {
    argv = argv.map((a, i) => (a === '--http' && (i === argv.length - 1 || argv[i + 1]!.startsWith('-')) ? `--http=${DEFAULT_HTTP}` : a));
    const { values, positionals } = parseCommandArgs(argv, {
      nodes: { type: 'string' },
      wifi: { type: 'boolean' },
      blinks: { type: 'string' },
      'ready-within': { type: 'string' },
      json: { type: 'boolean' },
      nice: { type: 'string' },
      spin: { type: 'string' },
      settle: { type: 'string' },
      http: { type: 'string' },
      capture: { type: 'boolean' },
      mode: { type: 'string' },
      'phase-lock': { type: 'boolean' },
      photos: { type: 'string' },
      out: { type: 'string' },
      layout: { type: 'string' },
    });
    const http = values.http !== undefined ? httpAddress(values.http) : undefined;
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const nodes = values.nodes ? numberOption('nodes', values.nodes, { min: 1, max: MAX_DEMO_NODES, integer: true }) : 10;
    if (values.layout !== undefined && values.layout !== 'processes' && values.layout !== 'swarm') throw new UsageError(`--layout must be processes or swarm`);
    const layout = (values.layout as 'processes' | 'swarm' | undefined) ?? (nodes > SWARM_ABOVE_NODES ? 'swarm' : 'processes');
    if (layout === 'processes' && nodes > SWARM_ABOVE_NODES) throw new UsageError(`--layout processes takes at most ${SWARM_ABOVE_NODES} nodes (a process each); use the swarm layout`);
    const blinks = values.blinks ? numberOption('blinks', values.blinks, { min: 1, max: 100, integer: true }) : 10;
    const wifi = !!values.wifi;
    // Swarm nodes share an event loop a hundred at a time (and 2 cores a thousand at a time): their honest NTP bounds
    // carry that queueing, hundreds of ms on a loaded machine. The swarm shows the control plane, not precision.
    const readyWithinNs = Number(durationNsOption('ready-within', values['ready-within'] ?? (layout === 'swarm' ? '1s' : wifi ? '2ms' : '1ms')));
    const say = (line: string) => {
      if (!values.json) process.stderr.write(`${line}\n`);
    };

    const nice = values.nice === undefined ? DEFAULT_DEMO_NICE : numberOption('nice', values.nice, { min: -20, max: 19, integer: true });
    // Checked here: a value the nodes refuse would leave the gate waiting for nodes that already exited.
    if (values.spin !== undefined && values.spin.trim() !== '0') durationNsOption('spin', values.spin);
    if (!values.capture && (values.mode ?? values.photos ?? values.out) !== undefined) throw new UsageError('--mode, --photos and --out go with --capture');
    if (values.capture && layout === 'swarm') throw new UsageError('--capture runs one node process per camera: at most 50 nodes, --layout processes');
    const mode = (values.mode ?? 'stream') as CaptureMode;
    if (!CAPTURE_MODES.includes(mode)) throw new UsageError(`--mode takes ${CAPTURE_MODES.join(', ')}, not '${values.mode}'`);
    if (values['phase-lock'] && (!values.capture || mode !== 'stream')) throw new UsageError('--phase-lock goes with --capture --mode stream');
    const photos = values.photos ? numberOption('photos', values.photos, { min: 1, max: 100, integer: true }) : 3;
    const photoDir = values.capture ? (values.out ?? mkdtempSync(join(tmpdir(), 'lockstep-demo-photos-'))) : undefined;
    if (photoDir) {
      mkdirSync(photoDir, { recursive: true });
      // Every node's simulated sensor appends the truth of its frames here (inherited by the node processes).
      process.env.STANDIN_SENSOR_TRUTH = join(photoDir, 'sensor-truth.jsonl');
    }
    const nodeArgs = photoDir ? ['--camera-sim', '--out', photoDir, ...(mode === 'trigger' ? ['--trigger-line', '17'] : [])] : undefined;
    const cluster = new Cluster({ nodes, wifi, nice, spin: values.spin, hubControl: !!http, layout, ...(nodeArgs ? { nodeArgs } : {}) });
    let dashboard: RunningDashboard | undefined;
    let interrupted = false;
    // One stop, whoever asks first (a signal, or the end of the run); a signal during it waits for it.
    let stopping: Promise<void> | undefined;
    const stopCluster = () => (stopping ??= cluster.stop());
    // Listeners stay installed until the process ends ('on', not 'once'): with none, Node restores the
    // default action and a second signal, or one during the final stop, would kill the demo mid-stop.
    const onSignal = () => {
      if (interrupted) {
        // A second signal: stop waiting. The exit hook SIGKILLs every child still tracked by pid.
        say('second signal: killing what is left');
        process.exit(130);
      }
      interrupted = true;
      say('\ninterrupted: stopping everything the demo started');
      setTimeout(() => process.exit(130), STOP_DEADLINE_MS).unref();
      void (dashboard?.stop() ?? Promise.resolve()).then(stopCluster).finally(() => process.exit(130));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const t0 = Date.now();
    try {
      await cluster.start();
      if (http) {
        // A fresh secret each run, printed: the demo is on this machine, whoever reads the terminal may fire.
        const token = randomBytes(12).toString('hex');
        dashboard = await startDashboard({ hub: cluster.hub!, timescale: cluster.timescale, brokerUrl: cluster.broker.url, gateThresholdNs: readyWithinNs, token, ...http });
        process.stderr.write(`page: ${dashboard.url}  token: ${token}\n`);
      }
      say(`broker ${cluster.broker.url} (pid ${cluster.broker.pid}); hub NTP on 127.0.0.1:${cluster.ntpPort}${wifi ? ' behind the Wi-Fi relay' : ''}; ${nodes} ${layout === 'swarm' ? 'nodes' : 'node processes'}:`);
      if (layout === 'swarm') {
        say(`  swarm layout: ${cluster.swarms.length} 'lockstep swarm' processes of up to ${DEFAULT_NODES_PER_PROCESS} nodes (pids ${cluster.swarms.map((c) => c.pid).join(' ')});`);
        say(`  each node has its own MQTT connection, NTP client (from 127.77.x.y), simulated clock and LED; no spin, so fires are ms late`);
      }
      for (const n of cluster.nodes) say(`  ${n.id}  pid ${n.child.pid}  clock off by ${n.offsetSeconds >= 0 ? '+' : ''}${n.offsetSeconds.toFixed(3)} s, drifting ${n.driftPpm >= 0 ? '+' : ''}${n.driftPpm} ppm`);
      const settleMs = Number(durationNsOption('settle', values.settle ?? '0s') / 1_000_000n);
      if (settleMs > 0) {
        say(`letting the NTP filters settle for ${settleMs / 1000} s`);
        await new Promise((r) => setTimeout(r, settleMs));
      }
      if (photoDir) {
        const action: CaptureAction = { kind: 'capture', mode, name: 'demo', ...(mode === 'stream' ? { fps: 60 } : {}), ...(values['phase-lock'] ? { phaseLock: true } : {}) };
        say(`${photos} photos, ${describeAction(action)}, into ${photoDir}`);
        const runs = await runPhotos(cluster, { action, count: photos, truthFile: process.env.STANDIN_SENSOR_TRUTH!, readyWithinNs, progress: say });
        if (interrupted) return 130;
        if (values.json) process.stdout.write(JSON.stringify({ nodes, mode, photoDir, runs: runs.map((r) => ({ ...resultJson(r.result), photos: r.nodes, trueSpreadNs: r.trueSpreadNs ?? null })) }) + '\n');
        else printPhotos(runs, photoDir, (s) => process.stdout.write(s));
        if (dashboard && !interrupted) {
          process.stderr.write(`\nthe hub and the nodes keep running for the page at ${dashboard.url} (Ctrl-C stops everything)\n`);
          await new Promise<never>(() => undefined); // the signal handler stops the cluster and exits
        }
        return runs.every((r) => r.nodes.every((n) => n.exposureErrorNs !== undefined)) ? 0 : EXIT_FAILURE;
      }
      const result = await cluster.coordinator!.run({
        action: { kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: blinks },
        // A thousand swarm nodes on two cores take seconds to receive and ack a trigger: give them the lead (and the reports time).
        inNs: layout === 'swarm' ? BigInt(Math.max(1_000, 2 * nodes)) * 1_000_000n : 1_000_000_000n,
        ...(layout === 'swarm' ? { collectGraceMs: Math.max(5_000, 10 * nodes) } : {}),
        readyWithinNs,
        readyTimeoutMs: layout === 'swarm' ? 120_000 : 60_000,
        minNodes: nodes,
        progress: say,
      });
      if (interrupted) return 130;
      // Per blink: the true spread of the on-edges across nodes.
      const onEdges = result.edges.filter((e) => e.level === 1);
      if (values.json) {
        process.stdout.write(JSON.stringify({ nodes, wifi, seconds: (Date.now() - t0) / 1000, ...resultJson(result) }) + '\n');
      } else {
        printResult(result, (s) => process.stdout.write(s));
        // Two different spreads, side by side: what these co-located processes did, and what their clocks agreed on.
        process.stdout.write(`\nper blink, across nodes (LED-on edges):\n`);
        const cells = onEdges.map((e) => [`blink ${String(e.index + 1).padStart(2)}`, e.trueSpreadNs === undefined ? '-' : formatNs(e.trueSpreadNs), e.clockSpreadNs === undefined ? '-' : formatNs(e.clockSpreadNs)]);
        const q = quantiles(onEdges.filter((e) => e.trueSpreadNs !== undefined).map((e) => e.trueSpreadNs!));
        const c = quantiles(onEdges.filter((e) => e.clockSpreadNs !== undefined).map((e) => e.clockSpreadNs!));
        if (q || c) cells.push(['median', q ? formatNs(q.p50) : '-', c ? formatNs(c.p50) : '-'], ['worst', q ? formatNs(q.max) : '-', c ? formatNs(c.max) : '-']);
        const header = ['', `${TRUE_SPREAD_LABEL} (${nodes} ${layout === 'swarm' ? `nodes in ${cluster.swarms.length} processes, no spin,` : 'processes'} on ${cpus().length} cores)`, `${CLOCK_SPREAD_LABEL} (clocks only)`];
        const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
        for (const row of [header, ...cells]) process.stdout.write(`  ${row.map((x, i) => x.padEnd(widths[i]!)).join('   ').trimEnd()}\n`);
        process.stdout.write(
          `\n  true fire spread: when the simulated LEDs really switched; here ${nodes} processes wake at the same instant on ${cpus().length} shared cores.\n` +
            `  clock agreement spread: when each node's corrected clock read the planned instant. With one node per computer\n` +
            `  (a Pi each), expect about this plus each node's own fire latency (tens of µs alone), not the co-located figure.\n`,
        );
        process.stdout.write(`\n(${((Date.now() - t0) / 1000).toFixed(1)} s; a shared 2-core machine makes the worst cases worse than a Pi each running one node)\n`);
      }
      const ok = result.rows.every((r) => r.ack === 'scheduled' && r.fires === blinks);
      if (dashboard && !interrupted) {
        process.stderr.write(`\nthe hub and the nodes keep running for the page at ${dashboard.url} (Ctrl-C stops everything)\n`);
        await new Promise<never>(() => undefined); // the signal handler stops the cluster and exits
      }
      return ok ? 0 : EXIT_FAILURE;
    } catch (error) {
      if (error instanceof NotReadyError) {
        process.stderr.write(`lockstep demo: ${error.message}\n`);
        return EXIT_FAILURE;
      }
      throw error;
    } finally {
      if (!interrupted) await stopCluster();
      // Kept until here: a signal during the final stop is handled like any other.
      if (!interrupted) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }
  },
};
