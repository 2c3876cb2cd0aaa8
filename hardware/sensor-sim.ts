/**
 * A simulated camera sensor behind the rpicam-apps command lines lockstep
 * uses, so every camera mode can be tested end to end and the demo can take
 * "photos" without a camera. Run as `node sensor-sim.js rpicam-vid ARGS...`
 * (installSensorStandIns() writes `rpicam-still` and `rpicam-vid` wrappers on
 * a PATH directory). It behaves like the real stack where lockstep depends on
 * it (CAMERA-NOTES.md):
 *
 * - frames on a fixed grid of CLOCK_MONOTONIC: frame k starts its readout
 *   (SensorTimestamp) at phase + k·period; its first row was exposed for
 *   the --shutter time before that, row r ends r line times later;
 * - each frame reaches the application a readout plus an ISP latency after
 *   its SensorTimestamp (the pipeline depth);
 * - rpicam-still --signal --zsl looks at a signal once per delivered frame
 *   and then saves the NEXT delivered frame, whose exposure may have begun
 *   before the signal; SIGUSR2 exits;
 * - rpicam-vid --segment 1 writes one file per frame (-o pattern with %d);
 * - `--metadata - --metadata-format json` prints rpicam's shapes on stdout:
 *   bare objects per still, one array of per-frame objects for video;
 * - frame lengths are whole lines: the period is 1/fps rounded to the line
 *   time, off by the sensor crystal's ppm (STANDIN_SENSOR_PPM);
 * - rpicam-vid --sync client (rpicam-apps ≥ 1.6, libcamera's rpi.sync): joins
 *   the multicast group and port of the --tuning-file's rpi.sync block,
 *   takes the latest server message at each frame, and shortens (or
 *   lengthens) ONE frame, three frames on, by its FrameWallClock's distance
 *   from the server's nearest frame (whole lines, not below the mode's
 *   minimum frame length, nothing under min_adjustment), as sync.cpp does;
 *   no frame is output before SyncReady (wall clock past the server's ready
 *   time);
 * - trigger mode (an IMX296 with trigger_mode=1, XTR wired to a GPIO that
 *   the gpioset stand-in drives, STANDIN_SENSOR_TRIGGER_LINE): no frames of
 *   its own; each low pulse on XTR is one exposure lasting the low time +
 *   14.26 µs, read out right after; no pulse, no frame, and libcamera's
 *   timeout complains unless a pipeline config file raises it.
 *
 * The truth (every output frame's exposure on CLOCK_MONOTONIC) is appended
 * to STANDIN_SENSOR_TRUTH as JSON lines, for tests and benchmarks to judge
 * what lockstep reports. Settings and failures come from STANDIN_SENSOR_*
 * environment variables (see SETTINGS below), so a CLI can be asked for them.
 */
import { appendFileSync, chmodSync, closeSync, existsSync, openSync, readFileSync, readSync, watch, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSocket } from 'node:dgram';
import { XTR_EXTRA_NS } from './camera-metadata.js';
import { decodeSyncPayload, readSyncTuning, type SyncPayload } from './camera-phase-lock.js';
import { realtimeMinusMonotonicNs } from '../src/schedule/actuator.js';

export { XTR_EXTRA_NS };

