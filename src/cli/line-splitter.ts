/** A child's output stream cut into lines (UTF-8 safe), so each line can be given its job's name. */
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

/** A line longer than this (no newline in sight) is passed on in pieces rather than held in memory. */
const MAX_LINE_CHARS = 65_536;

/** Calls onLine for every line of stream (without its '\n'), and for a last line without one; onEnd afterwards. */
export function splitLines(stream: Readable, onLine: (line: string) => void, onEnd?: () => void): void {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  const push = (text: string) => {
    partial += text;
    let newline: number;
    while ((newline = partial.indexOf('\n')) !== -1) {
      onLine(partial.slice(0, newline).replace(/\r$/, ''));
      partial = partial.slice(newline + 1);
    }
    while (partial.length > MAX_LINE_CHARS) {
      onLine(partial.slice(0, MAX_LINE_CHARS));
      partial = partial.slice(MAX_LINE_CHARS);
    }
  };
  stream.on('data', (chunk: Buffer) => push(decoder.write(chunk)));
  stream.once('close', () => {
    push(decoder.end());
    if (partial !== '') onLine(partial);
    partial = '';
    onEnd?.();
  });
}
