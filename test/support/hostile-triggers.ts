/**
 * Hostile triggers for a node: well-formed enough to reach its checks, each
 * one different (fresh ids, far-future starts, bloated fields, many distinct
 * GPIO line names, garbage). Used by the bounded-state test and the scale
 * benchmark's "node RSS after N hostile triggers".
 */
import { newMessageId } from '../../src/mesh/messages.js';

const YEAR_2262_NS = 9_200_000_000_000_000_000n;

/** The i-th hostile payload (deterministic kind, fresh id), given the sender's UTC now. */
export function hostileTrigger(i: number, nowNs: bigint): string {
  const base = {
    v: 1,
    type: 'trigger',
    id: newMessageId(`h${i}`),
    issuedNs: nowNs.toString(),
    expiresNs: YEAR_2262_NS.toString(),
    startNs: (nowNs + 2_000_000_000n).toString(),
  };
  switch (i % 6) {
    case 0: // the year 2262
      return JSON.stringify({ ...base, startNs: (YEAR_2262_NS - 1n).toString(), action: { kind: 'blink', line: 17, onNs: 1e6, periodNs: 2e6, count: 'forever' } });
    case 1: // a 12 KB bad value, to be echoed back in the reject detail
      return JSON.stringify({ ...base, action: { kind: 'blink', line: 'x'.repeat(12_000), onNs: 1e6, periodNs: 2e6, count: 1 } });
    case 2: // a fresh GPIO line name every time, a few days ahead
      return JSON.stringify({ ...base, startNs: (nowNs + 3n * 86_400_000_000_000n).toString(), action: { kind: 'blink', line: `L${i}`, onNs: 1e6, periodNs: 2e6, count: 1 } });
    case 3: // a plausible trigger an hour ahead (within the horizon: fills the pending set)
      return JSON.stringify({ ...base, startNs: (nowNs + 3_600_000_000_000n + BigInt(i) * 1_000_000n).toString(), action: { kind: 'blink', line: 17, onNs: 1e6, periodNs: 2e6, count: 1 } });
    case 4: // not JSON at all, 8 KB
      return `{"v":1,"type":"trigger","id":"${base.id}",` + 'y'.repeat(8_000);
    default: // an unknown action with a bloated field
      return JSON.stringify({ ...base, action: { kind: 'launch-missiles', payload: 'z'.repeat(10_000) } });
  }
}
