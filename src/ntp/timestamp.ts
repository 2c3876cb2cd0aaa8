/**
 * NTP's 64-bit timestamps (RFC 5905 §6): 32 bits of seconds since 1900-01-01
 * and 32 bits of fraction. The seconds wrap every 2^32 s (era 0 ends
 * 2036-02-07T06:28:16Z), so a timestamp means an instant only next to a
 * pivot: we pick the era that puts it nearest our own idea of now.
 *
 * Timestamps stay raw bigint bits on the wire side, so the origin check
 * compares exactly the bits we sent.
 */
import { NS_PER_SECOND } from '../time/units.js';

/** Seconds from 1900-01-01 (NTP's prime epoch) to 1970-01-01 (Unix's). */
export const NTP_UNIX_OFFSET_SECONDS = 2_208_988_800n;
const ERA_SECONDS = 1n << 32n;
const FRACTION_SCALE = 1n << 32n;

/** A raw 64-bit NTP timestamp: seconds << 32 | fraction. */
export type NtpTimestamp = bigint;

/** Encodes a Unix-epoch instant, rounding the fraction to the nearest 2^-32 s. */
export function unixNsToNtp(unixNs: bigint): NtpTimestamp {
  const ntpNs = unixNs + NTP_UNIX_OFFSET_SECONDS * NS_PER_SECOND;
  const eraNs = ERA_SECONDS * NS_PER_SECOND;
  const withinEra = ((ntpNs % eraNs) + eraNs) % eraNs;
  const seconds = withinEra / NS_PER_SECOND;
  const subNs = withinEra % NS_PER_SECOND;
  let fraction = (subNs * FRACTION_SCALE + NS_PER_SECOND / 2n) / NS_PER_SECOND;
  let secs = seconds;
  if (fraction === FRACTION_SCALE) {
    fraction = 0n;
    secs = (secs + 1n) % ERA_SECONDS;
  }
  return (secs << 32n) | fraction;
}

/**
 * Decodes to the Unix-epoch instant, in the era that lies nearest pivotUnixNs
 * (within ±68 years of it).
 */
export function ntpToUnixNs(timestamp: NtpTimestamp, pivotUnixNs: bigint): bigint {
  const seconds = timestamp >> 32n;
  const fraction = timestamp & 0xffff_ffffn;
  const subNs = (fraction * NS_PER_SECOND + FRACTION_SCALE / 2n) / FRACTION_SCALE;
  const pivotNtpSeconds = pivotUnixNs / NS_PER_SECOND + NTP_UNIX_OFFSET_SECONDS;
  // Choose era so that era*2^32 + seconds is closest to the pivot.
  let era = (pivotNtpSeconds - seconds) / ERA_SECONDS;
  let best = era * ERA_SECONDS + seconds;
  for (const candidate of [era - 1n, era + 1n]) {
    const value = candidate * ERA_SECONDS + seconds;
    const distance = value > pivotNtpSeconds ? value - pivotNtpSeconds : pivotNtpSeconds - value;
    const bestDistance = best > pivotNtpSeconds ? best - pivotNtpSeconds : pivotNtpSeconds - best;
    if (distance < bestDistance) {
      best = value;
      era = candidate;
    }
  }
  return (best - NTP_UNIX_OFFSET_SECONDS) * NS_PER_SECOND + subNs;
}

/** NTP's 32-bit "short" format (16.16 seconds), used for root delay and dispersion. */
export function shortToSeconds(value: number): number {
  return (value >>> 0) / 65536;
}

export function secondsToShort(seconds: number): number {
  if (!(seconds >= 0)) return 0;
  return Math.min(0xffff_ffff, Math.round(seconds * 65536)) >>> 0;
}
