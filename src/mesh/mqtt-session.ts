/**
 * One MQTT connection, wrapped to avoid mqtt.js's known pitfalls:
 *
 * - mqtt.js writes into the options object it is given (clientId, and more),
 *   so two clients built from one object share an identity and kick each
 *   other off the broker: every session builds a fresh options object.
 * - Its offline queue is unbounded: a node cut off from the broker for a day
 *   would grow without limit. QoS 0 is never queued (`queueQoSZero: false`)
 *   and QoS 1 publishes not yet acknowledged are counted and capped here.
 * - `publishAsync` never settles while offline: every publish here has a
 *   timeout. A timed-out QoS 1 message is NOT lost: it stays in mqtt.js's
 *   store and is sent when the broker is back (so it must not be re-sent by
 *   the caller, which would duplicate it).
 * - MQTT 5 with `clean: false` but no `sessionExpiryInterval` means a session
 *   that ends at disconnect: a persistent session always sets both.
 */
import mqtt, { type IClientOptions, type MqttClient, type IPublishPacket } from 'mqtt';
import { readFileSync } from 'node:fs';

/** Reconnect quickly: the broker restarting is a normal event, and reports wait for it. */
const RECONNECT_PERIOD_MS = 500;
const CONNECT_TIMEOUT_MS = 5_000;
/** Seconds without traffic before a ping; the broker declares us dead (and sends the will) after 1.5×. */
const KEEPALIVE_SECONDS = 10;
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;
/** Unacknowledged QoS 1 publishes kept for an absent broker; beyond this new ones are refused. */
export const DEFAULT_MAX_PENDING = 2_000;
/** How long the broker keeps a persistent session (subscriptions, queued triggers) after we vanish. */
export const DEFAULT_SESSION_EXPIRY_SECONDS = 3_600;
/**
 * The QoS at which a watcher (the hub, a trigger's coordinator) subscribes to
 * every node's states, acks and reports. QoS 1 delivery to one subscriber is
 * windowed by the broker (Mosquitto's max_inflight_messages, 20 by default):
 * a thousand nodes' acks then reach the coordinator 20 per round trip
 * through two busy event loops, seconds in all, and each needs a PUBACK
 * written back. A watcher has a clean session, so QoS 1 would keep nothing
 * across its own reconnection either; what survives a broker restart is the
 * nodes' re-sent reports (their publishes stay QoS 1). On a live connection
 * QoS 0 is as reliable as TCP.
 */
export const WATCH_QOS = 0;

export class MqttSessionError extends Error {
  constructor(
    readonly kind: 'timeout' | 'queue-full' | 'offline' | 'closed' | 'connect' | 'config',
    message: string,
  ) {
    super(message);
    this.name = 'MqttSessionError';
  }
}

export interface Will {
  topic: string;
  payload: string;
  retain: boolean;
  qos: 0 | 1;
}

export interface MqttSessionOptions {
  /** mqtt://host:1883 or mqtts://host:8883 */
  url: string;
  /**
   * Failover: every broker URL (url among them), tried in turn on each
   * reconnection (mqtt.js `servers`). Brokers that are bridged or clustered,
   * so a node that moves still talks to the same group.
   */
  servers?: string[];
  clientId: string;
  username?: string;
  password?: string;
  /** PEM CA file for mqtts:// (a private CA); the system CAs are used otherwise. */
  caFile?: string;
  /** PEM client certificate and key for brokers that require them. */
  certFile?: string;
  keyFile?: string;
  will?: Will;
  /** Keep subscriptions and messages queued for us across disconnects (nodes do). */
  persistent?: boolean;
  sessionExpirySeconds?: number;
  publishTimeoutMs?: number;
  maxPending?: number;
}

export interface PublishOptions {
  qos?: 0 | 1;
  retain?: boolean;
  timeoutMs?: number;
}

