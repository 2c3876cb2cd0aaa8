/**
 * The floor under the scale benchmark's "trigger published → all acks": bare
 * MQTT clients that answer a trigger with an ack-sized message and do
 * nothing else (no NTP, no clock, no checks, no scheduling). Run as a child
 * process: `node scale-echo.js URL PREFIX FIRST COUNT`; prints 'ready' once
 * every client has subscribed. The same layout as the swarm (100 connections
 * per process, mqtt.js, QoS 1 both ways), so what is left between the two is
 * lockstep's own work.
 */
import mqtt from 'mqtt';

const [url, prefix, firstArg, countArg] = process.argv.slice(2) as [string, string, string, string];
const first = Number(firstArg);
const count = Number(countArg);
/** About a real ack's size (lockstep's acks are 300–420 B). */
const ACK = Buffer.alloc(400, 'a');

const clients = Array.from({ length: count }, (_, k) => {
  const id = `echo${first + k}`;
  const c = mqtt.connect(url, { clientId: id, protocolVersion: 5, clean: true, reconnectPeriod: 500 });
  c.on('message', () => c.publish(`${prefix}/nodes/${id}/ack`, ACK, { qos: 1 }));
  c.on('error', () => undefined);
  return new Promise<void>((resolve) => c.once('connect', () => c.subscribe(`${prefix}/trigger`, { qos: 1 }, () => resolve())));
});
await Promise.all(clients);
process.stdout.write('ready\n');
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
