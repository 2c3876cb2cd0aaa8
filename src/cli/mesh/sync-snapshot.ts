/**
 * What a node says about its clock in its state message, read from its
 * Timescale and (when it syncs over NTP) its client: shared by `lockstep
 * node` and the swarm's simulated nodes.
 */
import type { RawClock } from '../../time/clock.js';
import type { Timescale } from '../../time/timescale.js';
import type { NtpClient } from '../../ntp/client.js';
import type { SyncSnapshot } from '../../mesh/node.js';

export function syncSnapshot(clock: RawClock, timescale: Timescale, client: NtpClient | undefined): SyncSnapshot {
  const raw = clock.nowNs();
  const snapshot: SyncSnapshot = {
    synchronized: timescale.synchronized,
    offsetNs: timescale.offsetNs(raw),
    frequencyPpm: timescale.frequencyPpm,
    errorBoundNs: timescale.errorBoundNs(raw),
    sources: [],
  };
  const last = timescale.lastEstimateRawNs;
  if (last !== undefined) snapshot.lastSampleNs = timescale.utcAt(last);
  if (client) {
    const status = client.status();
    if (status.synchronized && status.rootDelaySeconds !== undefined && status.rootDispersionSeconds !== undefined) {
      snapshot.sourceDistanceNs = (status.rootDelaySeconds / 2 + status.rootDispersionSeconds) * 1e9;
    }
    snapshot.sources = status.sources.map((s) => ({
      address: s.address,
      reach: s.reach,
      state: s.state,
      delayNs: Math.round(s.delaySeconds * 1e9),
      offsetNs: Math.round(s.offsetSeconds * 1e9),
      jitterNs: Math.round(s.jitterSeconds * 1e9),
      pollSeconds: s.pollSeconds,
      ...(s.lastError ? { lastError: s.lastError } : {}),
    }));
    // Our clock minus the selected server's at the last sample (like chrony's "last offset"): exact for a node
    // that follows one server (its hub); with several, the selected one's newest sample may be a poll older.
    const selected = status.sources.find((s) => s.state === 'selected');
    if (selected && status.lastSampleRawNs !== undefined && timescale.synchronized) {
      snapshot.hubOffsetNs = Number(timescale.offsetNs(status.lastSampleRawNs)) - selected.offsetSeconds * 1e9;
    }
    snapshot.warnings = status.sources.filter((s) => s.lastError).map((s) => `NTP ${s.address}: ${s.lastError}`);
  }
  return snapshot;
}