export type MessageHandler = (topic: string, payload: Buffer, packet: IPublishPacket) => void;

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new MqttSessionError('config', `cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** Builds a new options object every time: mqtt.js mutates the one it gets. */
export function buildClientOptions(options: MqttSessionOptions): IClientOptions {
  const url = new URL(options.url);
  if (!['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:', 'tls:'].includes(url.protocol)) {
    throw new MqttSessionError('config', `broker URL '${options.url}' must start with mqtt:// or mqtts://`);
  }
  const servers = (options.servers ?? []).map((s) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new MqttSessionError('config', `broker URL '${s}' is not a URL`);
    }
    if (u.protocol !== url.protocol) throw new MqttSessionError('config', `broker URLs must share one scheme: '${s}' is not ${url.protocol}//`);
    return { host: u.hostname, port: Number(u.port || (u.protocol === 'mqtts:' ? 8883 : 1883)), protocol: u.protocol.replace(/:$/, '') as 'mqtt' | 'mqtts' };
  });
  const persistent = options.persistent ?? false;
  const client: IClientOptions = {
    clientId: options.clientId,
    protocolVersion: 5,
    clean: !persistent,
    reconnectPeriod: RECONNECT_PERIOD_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    keepalive: KEEPALIVE_SECONDS,
    queueQoSZero: false,
    resubscribe: true,
    properties: persistent ? { sessionExpiryInterval: options.sessionExpirySeconds ?? DEFAULT_SESSION_EXPIRY_SECONDS } : {},
  };
  // The first connection goes to the first of them; each reconnection to the next.
  if (servers.length > 1) client.servers = servers;
  if (options.username !== undefined) client.username = options.username;
  if (options.password !== undefined) client.password = options.password;
  if (options.caFile) client.ca = readPem(options.caFile, 'CA file');
  if (options.certFile) client.cert = readPem(options.certFile, 'certificate file');
  if (options.keyFile) client.key = readPem(options.keyFile, 'key file');
  if (options.caFile || options.certFile) client.rejectUnauthorized = true;
  if (options.will) {
    client.will = { topic: options.will.topic, payload: Buffer.from(options.will.payload), qos: options.will.qos, retain: options.will.retain };
  }
  return client;
}

export class MqttSession {
  readonly clientId: string;
  private readonly client: MqttClient;
  private readonly publishTimeoutMs: number;
  private readonly maxPending: number;
  private pendingCount = 0;
  private closed = false;
  private lastError: Error | undefined;
  private readonly handlers = new Set<MessageHandler>();
  private readonly connectListeners = new Set<() => void>();
  private readonly offlineListeners = new Set<() => void>();
  private readonly counters = { published: 0, timedOut: 0, refused: 0, received: 0, connects: 0 };

  constructor(options: MqttSessionOptions) {
    this.clientId = options.clientId;
    this.publishTimeoutMs = options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
    this.maxPending = options.maxPending ?? DEFAULT_MAX_PENDING;
    this.client = mqtt.connect(options.url, buildClientOptions(options));
    this.client.on('connect', () => {
      this.counters.connects++;
      this.disableNagle();
      for (const l of [...this.connectListeners]) l();
    });
    this.client.on('offline', () => {
      for (const l of [...this.offlineListeners]) l();
    });
    // mqtt.js emits 'error' for refused connections and bad packets; unhandled it would throw.
    this.client.on('error', (error) => {
      this.lastError = error;
    });
    this.client.on('message', (topic, payload, packet) => {
      this.counters.received++;
      for (const h of [...this.handlers]) {
        try {
          h(topic, payload, packet);
        } catch (error) {
          // A handler bug must not take the connection down; it is the handler's to report.
          this.lastError = error as Error;
        }
      }
    });
  }

