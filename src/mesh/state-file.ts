/**
 * The node's small state file: the triggers it accepted and has not finished,
 * and the message ids it must keep refusing, so a restart (power cut, crash,
 * `systemctl restart`) between the ack and the instant still fires.
 *
 * Written atomically: a temp file in the same directory, fsync, rename over
 * the old one, fsync the directory. A crash at any point leaves either the
 * old file or the new one, never half of one. Writes are asynchronous (the
 * event loop must stay free for the scheduler) and coalesced: while one write
 * runs, only the latest requested state is written next.
 */
import { open, rename, readFile, mkdir, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

export const STATE_FILE_VERSION = 1;

export interface PendingTrigger {
  /** The trigger exactly as received (wire JSON object), so its signature can be re-checked. */
  wire: Record<string, unknown>;
  /** Node UTC when it was accepted. */
  acceptedNs: string;
}

export interface NodeStateData {
  v: 1;
  node: string;
  pending: PendingTrigger[];
  /** [message id, forget-after ns] of messages already received (replay protection across restarts). */
  seen: [string, string][];
}

export class StateFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateFileError';
  }
}

export function emptyState(node: string): NodeStateData {
  return { v: STATE_FILE_VERSION, node, pending: [], seen: [] };
}

export class StateFile {
  private writing: Promise<void> | undefined;
  private next: NodeStateData | undefined;
  private writes = 0;

  constructor(readonly path: string) {}

  /** The saved state, an empty one if there is none; a corrupt file is an error (not silently dropped). */
  async load(node: string): Promise<NodeStateData> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return emptyState(node);
      throw new StateFileError(`cannot read state file ${this.path}: ${(error as Error).message}`);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new StateFileError(`state file ${this.path} is not JSON; move it away to start afresh`);
    }
    const d = data as Partial<NodeStateData>;
    if (d.v !== STATE_FILE_VERSION || !Array.isArray(d.pending) || !Array.isArray(d.seen)) {
      throw new StateFileError(`state file ${this.path} has an unknown layout; move it away to start afresh`);
    }
    if (d.node !== node) throw new StateFileError(`state file ${this.path} belongs to node '${d.node}', not '${node}'`);
    return d as NodeStateData;
  }

  /** Requests a write; resolves when this state (or a newer one) is on disk. */
  save(state: NodeStateData): Promise<void> {
    this.next = state;
    if (!this.writing) this.writing = this.drain();
    return this.writing;
  }

  /** How many times the file was actually written (coalescing makes it ≤ the saves). */
  get writeCount(): number {
    return this.writes;
  }

  private async drain(): Promise<void> {
    try {
      while (this.next) {
        const state = this.next;
        this.next = undefined;
        await this.writeAtomically(JSON.stringify(state) + '\n');
        this.writes++;
      }
    } finally {
      this.writing = undefined;
    }
  }

  private async writeAtomically(text: string): Promise<void> {
    const dir = dirname(this.path);
    await mkdir(dir, { recursive: true });
    const temp = join(dir, `.${basename(this.path)}.${process.pid}.tmp`);
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, this.path);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    // The rename is durable only once the directory entry is.
    const dirHandle = await open(dir, 'r');
    try {
      await dirHandle.sync();
    } catch {
      /* some filesystems refuse fsync on a directory; the rename is still atomic */
    } finally {
      await dirHandle.close();
    }
  }
}