/** Environment variables the simulator reads (all optional). */
export const SETTINGS = {
  /** Frame grid phase, ns in [0, period) on CLOCK_MONOTONIC (random by default). */
  phase: 'STANDIN_SENSOR_PHASE_NS',
  /** Viewfinder/ZSL frame rate for rpicam-still (rpicam-vid takes --framerate). */
  fps: 'STANDIN_SENSOR_FPS',
  /** Line time, ns, and rows read out (rolling shutter skew = (rows − 1) × line time). */
  lineNs: 'STANDIN_SENSOR_LINE_NS',
  rows: 'STANDIN_SENSOR_ROWS',
  /** Delay from the end of readout to the application (ISP + queue), ns. */
  ispNs: 'STANDIN_SENSOR_ISP_NS',
  /** Frame-start interrupt after the end of the first row's exposure, ns (δ: black/embedded lines + IRQ). */
  fsDelayNs: 'STANDIN_SENSOR_FS_DELAY_NS',
  /** Time from start to the first frame, ms. */
  startupMs: 'STANDIN_SENSOR_STARTUP_MS',
  /** JSON-lines file the truth is appended to. */
  truth: 'STANDIN_SENSOR_TRUTH',
  /** Comma-separated metadata keys to leave out (a version without them). */
  omit: 'STANDIN_SENSOR_OMIT',
  /** Exit with a frontend error this long after start, ms (a camera that dies). */
  dieAfterMs: 'STANDIN_SENSOR_DIE_AFTER_MS',
  /** Trigger mode: the GPIO line (as gpioset names it: 17 or GPIO17) wired to XTR. */
  triggerLine: 'STANDIN_SENSOR_TRIGGER_LINE',
  /** Size of each frame file, bytes. */
  frameBytes: 'STANDIN_SENSOR_FRAME_BYTES',
  /** 0: --help lists no --metadata (a version before it). */
  metadata: 'STANDIN_SENSOR_METADATA',
  /** Sensor crystal error, ppm: a number, or random:N for uniform in ±N per process. */
  ppm: 'STANDIN_SENSOR_PPM',
  /** The sensor mode's shortest frame, µs: how far a sync correction can shorten one frame. */
  minFrameUs: 'STANDIN_SENSOR_MIN_FRAME_US',
  /** 0: --help lists no --sync (rpicam-apps before 1.6). */
  sync: 'STANDIN_SENSOR_SYNC',
  /** --sync client joins the group on this interface address (tests: 127.0.0.1); INADDR_ANY like libcamera by default. */
  syncJoin: 'STANDIN_SENSOR_SYNC_JOIN',
} as const;

const NS_PER_S = 1_000_000_000;
/** Camera Module 3 at 2304×1296 (CAMERA-NOTES.md §5): 13.36 µs per line, 1296 rows. */
const DEFAULT_LINE_NS = 13_360;
const DEFAULT_ROWS = 1296;
const DEFAULT_ISP_NS = 4_000_000;
const DEFAULT_STARTUP_MS = 300;
const DEFAULT_STILL_FPS = 30;
const DEFAULT_SHUTTER_US = 10_000;
/** libcamera's dequeue watchdog: max(1 s, 5 frames), unless camera_timeout_value_ms says otherwise. */
const MIN_CAMERA_TIMEOUT_MS = 1000;
/**
 * Trigger mode reads the XTR line's log when it changes (inotify), and at
 * least this often: the edges carry their own stamps, so noticing them late
 * only delays the frame's delivery. (It polled every 1 ms before: ten
 * stand-ins then burnt half a core at the very instant ten nodes fired.)
 */
const XTR_POLL_MS = 50;
/**
 * ...and reads it this long after a change, not at once: a real sensor takes
 * no CPU of the Pi at the edge, but the stand-in woke at the pulse's falling
 * edge and took the CPU from the node that was spinning its pulse (the
 * exposure), on a 2-core machine shared by ten nodes and ten stand-ins.
 */
const XTR_NOTICE_DELAY_MS = 10;
/** The CM3's 1536×864p120 mode: a frame at 60 fps can be shortened by up to half. */
const DEFAULT_MIN_FRAME_US = 8_333;
/** A sync correction computed on frame n changes the length of frame n + this (the frame-length control's delay). */
const SYNC_APPLY_DELAY_FRAMES = 3;

type Personality = 'rpicam-still' | 'rpicam-vid';

interface Frame {
  k: number;
  sensorTimestampNs: bigint;
  exposureNs: number;
  /** For trigger frames: the true exposure start (the falling XTR edge). */
  startNs?: bigint;
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function numberEnv(name: string, fallback: number): number {
  const v = env(name);
  return v === undefined ? fallback : Number(v);
}

function option(args: string[], ...names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    for (const name of names) {
      if (args[i] === name) return args[i + 1];
      if (args[i]!.startsWith(`${name}=`)) return args[i]!.slice(name.length + 1);
    }
  }
  return undefined;
}

const HELP: Record<Personality, string[]> = {
  'rpicam-still': ['-h [ --help ]', '-o [ --output ] arg', '-s [ --signal ]', '-t [ --timeout ] arg', '-n [ --nopreview ]', '--zsl', '--shutter arg', '--metadata arg', '--metadata-format arg'],
  'rpicam-vid': ['-h [ --help ]', '-o [ --output ] arg', '-t [ --timeout ] arg', '-n [ --nopreview ]', '--codec arg', '--segment arg', '--framerate arg', '--shutter arg', '--gain arg', '--awbgains arg', '--metadata arg', '--metadata-format arg', '--sync arg', '--tuning-file arg'],
};

