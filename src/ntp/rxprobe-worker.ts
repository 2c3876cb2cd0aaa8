/**
 * Worker thread of the receive-latency probe (see rxlatency.ts): sends the
 * server a small stamped datagram at a steady pace. It lives on its own thread
 * (own event loop) so the main thread has to be woken for each probe exactly
 * as it is for a client's request.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createSocket } from 'node:dgram';

interface ProbeConfig {
  host: string;
  port: number;
  secret: Buffer | Uint8Array;
  intervalMs: number;
  length: number;
}

const config = workerData as ProbeConfig;
const secret = Buffer.from(config.secret);
const socket = createSocket(config.host.includes(':') ? 'udp6' : 'udp4');
socket.on('error', () => undefined);
socket.bind(0, config.host, () => {
  socket.connect(config.port, config.host, () => {
    parentPort?.postMessage({ port: socket.address().port });
    // Each probe carries its sequence number, the stamp read just before send() and
    // the stamp read just after the previous probe's send() returned: on a connected
    // socket the send(2) happens inside send(), so the middle of the two brackets
    // the instant the datagram reached the server's socket (loopback delivers inline).
    let seq = 0;
    let previousAfter = 0n;
    const timer = setInterval(() => {
      const buf = Buffer.alloc(config.length);
      secret.copy(buf, 0);
      buf.writeUInt32BE(seq++ >>> 0, secret.length);
      buf.writeBigUInt64BE(previousAfter, secret.length + 12);
      buf.writeBigUInt64BE(process.hrtime.bigint(), secret.length + 4); // shared monotonic clock: same across threads
      socket.send(buf);
      previousAfter = process.hrtime.bigint();
    }, config.intervalMs);
    parentPort?.on('message', (msg) => {
      if (msg === 'stop') {
        clearInterval(timer);
        socket.close();
        parentPort?.close();
      }
    });
  });
});
