/**
 * `lockstep hub`: the long-running side of the mesh. Serves time to the
 * nodes (embedded NTP server) and watches the group: presence and sync
 * quality from the nodes' retained states. Triggers come from
 * `lockstep trigger`, which talks to the broker itself, or, with --http and
 * a token, from the hub's page (through the same Coordinator).
 */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption, durationNsOption } from '../args.js';
import { UsageError } from '../errors.js';
import { MQTT_OPTIONS, MQTT_HELP, mqttFrom, topicsFrom, keysFrom } from '../mesh/options.js';
import { openServedClock } from '../served-clock.js';
import { loadKeyFile } from '../../ntp/auth.js';
import { MeshHub } from '../../mesh/hub.js';
import { formatNs } from '../../mesh/readiness.js';
import type { NodeView } from '../../mesh/presence.js';
import { startDashboard, httpAddress, readTokenFile, DEFAULT_HTTP } from '../mesh/dashboard.js';

const help = `usage: lockstep hub [--ntp-port 123] [--allow CIDR]... [--http [HOST:PORT] [--http-token-file FILE]] [options]

Serves time to the nodes (NTP on --ntp-port) and prints the group's nodes as
their state changes: online/offline, synchronized, offset, error bound.
Send triggers with 'lockstep trigger' (any machine that reaches the broker).

  --ntp-port PORT        NTP port (default 123: needs root or CAP_NET_BIND_SERVICE; try 12300)
  --ntp-bind ADDR        address to answer on (default all)
  --allow CIDR           NTP clients allowed (repeatable; default everyone)
  --ntp-keys FILE        NTP symmetric keys (chrony's keyfile format)
  --no-ntp               do not serve time (the nodes use another server)
  --system-error DUR     error bound declared for this machine's clock when no local chronyd answers
                         'chronyc tracking' (default 1ms); giving it stops asking chronyd. The hub serves
                         the system clock, followed through steps (date -s, chrony's first step at boot)
                         and refreshed, so its bound does not grow with uptime. Every node that syncs to
                         the hub inherits this bound; the readiness gate leaves that shared part out
  --json                 one JSON line per node state change on stdout

the page (off unless --http is given):
  --http [HOST:PORT]     serve the live page and its JSON API (default ${DEFAULT_HTTP}; 0.0.0.0:8080 for the LAN,
                         behind a TLS reverse proxy beyond it)
  --http-token-file FILE the page may fire, cancel and identify with this secret (one line, ≥ 16 characters),
                         sent as Authorization: Bearer TOKEN; without it the page is read-only
  --ready-within DUR     the page's readiness threshold (counts, gate; default 1ms)
  --key-id ID            sign the page's triggers with this key from --keys (default the first)
${MQTT_HELP}`;

/**
 * 1 ms: what chrony or systemd-timesyncd keep on a LAN, the same assumption as
 * the scheduling commands' system-clock mode. It is shared by every node that
 * syncs to this hub, so the readiness gate (which asks how well the nodes
 * agree) subtracts it instead of needing it to be small.
 */
const DEFAULT_HUB_ERROR_NS = 1_000_000;

export function describeNode(v: NodeView): string {
  const s = v.state;
  if (v.status === 'offline') return `${v.id}: offline`;
  const bound = s.errorBoundNs === null || s.errorBoundNs === undefined ? 'unbounded' : formatNs(s.errorBoundNs);
  const offset = s.offsetNs === undefined ? '?' : formatNs(Number(s.offsetNs));
  return `${v.id}: ${s.synchronized ? 'synchronized' : 'NOT synchronized'}, offset ${offset}, error bound ${bound}, pending ${s.pending ?? 0}`;
}

