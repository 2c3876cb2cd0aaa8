/**
 * The long-running hub: serves time to the nodes (the embedded NTP server,
 * so nodes need no chrony and no router time server) and watches the group
 * (presence and sync quality from retained states). Triggers are sent by
 * `lockstep trigger`, a one-shot client of the same broker: the hub holds no
 * state a trigger needs, so either can restart without the other.
 */
import type { Timescale } from '../time/timescale.js';
import { NtpServer, type NtpServerOptions } from '../ntp/server.js';
import { NtpServerThread, canRunInThread } from '../ntp/server-thread.js';
import { MqttSession, WATCH_QOS, type MqttSessionOptions } from './mqtt-session.js';
import { NodeDirectory, type NodeView } from './presence.js';
import type { Topics } from './topics.js';
import { Coordinator } from './coordinator.js';
import type { KeyRing } from './signing.js';

export interface MeshHubOptions {
  topics: Topics;
  mqtt: Omit<MqttSessionOptions, 'clientId'> & { clientId?: string };
  timescale: Timescale;
  /**
   * NTP server settings (port, bind, allow, keys); undefined: do not serve time.
   * `thread` (default true where the Timescale is on the real clock): answer
   * from a worker thread, out of reach of this event loop's stalls (server-thread.ts).
   */
  ntp?: Omit<NtpServerOptions, 'timescale'> & { thread?: boolean };
  onNode?: (view: NodeView) => void;
  /**
   * Triggers from the hub itself (its page): a Coordinator on the hub's own
   * session and directory, the same one `lockstep trigger` runs.
   */
  control?: { keys?: KeyRing; keyId?: string };
  /** Also hear every ack and fire report (the page's "last trigger" of each node, whoever sent it). */
  watchTriggers?: boolean;
}

export class MeshHub {
  readonly directory: NodeDirectory;
  readonly session: MqttSession;
  readonly coordinator: Coordinator | undefined;
  private server: NtpServer | NtpServerThread | undefined;
  ntpAddress: { address: string; port: number } | undefined;

  constructor(private readonly o: MeshHubOptions) {
    this.directory = new NodeDirectory(o.topics, () => (o.timescale.synchronized ? o.timescale.nowNs() : undefined));
    this.session = new MqttSession({ ...o.mqtt, clientId: o.mqtt.clientId ?? `lockstep-hub-${process.pid}` });
    if (o.control) {
      // The coordinator feeds the directory with the states it receives: one handler, not two.
      this.coordinator = new Coordinator({ session: this.session, topics: o.topics, directory: this.directory, timescale: o.timescale, ...o.control });
    } else this.session.onMessage((topic, payload) => this.directory.handle(topic, payload));
    if (o.onNode) this.directory.onChange(o.onNode);
  }

  async start(): Promise<void> {
    if (this.o.ntp) {
      const { thread, ...ntp } = this.o.ntp;
      const options = { ...ntp, timescale: this.o.timescale };
      this.server = thread !== false && canRunInThread(this.o.timescale) ? new NtpServerThread(options) : new NtpServer(options);
      this.ntpAddress = await this.server.start();
    }
    const t = this.o.topics;
    const filters = this.coordinator || this.o.watchTriggers ? [t.allNodes('state'), t.allNodes('ack'), t.allNodes('report')] : [t.allNodes('state')];
    const subscribe = () => this.session.subscribe(filters, { qos: WATCH_QOS }).catch(() => undefined);
    this.session.onConnect(() => void subscribe());
    if (this.session.connected) await subscribe();
  }

  get topics(): Topics {
    return this.o.topics;
  }

  ntpStats(): ReturnType<NtpServer['stats']> | undefined {
    return this.server?.stats();
  }

  /** What the hub's NTP replies say about its time now (stratum, reference, bound); undefined without NTP. */
  /** Whether the NTP server answers from a worker thread of its own. */
  get ntpInThread(): boolean {
    return this.server instanceof NtpServerThread;
  }

  ntpReference(): ReturnType<NtpServer['reference']> | undefined {
    return this.server?.running ? this.server.reference() : undefined;
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    await this.session.close(true);
  }
}
