/**
 * The body of NtpServerThread (server-thread.ts): an NtpServer in a worker
 * thread of its own, answering with a mirror of the main thread's Timescale.
 * Its event loop does nothing else, so a stall of the main one (a thousand
 * nodes' acks, a trigger's fan-out) cannot sit between a request's arrival
 * and the reading of its receive timestamp.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { RealClock } from '../time/clock.js';
import { Timescale } from '../time/timescale.js';
import { NtpServer, type UpstreamInfo } from './server.js';
import type { SymmetricKey } from './auth.js';
import type { ServerThreadData, ToWorker, FromWorker } from './server-thread.js';

const data = workerData as ServerThreadData;
const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

const timescale = Timescale.mirror(new RealClock(data.anchor), data.model);
let upstream: UpstreamInfo | undefined = data.upstream;
// Structured cloning turns a Buffer into a plain Uint8Array: the MAC code wants Buffers.
const keys = data.options.keys
  ? new Map<number, SymmetricKey>([...data.options.keys].map(([id, k]) => [id, { ...k, key: Buffer.from(k.key.buffer, k.key.byteOffset, k.key.byteLength) }]))
  : undefined;
const server = new NtpServer({ ...data.options, ...(keys ? { keys } : {}), timescale, ...(data.hasUpstream ? { upstream: () => upstream } : {}) });

const report = () => post({ type: 'stats', stats: server.stats(), reference: server.running ? server.reference() : undefined, trackedClients: server.trackedClients });
let timer: NodeJS.Timeout | undefined;

port.on('message', (m: ToWorker) => {
  if (m.type === 'model') timescale.adopt(m.model);
  else if (m.type === 'upstream') upstream = m.upstream;
  else if (m.type === 'stats') report();
  else if (m.type === 'stop') {
    clearInterval(timer);
    void server.stop().then(() => {
      report();
      post({ type: 'stopped' });
      port.close();
    });
  }
});

server.start().then(
  (address) => {
    report(); // first, so the thread's reference() answers as soon as start() resolves
    post({ type: 'listening', address });
    timer = setInterval(report, data.statsIntervalMs);
  },
  (error: Error & { reason?: string; code?: string }) => post({ type: 'error', reason: error.reason ?? error.message, ...(error.code ? { code: error.code } : {}) }),
);
