/**
 * Thin wrappers over node:util parseArgs, so every command reports bad flags
 * the same way (a UsageError: message + exit 2) and parses the same units.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './errors.js';
import { parseDurationNs, DurationSyntaxError } from '../time/units.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs<V> {
  values: V;
  positionals: string[];
  /** Everything after a lone `--` (a command and its arguments), untouched. */
  rest: string[];
}

/** parseArgs with strict checking; `--` splits off a trailing command line. */
export function parseCommandArgs<O extends OptionSpec>(
  argv: string[],
  options: O,
): ParsedArgs<ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: true }>>['values']> {
  const split = argv.indexOf('--');
  const head = split === -1 ? argv : argv.slice(0, split);
  const rest = split === -1 ? [] : argv.slice(split + 1);
  try {
    const { values, positionals } = parseArgs({ args: head, options, strict: true, allowPositionals: true });
    return { values, positionals, rest };
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
}

export function durationNsOption(name: string, value: string): bigint {
  try {
    return parseDurationNs(value);
  } catch (error) {
    if (error instanceof DurationSyntaxError) throw new UsageError(`--${name}: ${error.message}`);
    throw error;
  }
}

export function numberOption(name: string, value: string, range: { min?: number; max?: number; integer?: boolean } = {}): number {
  const n = Number(value);
  const { min = -Infinity, max = Infinity, integer = false } = range;
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    const kind = integer ? 'an integer' : 'a number';
    const bounds = Number.isFinite(min) || Number.isFinite(max) ? ` from ${min} to ${max}` : '';
    throw new UsageError(`--${name} takes ${kind}${bounds}, not '${value}'`);
  }
  return n;
}

/** "host", "host:port", "[v6]:port", "v6" → host and port (default port given). */
export function parseHostPort(spec: string, defaultPort: number): { host: string; port: number } {
  let host = spec;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(spec);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if ((spec.match(/:/g) ?? []).length === 1) {
    [host, portText] = spec.split(':') as [string, string];
  }
  if (!host) throw new UsageError(`'${spec}' names no host`);
  let port = defaultPort;
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new UsageError(`'${spec}': port must be 1–65535`);
  }
  return { host, port };
}
