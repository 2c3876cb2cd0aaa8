/**
 * A binary min-heap of pending instants, ordered by planned UTC and then by
 * arming order (so jobs at the same instant fire in the order they were
 * armed). Each item remembers its slot, so cancelling is O(log n) instead of a
 * linear search: 100,000 pending jobs arm and cancel in microseconds.
 */

export interface HeapItem {
  /** The planned instant, disciplined UTC ns. */
  keyNs: bigint;
  /** Arming order: the tie-break for equal instants. */
  seq: number;
  /** Slot in the heap array; −1 when not in the heap. */
  heapIndex: number;
}

export class DeadlineHeap<T extends HeapItem> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    item.heapIndex = this.items.length;
    this.items.push(item);
    this.up(item.heapIndex);
  }

  pop(): T | undefined {
    const top = this.items[0];
    if (top !== undefined) this.remove(top);
    return top;
  }

  /** Removes an item wherever it is; false if it was not in the heap. */
  remove(item: T): boolean {
    const i = item.heapIndex;
    if (i < 0 || this.items[i] !== item) return false;
    const last = this.items.pop()!;
    item.heapIndex = -1;
    if (last !== item) {
      this.items[i] = last;
      last.heapIndex = i;
      this.down(i);
      this.up(last.heapIndex);
    }
    return true;
  }

  /** Empties the heap, returning what it held (in no particular order). */
  clear(): T[] {
    const all = this.items.splice(0);
    for (const item of all) item.heapIndex = -1;
    return all;
  }

  private less(a: T, b: T): boolean {
    return a.keyNs < b.keyNs || (a.keyNs === b.keyNs && a.seq < b.seq);
  }

  private up(i: number): void {
    const items = this.items;
    const item = items[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent]!;
      if (!this.less(item, p)) break;
      items[i] = p;
      p.heapIndex = i;
      i = parent;
    }
    items[i] = item;
    item.heapIndex = i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && this.less(items[right]!, items[left]!) ? right : left;
      const c = items[child]!;
      if (!this.less(c, item)) break;
      items[i] = c;
      c.heapIndex = i;
      i = child;
    }
    items[i] = item;
    item.heapIndex = i;
  }
}