function fileName(pattern: string, n: number): string {
  return pattern.replace(/%0?(\d*)d/, (_m, width: string) => String(n).padStart(Number(width || 0), '0'));
}

/** The camera timeout a pipeline config file sets (camera_timeout_value_ms), if any. */
function configuredTimeoutMs(): number | undefined {
  const file = env('LIBCAMERA_RPI_CONFIG_FILE');
  if (!file || !existsSync(file)) return undefined;
  const m = /camera_timeout_value_ms"?\s*:\s*(\d+)/.exec(readFileSync(file, 'utf8'));
  return m ? Number(m[1]) : undefined;
}

export function main(argv: string[]): void {
  const personality = argv[0] as Personality;
  const args = argv.slice(1);
  if (personality !== 'rpicam-still' && personality !== 'rpicam-vid') {
    console.error(`sensor-sim: run as rpicam-still or rpicam-vid, not ${personality}`);
    process.exit(2);
  }
  if (args[0] === '--help' || args[0] === '-h') {
    const lines = HELP[personality].filter((l) => (env(SETTINGS.metadata) !== '0' || !l.includes('--metadata')) && (env(SETTINGS.sync) !== '0' || !l.includes('--sync')));
    console.log(`Valid options are:\n  ${lines.join('\n  ')}`);
    process.exit(0);
  }
  if (args[0] === '--version') {
    console.log('rpicam-apps build: sensor-sim\nlibcamera build: sensor-sim');
    process.exit(0);
  }
  const out = option(args, '-o', '--output');
  if (!out) {
    console.error('ERROR: *** no output file given (-o) ***');
    process.exit(255);
  }
  const fps = personality === 'rpicam-vid' ? Number(option(args, '--framerate') ?? 30) : numberEnv(SETTINGS.fps, DEFAULT_STILL_FPS);
  const lineNs = numberEnv(SETTINGS.lineNs, DEFAULT_LINE_NS);
  const ppmSetting = env(SETTINGS.ppm) ?? '0';
  const ppm = ppmSetting.startsWith('random:') ? (Math.random() * 2 - 1) * Number(ppmSetting.slice(7)) : Number(ppmSetting);
  // Frame length is a whole number of lines; the sensor's crystal makes it a little off in true time.
  const nominalPeriodNs = Math.max(1, Math.round(NS_PER_S / fps / lineNs)) * lineNs;
  const periodNs = Math.round(nominalPeriodNs * (1 + ppm / 1e6));
  const minFrameNs = numberEnv(SETTINGS.minFrameUs, DEFAULT_MIN_FRAME_US) * 1000;
  const shutterUs = Number(option(args, '--shutter') ?? DEFAULT_SHUTTER_US);
  const exposureNs = Math.round(shutterUs * 1000);
  const rows = numberEnv(SETTINGS.rows, DEFAULT_ROWS);
  const readoutNs = Math.round((rows - 1) * lineNs);
  const ispNs = numberEnv(SETTINGS.ispNs, DEFAULT_ISP_NS);
  const fsDelayNs = numberEnv(SETTINGS.fsDelayNs, 0);
  const phaseNs = env(SETTINGS.phase) !== undefined ? Number(env(SETTINGS.phase)) % periodNs : Math.floor(Math.random() * periodNs);
  const truthFile = env(SETTINGS.truth);
  const omit = new Set((env(SETTINGS.omit) ?? '').split(',').filter(Boolean));
  const frameBytes = numberEnv(SETTINGS.frameBytes, 1024);
  const metadataToStdout = option(args, '--metadata') === '-' && (option(args, '--metadata-format') ?? 'json') === 'json';
  const triggerLine = env(SETTINGS.triggerLine);
  const signalMode = personality === 'rpicam-still' && (args.includes('--signal') || args.includes('-s'));
  // What libcamera's ClockRecovery gives: CLOCK_REALTIME at each SensorTimestamp, to about a µs.
  const realMinusMono = realtimeMinusMonotonicNs();
  const startNs = process.hrtime.bigint();
  const syncMode = personality === 'rpicam-vid' ? option(args, '--sync') : undefined;
  if (syncMode !== undefined && syncMode !== 'client' && syncMode !== 'off') {
    console.error(`ERROR: *** sensor-sim models --sync client only, not ${syncMode} ***`);
    process.exit(255);
  }
  const sync = syncMode === 'client' ? syncClient(option(args, '--tuning-file'), nominalPeriodNs, lineNs, minFrameNs) : undefined;

  let outputs = 0; // files written (rpicam-vid: the segment counter; rpicam-still: the capture counter)
  let arrayOpen = false;

  function metadataText(frame: Frame): string {
    const fields: [string, string][] = [
      ['SensorTimestamp', frame.sensorTimestampNs.toString()],
      ['FrameWallClock', (frame.sensorTimestampNs + realMinusMono).toString()],
      ['ExposureTime', String(Math.round(shutterUs))],
      ['FrameDuration', String(Math.round(nominalPeriodNs / 1000))],
      ['AnalogueGain', '1.0'],
      ['DigitalGain', '1.0'],
      ['ColourGains', '[ 1.0, 1.0 ]'],
      ['SensorTemperature', '41.0'],
    ];
    const body = fields.filter(([k]) => !omit.has(k)).map(([k, v]) => `    "${k}": ${v}`).join(',\n');
    return `{\n${body}\n}`;
  }

  function emit(frame: Frame): void {
    const name = fileName(out!, outputs);
    const header = `JPEG stand-in frame ${frame.k} SensorTimestamp ${frame.sensorTimestampNs}\n`;
    try {
      writeFileSync(name, header.padEnd(Math.max(frameBytes, header.length), '.'));
    } catch (error) {
      console.error(`ERROR: *** failed to write output bytes (${(error as NodeJS.ErrnoException).code}: ${name}) ***`);
      finish(255);
      return;
    }
    outputs++;
    if (metadataToStdout) {
      if (personality === 'rpicam-vid') {
        process.stdout.write(arrayOpen ? `,\n${metadataText(frame)}` : `[\n${metadataText(frame)}`);
        arrayOpen = true;
      } else process.stdout.write(metadataText(frame)); // bare, no newline: rpicam-still's shape
    }
    if (truthFile) {
      const end = frame.sensorTimestampNs - BigInt(fsDelayNs);
      const start = frame.startNs ?? end - BigInt(frame.exposureNs);
      const lastEnd = triggerLine ? end : end + BigInt(readoutNs);
      appendFileSync(
        truthFile,
        JSON.stringify({
          personality,
          pid: process.pid,
          file: name,
          frame: frame.k,
          sensorTimestampNs: frame.sensorTimestampNs.toString(),
          exposureStartNs: start.toString(),
          exposureEndNs: end.toString(),
          lastRowStartNs: (lastEnd - (end - start)).toString(),
          lastRowEndNs: lastEnd.toString(),
        }) + '\n',
      );
    }
  }

  let finished = false;
  function finish(code: number): void {
    if (finished) return;
    finished = true;
    if (arrayOpen) process.stdout.write('\n]\n');
    process.stdout.write('', () => process.exit(code));
  }
  process.on('SIGTERM', () => finish(0));
  // A parent that died without stopping us (SIGKILL) must not leave a sensor writing frames forever.
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && finish(0), 500).unref();
  process.on('SIGINT', () => finish(0));
  if (env(SETTINGS.dieAfterMs)) {
    setTimeout(() => {
      console.error('ERROR: *** Camera frontend has timed out! ***');
      finish(255);
    }, Number(env(SETTINGS.dieAfterMs)));
  }

  // rpicam-still --signal: the handler only stores the signal; frames look at it.
  let signalAtNs: bigint | undefined;
  let wantCapture = false;
  if (personality === 'rpicam-still') {
    process.on('SIGUSR1', () => {
      signalAtNs ??= process.hrtime.bigint();
    });
    process.on('SIGUSR2', () => finish(0));
  }

  /** One frame reaching the application. */
  function deliver(frame: Frame, atNs: bigint): void {
    if (personality === 'rpicam-vid') {
      emit(frame);
      return;
    }
    if (!signalMode) return;
    if (wantCapture) {
      wantCapture = false;
      emit(frame); // ZSL: the next completed request after the one that saw the signal
      return;
    }
    if (signalAtNs !== undefined && signalAtNs <= atNs) {
      signalAtNs = undefined;
      wantCapture = true;
    }
  }

  const deliveryDelayNs = BigInt(readoutNs + ispNs);
  const sleepUntil = (atNs: bigint, fn: () => void) => setTimeout(fn, Math.max(0, Number(atNs - process.hrtime.bigint()) / 1e6));

  if (!triggerLine) {
    // Free running: frame k+1 starts its readout one frame length after frame k (a sync client may change one).
    const firstNs = startNs + BigInt(numberEnv(SETTINGS.startupMs, DEFAULT_STARTUP_MS)) * 1_000_000n;
    let k = Math.ceil((Number(firstNs) - phaseNs) / periodNs);
    let fsNs = BigInt(k) * BigInt(periodNs) + BigInt(phaseNs);
    const lengthChange = new Map<number, number>(); // frame index → ns added to the frame after it
    const step = () => {
      if (finished) return;
      const now = process.hrtime.bigint();
      // A late wake-up delivers every frame that is due, in order (none is lost).
      while (fsNs + deliveryDelayNs <= now && !finished) {
        const frame = { k, sensorTimestampNs: fsNs + BigInt(fsDelayNs), exposureNs };
        const wallUs = (frame.sensorTimestampNs + realMinusMono) / 1000n;
        const ready = sync ? sync.process(k, wallUs, lengthChange) : true;
        if (ready) deliver(frame, fsNs + deliveryDelayNs);
        fsNs += BigInt(periodNs + (lengthChange.get(k) ?? 0));
        lengthChange.delete(k);
        k++;
      }
      sleepUntil(fsNs + deliveryDelayNs, step);
    };
    sleepUntil(fsNs + deliveryDelayNs, step);
  } else {
    watchXtr(triggerLine, startNs, periodNs, (frame) => sleepUntil(frame.sensorTimestampNs + deliveryDelayNs, () => !finished && deliver(frame, frame.sensorTimestampNs + deliveryDelayNs)));
  }
  console.error('Made DRM preview window'); // what the real one says at start
  setInterval(() => undefined, 1 << 30);
}

