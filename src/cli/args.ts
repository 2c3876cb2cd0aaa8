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
  const head = attachValues(split === -1 ? argv : argv.slice(0, split), options);
  const rest = split === -1 ? [] : argv.slice(split + 1);
  try {
    const { values, positionals } = parseArgs({ args: head, options, strict: true, allowPositionals: true });
    return { values, positionals, rest };
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
}

/**
 * A flag that takes a value takes the next argument, whatever it looks like,
 * as GNU getopt does: `--nice -5`, `--sim-offset -1.5`. parseArgs alone
 * refuses a value that starts with '-' ("argument is ambiguous"), so such
 * pairs are joined into `--name=value` (and `-x value` into `--long=value`)
 * before it sees them. A value flag given last is left alone: parseArgs then
 * says its argument is missing.
 */
export function attachValues(args: string[], options: OptionSpec): string[] {
  const takesValue = new Map<string, string>();
  for (const [name, spec] of Object.entries(options)) {
    if (spec.type !== 'string') continue;
    takesValue.set(`--${name}`, name);
    if (spec.short) takesValue.set(`-${spec.short}`, name);
  }
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const name = takesValue.get(arg);
    if (name !== undefined && i + 1 < args.length) {
      out.push(`--${name}=${args[i + 1]}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
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
