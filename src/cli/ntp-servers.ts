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
  /**
   * The keyfile is only for these servers (sync, query), so giving one means
   * "authenticate": without keyId its only key is used, and a file with
   * several is a usage error naming this flag. Not for serve-time, whose
   * --keys are the ones it serves with.
   */
  keysMeanAuth?: { keyIdFlag: string };
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
  let keyId = options.keyId;
  if (keys && keyId === undefined && options.keysMeanAuth) {
    // Silently authenticating nothing would look like a working setup.
    const ids = [...keys.keys()];
    const flag = options.keysMeanAuth.keyIdFlag;
    if (ids.length === 0) throw new UsageError(`${options.keysPath} holds no keys`);
    if (ids.length > 1) throw new UsageError(`${options.keysPath} holds ${ids.length} keys (${ids.join(', ')}): choose one with ${flag} N`);
    keyId = ids[0];
  }
  try {
    const servers = parseServerSpecs(specs, {
      ...(keyId !== undefined ? { keyId } : {}),
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