/**
 * libcamera's rpi.sync in client mode (src/ipa/rpi/controller/rpi/sync.cpp),
 * on the stand-in's frames: process() runs once per frame with that frame's
 * wall clock (µs) and returns SyncReady; a correction is booked as a change
 * of one frame's length SYNC_APPLY_DELAY_FRAMES later.
 */
function syncClient(tuningFile: string | undefined, nominalPeriodNs: number, lineNs: number, minFrameNs: number) {
  let tuning = readSyncTuning(undefined);
  if (tuningFile) {
    try {
      tuning = readSyncTuning(JSON.parse(readFileSync(tuningFile, 'utf8')));
    } catch (error) {
      console.error(`ERROR: *** failed to read tuning file ${tuningFile}: ${(error as Error).message} ***`);
      process.exit(255);
    }
  }
  const inbox: SyncPayload[] = [];
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  socket.on('message', (msg) => {
    const p = decodeSyncPayload(msg);
    if (p) inbox.push(p);
  });
  socket.on('error', (error) => console.error(`ERROR: RPiSync: ${error.message}`));
  socket.bind(tuning.port, () => {
    try {
      socket.addMembership(tuning.group, env(SETTINGS.syncJoin));
    } catch (error) {
      console.error(`ERROR: RPiSync: Unable to set socket options (${(error as Error).message})`);
    }
  });
  socket.unref();
  let seenPacket = false;
  let ready = false;
  let frameDurationUs = 0;
  let serverReadyUs = 0n;
  return {
    process(k: number, wallClockUs: bigint, lengthChange: Map<number, number>): boolean {
      let server: bigint | undefined;
      for (const p of inbox.splice(0)) {
        seenPacket = true;
        frameDurationUs = p.frameDurationUs;
        server = p.wallClockFrameTimestampUs;
        serverReadyUs = p.wallClockReadyTimeUs;
      }
      if (server !== undefined && frameDurationUs > 0) {
        const delta = Number(wallClockUs - server);
        const periods = Math.trunc((delta + frameDurationUs / 2) / frameDurationUs); // C: truncation toward zero
        let correctionUs = Math.trunc(delta - periods * frameDurationUs);
        if (Math.abs(correctionUs) < tuning.minAdjustmentUs) correctionUs = 0;
        if (correctionUs !== 0) {
          // Frame lengths are whole lines, and never below the mode's minimum.
          const lines = Math.round((correctionUs * 1000) / lineNs);
          const shortenNs = Math.min(lines * lineNs, nominalPeriodNs - minFrameNs);
          const at = k + SYNC_APPLY_DELAY_FRAMES;
          lengthChange.set(at, (lengthChange.get(at) ?? 0) - shortenNs);
        }
      }
      if (seenPacket && !ready && wallClockUs + BigInt(Math.round(frameDurationUs / 2)) > serverReadyUs) {
        ready = true;
        console.error(`INFO RPiSync *** Sync achieved! Difference ${serverReadyUs - wallClockUs}us`);
      }
      return ready;
    },
  };
}

