/**
 * A private Mosquitto broker on a free loopback port: for tests and for
 * `lockstep demo`, which must not depend on (or disturb) a broker the machine
 * may already run. It runs in the foreground as our child, so its pid is
 * known and it is stopped by pid; a crash of ours leaves no daemon behind
 * (the caller kills by pid on exit).
 *
 * Mosquitto 2.0 ignores `-p` when the config has a listener, and binds
 * loopback only without one; so we always write a config file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, accessSync, constants } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How long a starting broker has to accept connections (a loaded 2-core machine is slow). */
const START_TIMEOUT_MS = 10_000;
/** Per client, for the fan-in of a thousand nodes to one coordinator (see hardware/mosquitto.conf). */
const MAX_QUEUED_MESSAGES = 100_000;
/** After SIGTERM, how long before SIGKILL. */
const STOP_GRACE_MS = 3_000;

export class BrokerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BrokerError';
  }
}

export interface BrokerOptions {
  /** Default: a free port chosen by the OS. */
  port?: number;
  host?: string;
  /** Extra mosquitto.conf lines (an acl_file, a password_file). */
  extraConfig?: string[];
  /** Default true; false requires user names (with a password_file in extraConfig). */
  allowAnonymous?: boolean;
  /** TLS on the listener (PEM files): clients then use mqtts://. */
  tls?: { cafile: string; certfile: string; keyfile: string };
  /** The mosquitto binary (default: found on PATH or in /usr/sbin). */
  binary?: string;
}

/** A free TCP port on the loopback interface, chosen by the OS. */
export function freeTcpPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** mosquitto lives in /usr/sbin on Debian, often not on a user's PATH. */
export function findMosquitto(): string {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'].filter(Boolean);
  for (const dir of dirs) {
    const candidate = join(dir, 'mosquitto');
    if (isExecutable(candidate)) return candidate;
  }
  throw new BrokerError("mosquitto is not installed: 'sudo apt-get install mosquitto' (the demo and tests start a private one)");
}

export class PrivateBroker {
  readonly host: string;
  port = 0;
  private child: ChildProcess | undefined;
  private watchdog: ChildProcess | undefined;
  private dir: string | undefined;
  private log = '';
  private readonly options: BrokerOptions;

  constructor(options: BrokerOptions = {}) {
    this.options = options;
    this.host = options.host ?? '127.0.0.1';
  }

  get url(): string {
    return `${this.options.tls ? 'mqtts' : 'mqtt'}://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The broker's own output (for error messages). */
  output(): string {
    return this.log;
  }

  /** Starts it (again, on the same port after a stop: clients reconnect to the same URL). */
  async start(): Promise<{ url: string; port: number; pid: number }> {
    if (this.running) throw new BrokerError('broker already running');
    if (!this.port) this.port = this.options.port ?? (await freeTcpPort(this.host));
    this.dir ??= mkdtempSync(join(tmpdir(), 'lockstep-mosquitto-'));
    const conf = join(this.dir, 'mosquitto.conf');
    const lines = [
      `listener ${this.port} ${this.host}`,
      `allow_anonymous ${this.options.allowAnonymous === false ? 'false' : 'true'}`,
      ...(this.options.tls ? [`cafile ${this.options.tls.cafile}`, `certfile ${this.options.tls.certfile}`, `keyfile ${this.options.tls.keyfile}`] : []),
      'persistence false',
      // Mosquitto leaves Nagle on by default: triggers and acks would wait up to 40 ms for delayed ACKs.
      'set_tcp_nodelay true',
      // The hub and the trigger subscribe to every node: a thousand nodes' acks and reports arrive in one
      // second, faster than 20 in flight drain. Mosquitto's default queue (1,000 per client) then DROPS them.
      `max_queued_messages ${MAX_QUEUED_MESSAGES}`,
      'log_dest stdout',
      'log_type error',
      'log_type warning',
      // Root would otherwise drop to user 'mosquitto', which may lack access to our temp dir.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      ...(this.options.extraConfig ?? []),
    ];
    writeFileSync(conf, lines.join('\n') + '\n');
    const binary = this.options.binary ?? findMosquitto();
    const child = spawn(binary, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.log = '';
    child.stdout!.on('data', (d: Buffer) => (this.log = (this.log + d.toString()).slice(-8192)));
    child.stderr!.on('data', (d: Buffer) => (this.log = (this.log + d.toString()).slice(-8192)));
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const failed = await Promise.race([spawnError, new Promise<undefined>((r) => setTimeout(() => r(undefined), 30))]);
      if (failed) throw new BrokerError(`cannot start mosquitto: ${failed.message}`);
      if (!this.running) throw new BrokerError(`mosquitto exited at start: ${this.log.trim()}`);
      if (await canConnect(this.host, this.port)) {
        this.startWatchdog(child.pid!);
        return { url: this.url, port: this.port, pid: child.pid! };
      }
    }
    await this.stop();
    throw new BrokerError(`mosquitto did not accept connections on ${this.host}:${this.port} within ${START_TIMEOUT_MS} ms`);
  }

  /**
   * A tiny shell that holds a pipe from us and kills the broker by pid when
   * the pipe closes: if this process dies without stopping the broker (a
   * SIGKILL, a crash), the broker does not outlive it.
   */
  private startWatchdog(pid: number): void {
    const watchdog = spawn('sh', ['-c', 'read _ignored; kill "$0" 2>/dev/null', String(pid)], { stdio: ['pipe', 'ignore', 'ignore'] });
    watchdog.on('error', () => undefined);
    watchdog.stdin!.on('error', () => undefined);
    watchdog.unref();
    (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
    this.watchdog = watchdog;
  }

  private stopWatchdog(): void {
    const watchdog = this.watchdog;
    this.watchdog = undefined;
    if (watchdog && watchdog.exitCode === null) {
      try {
        watchdog.kill('SIGKILL'); // not via its pipe: it would kill a pid that may be reused by then
      } catch {
        /* gone */
      }
    }
  }

  /** Stops it by pid: SIGTERM, then SIGKILL after a grace period. `kill` skips the grace (a crash). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopWatchdog();
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    process.kill(child.pid!, signal);
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  /** Stops it and removes its directory. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}
