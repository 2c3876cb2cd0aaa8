/**
 * The "network" of the NTP start-up benchmark, in its own process (its own
 * event loop, like a real network in between): NTP servers and one Wi-Fi-like
 * relay per run, so no run's queue is another's.
 *
 *   node ntp-startup-network.js '<json config>'
 *
 * prints one JSON line with the ports, then serves until stdin closes.
 *
 * The relays deliver on the timer alone (up to ~1 ms late, more jitter):
 * forty precise relays would keep a core spinning and delay every client
 * on this 2-core machine far more than that.
 *
 * Our clients run on simulated clocks against a server on the true clock.
 * chronyd runs on this machine's (true) clock and cannot be given a wrong
 * one, so each chronyd run gets a server whose clock is wrong instead (the
 * same ±5 s / ±100 ppm, seen from the other side): the client then has the
 * same offset and frequency to learn, and its error is measured against that
 * server's time.
 */
import { NtpServer } from '../../src/ntp/server.js';
import { UdpRelay } from '../../src/ntp/relay.js';
import { Timescale } from '../../src/time/timescale.js';
import { SimulatedClock, RealClock } from '../../src/time/clock.js';

export interface NetworkConfig {
  delayMs: number;
  jitterMeanMs: number;
  lossRate: number;
  /** One relay each to the true-time server. */
  oursSeeds: number[];
  /** One wrong-clock server and one relay to it each. */
  chronyd: Array<{ seed: number; offsetSeconds: number; driftPpm: number }>;
  /**
   * The bench's anchor of the real clock (decimal ns): every process must
   * agree on "true time" to the ns, and anchoring anew on a loaded machine
   * can be tens of µs off.
   */
  anchor: { epochNs: string; hrtimeNs: string };
}

export interface NetworkPorts {
  truePort: number;
  oursRelayPorts: number[];
  chronyd: Array<{ serverPort: number; relayPort: number }>;
}

async function serve(timescale: Timescale): Promise<number> {
  // No rate limit: a benchmark's polls are its own business; no receive-latency probe for 20 servers.
  const server = new NtpServer({ timescale, port: 0, bind: '127.0.0.1', rateLimit: false, compensateReceiveLatency: false });
  const { port } = await server.start();
  stoppers.push(() => server.stop());
  return port;
}

const stoppers: Array<() => Promise<unknown>> = [];

async function relay(targetPort: number, seed: number, c: NetworkConfig): Promise<number> {
  const r = new UdpRelay({ targetHost: '127.0.0.1', targetPort, delayMs: c.delayMs, jitterMeanMs: c.jitterMeanMs, lossRate: c.lossRate, seed });
  const { port } = await r.start();
  stoppers.push(() => r.stop());
  return port;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2]!) as NetworkConfig;
  const real = new RealClock({ epochNs: BigInt(config.anchor.epochNs), hrtimeNs: BigInt(config.anchor.hrtimeNs) });
  const truth = new Timescale(real, { trustRawClock: { errorBoundNs: 0 } });
  const truePort = await serve(truth);
  const oursRelayPorts: number[] = [];
  for (const seed of config.oursSeeds) oursRelayPorts.push(await relay(truePort, seed, config));
  const chronyd: NetworkPorts['chronyd'] = [];
  for (const c of config.chronyd) {
    // The server's clock reads true + offset + drift: for the client that is a clock off by −offset, −drift.
    const wrong = new Timescale(new SimulatedClock({ offsetSeconds: c.offsetSeconds, driftPpm: c.driftPpm, truth: real }), { trustRawClock: { errorBoundNs: 0 } });
    const serverPort = await serve(wrong);
    chronyd.push({ serverPort, relayPort: await relay(serverPort, c.seed, config) });
  }
  const ports: NetworkPorts = { truePort, oursRelayPorts, chronyd };
  process.stdout.write(JSON.stringify(ports) + '\n');
  process.stdin.on('end', () => void Promise.all(stoppers.map((s) => s())).then(() => process.exit(0)));
  process.stdin.resume();
}

void main();