/**
 * Trigger mode: follows the XTR line through the gpioset stand-in's log
 * (each entry stamped with CLOCK_MONOTONIC when gpioset received it: the
 * electrical edge). XTR is active low: the exposure is the low time.
 */
function watchXtr(line: string, startNs: bigint, periodNs: number, onFrame: (frame: Frame) => void): void {
  const log = join(env('STANDIN_LOG_DIR') ?? '.', 'gpioset.log');
  const fsDelayNs = BigInt(numberEnv(SETTINGS.fsDelayNs, 0));
  const id = line.replace(/^GPIO/, '');
  const activeLow = new Map<number, boolean>();
  const level = new Map<number, number>(); // physical level per gpioset process
  let fallNs: bigint | undefined;
  let offset = 0;
  let buffer = '';
  let k = 0;
  let lastFrameNs = process.hrtime.bigint();
  const timeoutMs = configuredTimeoutMs() ?? Math.max(MIN_CAMERA_TIMEOUT_MS, (5 * periodNs) / 1e6);
  const matches = (lineId: string) => lineId.replace(/^GPIO/, '') === id;
  const poll = () => {
    if (existsSync(log)) {
      const fd = openSync(log, 'r');
      const chunk = Buffer.alloc(65536);
      let n: number;
      while ((n = readSync(fd, chunk, 0, chunk.length, offset)) > 0) {
        offset += n;
        buffer += chunk.subarray(0, n).toString('utf8');
      }
      closeSync(fd);
      let nl: number;
      while ((nl = buffer.indexOf('\n')) !== -1) {
        const entry = JSON.parse(buffer.slice(0, nl)) as { t: string; pid: number; argv?: string[]; line?: string };
        buffer = buffer.slice(nl + 1);
        const t = BigInt(entry.t);
        if (entry.argv) {
          const low = entry.argv.includes('-l') || entry.argv.includes('--active-low');
          const initial = entry.argv.find((a) => a.includes('=') && matches(a.split('=')[0]!));
          if (initial) {
            activeLow.set(entry.pid, low);
            level.set(entry.pid, Number(initial.split('=')[1]) ^ (low ? 1 : 0));
          }
          continue;
        }
        const m = entry.line ? /^set (\S+)=([01])$/.exec(entry.line) : null;
        if (!m || !matches(m[1]!) || !activeLow.has(entry.pid)) continue;
        const physical = Number(m[2]) ^ (activeLow.get(entry.pid) ? 1 : 0);
        const before = level.get(entry.pid);
        level.set(entry.pid, physical);
        if (t < startNs || before === physical) continue;
        if (physical === 0) fallNs = t;
        else if (fallNs !== undefined) {
          const endNs = t + BigInt(XTR_EXTRA_NS);
          onFrame({ k: k++, sensorTimestampNs: endNs + fsDelayNs, exposureNs: Number(endNs - fallNs), startNs: fallNs });
          fallNs = undefined;
          lastFrameNs = process.hrtime.bigint();
        }
      }
    }
    if (Number(process.hrtime.bigint() - lastFrameNs) / 1e6 > timeoutMs) {
      // What libcamera and rpicam-apps say when no frame comes (then they restart the camera).
      console.error('ERROR: Camera frontend has timed out!');
      console.error('ERROR: Device timeout detected, attempting a restart!!!');
      lastFrameNs = process.hrtime.bigint();
    }
    scheduled = setTimeout(poll, XTR_POLL_MS);
  };
  let scheduled: NodeJS.Timeout | undefined;
  const dir = env('STANDIN_LOG_DIR') ?? '.';
  try {
    watch(dir, (_event, name) => {
      if (name !== 'gpioset.log') return;
      clearTimeout(scheduled);
      scheduled = setTimeout(poll, XTR_NOTICE_DELAY_MS);
    }).unref();
  } catch {
    /* no inotify: the poll alone */
  }
  poll();
}