  /**
   * mqtt.js leaves Nagle's algorithm on: a small publish (an ack) that follows
   * another not yet acknowledged by TCP waits for the peer's delayed ACK,
   * 40 ms on Linux. Triggers and acks are latency-bound: send at once.
   */
  private disableNagle(): void {
    const stream = (this.client as unknown as { stream?: { setNoDelay?: (on: boolean) => void; socket?: { setNoDelay?: (on: boolean) => void } } }).stream;
    try {
      if (stream?.setNoDelay) stream.setNoDelay(true);
      else stream?.socket?.setNoDelay?.(true); // TLS: the TCP socket under the TLS stream
    } catch {
      /* not a TCP stream (WebSocket): nothing to do */
    }
  }

  get connected(): boolean {
    return this.client.connected;
  }

  get pending(): number {
    return this.pendingCount;
  }

  get stats(): { published: number; timedOut: number; refused: number; received: number; connects: number; pending: number } {
    return { ...this.counters, pending: this.pendingCount };
  }

  /** The last error mqtt.js reported (connection refused, bad credentials), for messages. */
  get error(): Error | undefined {
    return this.lastError;
  }

  onMessage(handler: MessageHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  onConnect(listener: () => void): () => void {
    this.connectListeners.add(listener);
    return () => this.connectListeners.delete(listener);
  }

  onOffline(listener: () => void): () => void {
    this.offlineListeners.add(listener);
    return () => this.offlineListeners.delete(listener);
  }

  /** Resolves once connected; rejects after timeoutMs with the broker's last error. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        const why = this.lastError ? `: ${this.lastError.message}` : '';
        reject(new MqttSessionError('connect', `no connection to the broker within ${timeoutMs} ms${why}`));
      }, timeoutMs);
      const off = this.onConnect(() => {
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  /**
   * Subscribes (QoS 1 unless asked for 0: see WATCH_QOS); mqtt.js
   * re-subscribes by itself after a reconnect, with the same QoS.
   */
  async subscribe(filters: string[], options: { qos?: 0 | 1; timeoutMs?: number } = {}): Promise<void> {
    await this.withTimeout(this.client.subscribeAsync(filters, { qos: options.qos ?? 1 }), options.timeoutMs ?? this.publishTimeoutMs, `subscribe to ${filters.join(', ')}`);
  }

  /**
   * Publishes with a timeout. QoS 0 while offline is refused at once (it
   * would be dropped anyway); QoS 1 is queued until the broker acknowledges
   * it, within the bound of maxPending.
   */
  async publish(topic: string, payload: string | Buffer, options: PublishOptions = {}): Promise<void> {
    if (this.closed) throw new MqttSessionError('closed', 'session closed');
    const qos = options.qos ?? 1;
    if (qos === 0 && !this.client.connected) {
      this.counters.refused++;
      throw new MqttSessionError('offline', `not connected: QoS 0 message to ${topic} dropped`);
    }
    if (qos > 0 && this.pendingCount >= this.maxPending) {
      this.counters.refused++;
      throw new MqttSessionError('queue-full', `${this.pendingCount} messages await the broker; message to ${topic} dropped`);
    }
    if (qos > 0) this.pendingCount++;
    const sent = new Promise<void>((resolve, reject) => {
      this.client.publish(topic, payload, { qos, retain: options.retain ?? false }, (error) => {
        if (qos > 0) this.pendingCount--;
        if (error) reject(error);
        else resolve();
      });
    });
    // The message outlives the timeout (mqtt.js keeps it): never leave this promise unhandled.
    sent.catch(() => undefined);
    await this.withTimeout(sent, options.timeoutMs ?? this.publishTimeoutMs, `publish to ${topic}`);
    this.counters.published++;
  }

  /** Closes the connection. `graceful`: a DISCONNECT (no last will); otherwise the will fires, like a crash. */
  async close(graceful = true): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => this.client.end(!graceful, {}, () => resolve()));
  }

  private async withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.counters.timedOut++;
        reject(new MqttSessionError('timeout', `${what} not acknowledged within ${timeoutMs} ms${this.client.connected ? '' : ' (offline; it stays queued)'}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
