/**
 * `lockstep swarm`: many simulated nodes in one process (src/cli/mesh/swarm.ts),
 * for measuring the hub, the broker and the coordinator at scale. `lockstep
 * demo --nodes N` starts several of these for large N.
 */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption, durationNsOption } from '../args.js';
import { UsageError } from '../errors.js';
import { MQTT_OPTIONS, MQTT_HELP, mqttFrom, topicsFrom } from '../mesh/options.js';
import { ntpServersFromArgs } from '../ntp-servers.js';
import { Swarm } from '../mesh/swarm.js';

const help = `usage: lockstep swarm --ntp HOST:PORT --count N [--first I] [--total N] [options]

Runs N simulated mesh nodes in this one process, each with its own MQTT
connection, its own NTP client (from its own loopback address 127.77.x.y),
its own simulated clock and simulated LED. For measuring the control plane
(hub, broker, coordinator) with hundreds of nodes on one machine: fires are
not precise here (no spin; a hundred nodes share one event loop), and the
nodes keep no state file. One node per computer is 'lockstep node'.

  --ntp HOST:PORT        the hub's NTP server
  --count N              nodes in this process (default 100)
  --first I              index of the first (ids node<I+1>..., default 0)
  --total N              nodes in the whole group, for ids and the spread of clock offsets (default count)
  --max-offset SECONDS   simulated clocks off by up to ± this (default 5)
  --max-drift PPM        and drifting up to ± this (default 100)
  --min-poll SECONDS     NTP poll interval once started (default 1; lockstep node starts at 1/16 s, but a
                         thousand nodes at that rate ask 16,000 requests/s of one hub, all of this
                         2-core machine: the swarm measures the control plane, not the first minute)
  --max-poll SECONDS     longest NTP poll interval (default 8, as lockstep node)
  --state-period DUR     longest interval between two state messages of a node (default 5s)
  --shared-address       all nodes send NTP from one address (the rate limiter then sees one client)
  --exit-with-stdin      stop when stdin closes (the parent died)
  --quiet                no log lines
${MQTT_HELP}

Prints one line 'swarm ready: N nodes' on stdout once every node started.`;

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      ...MQTT_OPTIONS,
      ntp: { type: 'string' },
      count: { type: 'string' },
      first: { type: 'string' },
      total: { type: 'string' },
      'max-offset': { type: 'string' },
      'max-drift': { type: 'string' },
      'min-poll': { type: 'string' },
      'max-poll': { type: 'string' },
      'state-period': { type: 'string' },
      'shared-address': { type: 'boolean' },
      'exit-with-stdin': { type: 'boolean' },
      quiet: { type: 'boolean' },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    if (!values.ntp) throw new UsageError('--ntp HOST:PORT (the hub) is required');
    const { servers } = await ntpServersFromArgs([values.ntp], { resolve: false });
    const ntp = servers[0]!;
    const count = values.count ? numberOption('count', values.count, { min: 1, max: 5000, integer: true }) : 100;
    const first = values.first ? numberOption('first', values.first, { min: 0, max: 1e6, integer: true }) : 0;
    const total = values.total ? numberOption('total', values.total, { min: first + count, max: 1e6, integer: true }) : first + count;
    const minPoll = values['min-poll'] ? numberOption('min-poll', values['min-poll'], { min: 1 / 64, max: 1024 }) : 1;
    const maxPoll = values['max-poll'] ? numberOption('max-poll', values['max-poll'], { min: minPoll, max: 131072 }) : Math.max(8, minPoll);
    const topics = topicsFrom(values);
    const swarm = new Swarm({
      mqtt: mqttFrom(values),
      prefix: topics.prefix,
      ntp,
      first,
      count,
      total,
      maxOffsetSeconds: values['max-offset'] ? numberOption('max-offset', values['max-offset'], { min: 0, max: 1e6 }) : 5,
      maxDriftPpm: values['max-drift'] ? numberOption('max-drift', values['max-drift'], { min: 0, max: 500 }) : 100,
      minPollSeconds: minPoll,
      maxPollSeconds: maxPoll,
      ...(values['state-period'] ? { statePeriodMs: Number(durationNsOption('state-period', values['state-period']) / 1_000_000n) } : {}),
      ownAddresses: !values['shared-address'],
      log: values.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
    });
    // Watched from the start: a parent that dies while a hundred nodes are still connecting must not leave them behind.
    const stop = new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
      if (values['exit-with-stdin']) {
        process.stdin.on('end', () => resolve());
        process.stdin.on('error', () => resolve());
        process.stdin.resume();
      }
    });
    let stopping = false;
    void stop.then(() => (stopping = true));
    await Promise.race([swarm.start(), stop]);
    if (!stopping) process.stdout.write(`swarm ready: ${swarm.size} nodes\n`);
    await stop;
    if (values['exit-with-stdin']) process.stdin.destroy();
    await swarm.stop();
    return 0;
  },
};