/** One output frame as the simulator recorded it (CLOCK_MONOTONIC ns). */
export interface SensorTruth {
  pid: number;
  file: string;
  frame: number;
  sensorTimestampNs: bigint;
  exposureStartNs: bigint;
  exposureEndNs: bigint;
  lastRowStartNs: bigint;
  lastRowEndNs: bigint;
}

/** Reads the truth file (STANDIN_SENSOR_TRUTH): every frame every simulated sensor output. */
export function readSensorTruth(file: string): SensorTruth[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const e = JSON.parse(line) as Record<string, string | number>;
      const big = (k: string) => BigInt(e[k] as string);
      return {
        pid: e.pid as number,
        file: e.file as string,
        frame: e.frame as number,
        sensorTimestampNs: big('sensorTimestampNs'),
        exposureStartNs: big('exposureStartNs'),
        exposureEndNs: big('exposureEndNs'),
        lastRowStartNs: big('lastRowStartNs'),
        lastRowEndNs: big('lastRowEndNs'),
      };
    });
}

/**
 * The simulated sensor's XTR input, for the demo and benchmarks (no GPIO):
 * an actuator that writes each edge into the log the simulator follows, in
 * the gpioset stand-in's format, stamped with CLOCK_MONOTONIC at the write
 * (the moment a real line would switch). Active low, like XTR.
 */
