/**
 * A job's whole process tree, so a signal reaches what its shell started too:
 * `sh -c 'a; b'` keeps the shell as the parent of `a`, and a shell killed
 * alone leaves `a` running, re-parented to init (an orphan). Linux /proc.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Parent of every process now (pid → ppid), from /proc/PID/stat. */
function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name (field 2) is in parentheses and may hold spaces: read after the last ')'.
      const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      map.set(Number(name), Number(after[1]));
    } catch {
      /* exited while we looked */
    }
  }
  return map;
}

/** pid and all its descendants (parents before children). */
export function processTree(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const [child, parent] of parents()) {
    const list = byParent.get(parent) ?? [];
    list.push(child);
    byParent.set(parent, list);
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(byParent.get(tree[i]!) ?? []));
  return tree;
}

/** Sends signal to every pid given (those already gone are ignored); returns how many got it. */
export function signalAll(pids: Iterable<number>, signal: NodeJS.Signals): number {
  let sent = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
      sent++;
    } catch {
      /* gone */
    }
  }
  return sent;
}
