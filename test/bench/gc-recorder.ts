/**
 * Loaded into a benchmarked lockstep process with `node --import`: records
 * every garbage-collection pause (perf_hooks 'gc' entries) and writes them,
 * on UTC, to the file named by LOCKSTEP_BENCH_GC_FILE when the process exits,
 * so the benchmark can count the pauses that overlapped an instant.
 */
import { writeFileSync } from 'node:fs';
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';

const file = process.env.LOCKSTEP_BENCH_GC_FILE;
if (file) {
  const pauses: { startNs: string; durationNs: number; kind: number }[] = [];
  const take = (entries: PerformanceEntry[]) => {
    for (const e of entries) {
      // timeOrigin is the process's start on the system clock (CLOCK_REALTIME), the benchmark's truth.
      const startNs = BigInt(Math.round((performance.timeOrigin + e.startTime) * 1e6));
      pauses.push({ startNs: startNs.toString(), durationNs: Math.round(e.duration * 1e6), kind: ((e as unknown as { detail?: { kind?: number } }).detail)?.kind ?? 0 });
    }
  };
  const observer = new PerformanceObserver((list) => take(list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  process.on('exit', () => {
    take(observer.takeRecords());
    writeFileSync(file, JSON.stringify(pauses));
  });
}