export class XtrLogLine {
  readonly name: string;
  private fd: number | undefined;

  constructor(private readonly line: number | string) {
    this.name = `simulated XTR line ${line}`;
  }

  private get log(): string {
    return join(env('STANDIN_LOG_DIR') ?? '.', 'gpioset.log');
  }

  private write(entry: Record<string, unknown>): void {
    writeSync(this.fd!, JSON.stringify({ t: process.hrtime.bigint().toString(), pid: process.pid, ...entry }) + '\n');
  }

  async prepare(): Promise<void> {
    if (this.fd !== undefined) return;
    this.fd = openSync(this.log, 'a');
    this.write({ argv: ['-i', '-l', `${this.line}=0`] });
    // The edge path once cold, at the level it already has (no edge): like gpiod's warm-up writes.
    for (let i = 0; i < 3; i++) this.fire(0n, { level: 0 });
  }

  rehearse(): void {
    void `{"t":"${process.hrtime.bigint()}","pid":${process.pid},"line":"set ${this.line}=1"}\n`;
  }

  /** The stamp first, then one write(2): the stamp is the edge. */
  fire(_instantNs: bigint, input: { level?: 0 | 1 } = {}): { costNs: number } {
    const t = process.hrtime.bigint();
    if (this.fd === undefined) throw new Error(`${this.name}: fire() before prepare()`);
    writeSync(this.fd, `{"t":"${t}","pid":${process.pid},"line":"set ${this.line}=${input.level ?? 0}"}\n`);
    return { costNs: Number(process.hrtime.bigint() - t) };
  }

  async release(): Promise<void> {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The stock tuning file installSensorStandIns() writes beside the wrappers (what /usr/share/libcamera/ipa/rpi holds). */
export const SIM_TUNING_FILE = 'imx708.json';

/**
 * Writes `rpicam-still` and `rpicam-vid` into binDir, each running this
 * simulator with the node that runs us; returns their paths.
 */
export function installSensorStandIns(binDir: string): { still: string; vid: string } {
  const script = fileURLToPath(import.meta.url);
  const paths = { still: join(binDir, 'rpicam-still'), vid: join(binDir, 'rpicam-vid') };
  for (const [name, path] of [['rpicam-still', paths.still], ['rpicam-vid', paths.vid]] as const) {
    writeFileSync(path, `#!/bin/sh\nexec '${process.execPath}' '${script}' ${name} "$@"\n`);
    chmodSync(path, 0o755);
  }
  writeFileSync(join(binDir, SIM_TUNING_FILE), JSON.stringify({ version: 2.0, target: 'bcm2835', algorithms: [{ 'rpi.black_level': { black_level: 4096 } }, { 'rpi.sync': {} }] }, null, 2));
  return paths;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
