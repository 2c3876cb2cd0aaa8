/**
 * The simulated sensor (hardware/sensor-sim.ts) as a test stand-in: its
 * `rpicam-still` / `rpicam-vid` wrappers on a temporary PATH next to the
 * gpioset stand-in (trigger mode follows gpioset's log for the XTR line), its
 * settings as environment variables, and the truth it records (every output
 * frame's exposure on CLOCK_MONOTONIC) read back on the real clock.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { realClock } from '../../src/time/clock.js';
import { installSensorStandIns, SETTINGS } from '../../hardware/sensor-sim.js';
import { makeStandIns, type StandIns } from './standins.js';

export interface TruthFrame {
  personality: string;
  pid: number;
  file: string;
  frame: number;
  /** CLOCK_MONOTONIC ns. */
  sensorTimestampNs: bigint;
  exposureStartNs: bigint;
  exposureEndNs: bigint;
  lastRowStartNs: bigint;
  lastRowEndNs: bigint;
}

export interface SensorStandIns extends StandIns {
  truthFile: string;
  /** Every frame the simulated sensor output, in order. */
  truth(): TruthFrame[];
  /** First-row exposure mid-point of a truth frame, on the real clock (UTC ns). */
  trueMidNs(frame: TruthFrame): bigint;
  lastRowMidNs(frame: TruthFrame): bigint;
  /** Sets sensor settings (SETTINGS keys) for what this process starts next; returns the undo. */
  set(settings: Partial<Record<keyof typeof SETTINGS, string | number>>): () => void;
}

export function makeSensorStandIns(): SensorStandIns {
  const base = makeStandIns({ camera: false });
  installSensorStandIns(base.bin);
  const truthFile = join(base.logDir, 'sensor-truth.jsonl');
  process.env[SETTINGS.truth] = truthFile;
  const real = realClock();
  const mid = (start: bigint, end: bigint) => real.atMonotonicNs(start + (end - start) / 2n);
  return {
    ...base,
    truthFile,
    truth: () =>
      existsSync(truthFile)
        ? readFileSync(truthFile, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => {
              const e = JSON.parse(l) as Record<string, string | number>;
              const big = (k: string) => BigInt(e[k] as string);
              return {
                personality: e.personality as string,
                pid: e.pid as number,
                file: e.file as string,
                frame: e.frame as number,
                sensorTimestampNs: big('sensorTimestampNs'),
                exposureStartNs: big('exposureStartNs'),
                exposureEndNs: big('exposureEndNs'),
                lastRowStartNs: big('lastRowStartNs'),
                lastRowEndNs: big('lastRowEndNs'),
              };
            })
        : [],
    trueMidNs: (f) => mid(f.exposureStartNs, f.exposureEndNs),
    lastRowMidNs: (f) => mid(f.lastRowStartNs, f.lastRowEndNs),
    set(settings) {
      const names = Object.keys(settings).map((k) => SETTINGS[k as keyof typeof SETTINGS]);
      for (const [k, v] of Object.entries(settings)) process.env[SETTINGS[k as keyof typeof SETTINGS]] = String(v);
      return () => {
        for (const n of names) delete process.env[n];
      };
    },
    cleanup() {
      delete process.env[SETTINGS.truth];
      base.cleanup();
    },
  };
}
