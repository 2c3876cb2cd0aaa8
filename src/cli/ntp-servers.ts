/**
 * The CLI side of naming NTP servers, shared by every command that takes
 * them (`sync`, `query`, and `--ntp SERVER...` / `--upstream` elsewhere):
 * specs → NtpServerSpecs, keyfile → keys, unknown hosts and unreadable
 * keyfiles → UsageError (exit 2).
 */
import { UsageError } from './errors.js';
import { parseServerSpecs, checkServersResolve, ServerSpecError, NTP_PORT } from '../ntp/options.js';
import { loadKeyFile, KeyFileError, type SymmetricKey } from '../ntp/auth.js';
import type { NtpServerSpec } from '../ntp/source.js';

export interface NtpServerOptions {
  /** Path of a chrony-format keyfile (--keys). */
  keysPath?: string;
  /** Authenticate every server with this key (--key-id). */
  keyId?: number;
  defaultPort?: number;
  /** Look the hosts up now, so a typo is a usage error rather than a silent "unreachable" (default true). */
  resolve?: boolean;
}

export async function ntpServersFromArgs(
  specs: string[],
  options: NtpServerOptions = {},
): Promise<{ servers: NtpServerSpec[]; keys?: Map<number, SymmetricKey> }> {
  let keys: Map<number, SymmetricKey> | undefined;
  if (options.keysPath !== undefined) {
    try {
      keys = await loadKeyFile(options.keysPath);
    } catch (error) {
      if (error instanceof KeyFileError) throw new UsageError(error.message);
      throw error;
    }
  }
  if (options.keyId !== undefined && !keys) throw new UsageError('--key-id needs --keys FILE');
  try {
    const servers = parseServerSpecs(specs, {
      ...(options.keyId !== undefined ? { keyId: options.keyId } : {}),
      ...(keys ? { keys } : {}),
      defaultPort: options.defaultPort ?? NTP_PORT,
    });
    if (options.resolve !== false) await checkServersResolve(servers);
    return keys ? { servers, keys } : { servers };
  } catch (error) {
    if (error instanceof ServerSpecError) throw new UsageError(error.message);
    throw error;
  }
}
