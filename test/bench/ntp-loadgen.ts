/**
 * Load generator for the NTP server benchmark, run as a SEPARATE process
 * (node ntp-loadgen.js HOST PORT SECONDS [WINDOW] [MAX_REQUESTS] [RATE]) so
 * that the server's event loop is not shared with its load.
 *
 * Closed loop (RATE 0) with a bounded window: at most WINDOW requests are in
 * flight; each reply releases one more. A refill every REFILL_MS replaces
 * requests that got no reply (drops), so the load never stalls and never runs
 * away. Open loop (RATE > 0): RATE requests per second, paced every
 * millisecond whatever the replies. Bounded in time (SECONDS) and in count
 * (MAX_REQUESTS). Prints one JSON line: { sent, received, valid, seconds,
 * sendingSeconds }: `seconds` is the whole run, `sendingSeconds` the window the
 * requests were sent in (from the first pacing origin to the last send), which
 * is what a rate of replies must be divided by: each valid reply answers a
 * request sent in it. Paced, that window holds exactly RATE × window requests.
 */
import { createSocket } from 'node:dgram';

const [host = '127.0.0.1', portText = '123', secondsText = '5', windowText = '128', maxText = '2000000', rateText = '0'] = process.argv.slice(2);
const rate = Number(rateText);
/** Open loop: never more than this many requests in one pacing tick (after a stall), so a pause cannot become a burst. */
const MAX_PER_TICK = 200;
const port = Number(portText);
const durationMs = Number(secondsText) * 1000;
const window = Number(windowText);
const maxRequests = Number(maxText);
/** Lost requests are replaced this often. */
const REFILL_MS = 20;

const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
const template = Buffer.alloc(48);
template[0] = (4 << 3) | 3; // NTPv4, client mode

let sent = 0;
let received = 0;
let valid = 0;
let inFlight = 0;
let running = true;
const start = process.hrtime.bigint();
/** Set once the socket is bound: the pacing origin, and where the sending window starts. */
let sendStart = start;
/** The last instant up to which everything due has been sent (paced), or when sending stopped (closed loop). */
let sendEnd = start;
let lastProgress = 0;

function sendOne(): void {
  if (!running || sent >= maxRequests) return;
  const buf = Buffer.from(template);
  buf.writeUInt32BE(sent >>> 0, 40); // transmit: a sequence number, echoed as origin
  buf.writeUInt32BE(0x5a5a5a5a, 44);
  socket.send(buf, port, host);
  sent++;
  inFlight++;
}

socket.on('message', (msg) => {
  received++;
  inFlight = Math.max(0, inFlight - 1);
  if (msg.length === 48 && (msg[0]! & 7) === 4 && msg.readUInt32BE(28) === 0x5a5a5a5a) valid++;
  if (rate === 0) sendOne();
});

socket.bind(0, () => {
  try {
    socket.setRecvBufferSize(1 << 20);
  } catch {
    /* kernel limit */
  }
  let refill: NodeJS.Timeout;
  sendStart = process.hrtime.bigint();
  if (rate > 0) {
    refill = setInterval(() => {
      const now = process.hrtime.bigint();
      const due = Math.floor((rate * Number(now - sendStart)) / 1e9);
      for (let n = 0; sent < due && n < MAX_PER_TICK; n++) sendOne();
      // Behind schedule (capped tick), the window ends where we last caught up: the rate shows the lag.
      if (sent >= due) sendEnd = now;
    }, 1);
  } else {
    for (let i = 0; i < window; i++) sendOne();
    refill = setInterval(() => {
      if (received === lastProgress) inFlight = 0; // everything outstanding is lost: start a new window
      lastProgress = received;
      while (inFlight < window && running && sent < maxRequests) sendOne();
    }, REFILL_MS);
  }
  setTimeout(() => {
    running = false;
    clearInterval(refill);
    const stopped = process.hrtime.bigint();
    if (rate === 0) sendEnd = stopped;
    const seconds = Number(stopped - start) / 1e9;
    const sendingSeconds = Number(sendEnd - sendStart) / 1e9;
    // Let the last replies land before reporting.
    setTimeout(() => {
      process.stdout.write(JSON.stringify({ sent, received, valid, seconds, sendingSeconds }) + '\n');
      socket.close();
    }, 100);
  }, durationMs);
});