export const command: Command = {
  help,
  async run(argv) {
    // --http alone (last, or followed by another flag) means the default address.
    argv = argv.map((a, i) => (a === '--http' && (i === argv.length - 1 || argv[i + 1]!.startsWith('-')) ? `--http=${DEFAULT_HTTP}` : a));
    const { values, positionals } = parseCommandArgs(argv, {
      ...MQTT_OPTIONS,
      'ntp-port': { type: 'string' },
      'ntp-bind': { type: 'string' },
      allow: { type: 'string', multiple: true },
      'ntp-keys': { type: 'string' },
      'no-ntp': { type: 'boolean' },
      'system-error': { type: 'string' },
      json: { type: 'boolean' },
      http: { type: 'string' },
      'http-token-file': { type: 'string' },
      'ready-within': { type: 'string' },
      'key-id': { type: 'string' },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const topics = topicsFrom(values);
    const mqtt = mqttFrom(values);
    const port = values['ntp-port'] ? numberOption('ntp-port', values['ntp-port'], { min: 1, max: 65535, integer: true }) : 123;
    let ntpKeys;
    if (values['ntp-keys']) {
      try {
        ntpKeys = await loadKeyFile(values['ntp-keys']);
      } catch (error) {
        throw new UsageError(`--ntp-keys: ${(error as Error).message}`);
      }
    }
    const http = values.http !== undefined ? httpAddress(values.http) : undefined;
    if (values['http-token-file'] && !http) throw new UsageError('--http-token-file needs --http');
    const token = values['http-token-file'] ? readTokenFile(values['http-token-file']) : undefined;
    const gateThresholdNs = Number(durationNsOption('ready-within', values['ready-within'] ?? '1ms'));
    const keys = keysFrom(values);
    if (values['key-id'] && !keys?.get(values['key-id'])) throw new UsageError(`--key-id ${values['key-id']}: no such key in --keys`);
    const systemErrorNs = values['system-error'] ? Number(durationNsOption('system-error', values['system-error'])) : DEFAULT_HUB_ERROR_NS;
    // Our time: the system clock followed through steps and refreshed (served-clock.ts), as serve-time does.
    const served = await openServedClock({ errorBoundNs: systemErrorNs, useChrony: values['system-error'] === undefined });
    const { timescale } = served;
    let lastLine = new Map<string, string>();
    const hub = new MeshHub({
      topics,
      mqtt,
      timescale,
      ntp: values['no-ntp'] ? undefined : { port, bind: values['ntp-bind'], allow: values.allow, keys: ntpKeys, upstream: served.upstream },
      // The page fires through the hub's own coordinator only when it may (a token); otherwise it only watches.
      watchTriggers: !!http,
      ...(token ? { control: { keys, keyId: values['key-id'] ?? keys?.ids()[0] } } : {}),
      onNode: (view) => {
        if (values.json) {
          process.stdout.write(JSON.stringify(view.state, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
          return;
        }
        // Print changes, not every periodic refresh: round the bound so jitter is not a change.
        const line = describeNode(view).replace(/(\d+)\.\d+ (ns|µs)/g, '$1 $2');
        if (lastLine.get(view.id) !== line) process.stdout.write(`${new Date().toISOString()} ${describeNode(view)}\n`);
        lastLine.set(view.id, line);
      },
    });
    try {
      await hub.start();
    } catch (error) {
      await served.stop();
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EACCES') throw new UsageError(`NTP port ${port} needs privilege: use --ntp-port 12300 (nodes: --ntp HUB:12300) or grant CAP_NET_BIND_SERVICE`);
      if (code === 'EADDRINUSE') throw new UsageError(`NTP port ${port} is in use (chronyd or ntpd?): stop it, or use --ntp-port`);
      throw error;
    }
    process.stderr.write(`lockstep hub: ${hub.ntpAddress ? `serving ${served.describe()} on ${hub.ntpAddress.address}:${hub.ntpAddress.port}, ` : ''}watching ${topics.prefix}/ on ${(mqtt.servers ?? [mqtt.url]).join(' or ')}\n`);
    let dashboard: Awaited<ReturnType<typeof startDashboard>> | undefined;
    if (http) {
      try {
        dashboard = await startDashboard({ hub, timescale, brokerUrl: mqtt.url, gateThresholdNs, token, ...http });
      } catch (error) {
        await hub.stop();
        await served.stop();
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE') throw new UsageError(`--http ${values.http}: the port is in use`);
        if (code === 'EACCES') throw new UsageError(`--http ${values.http}: the port needs privilege (use one above 1023)`);
        if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`--http ${values.http}: no such local address`);
        throw error;
      }
      process.stderr.write(`lockstep hub: page on ${dashboard.url} (${token ? 'controls need the token' : 'read-only: no --http-token-file'})\n`);
    }
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    lastLine = new Map();
    await dashboard?.stop();
    await hub.stop();
    await served.stop();
    return 0;
  },
};
