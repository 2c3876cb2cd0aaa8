/**
 * The long-running hub: serves time to the nodes (the embedded NTP server,
 * so nodes need no chrony and no router time server) and watches the group
 * (presence and sync quality from retained states). Triggers are sent by
 * `lockstep trigger`, a one-shot client of the same broker: the hub holds no
 * state a trigger needs, so either can restart without the other.
 */
import type { Timescale } from '../time/timescale.js';
import { NtpServer, type NtpServerOptions } from '../ntp/server.js';
import { MqttSession, type MqttSessionOptions } from './mqtt-session.js';
import { NodeDirectory, type NodeView } from './presence.js';
import type { Topics } from './topics.js';

export interface MeshHubOptions {
  topics: Topics;
  mqtt: Omit<MqttSessionOptions, 'clientId'> & { clientId?: string };
  timescale: Timescale;
  /** NTP server settings (port, bind, allow, keys); undefined: do not serve time. */
  ntp?: Omit<NtpServerOptions, 'timescale'>;
  onNode?: (view: NodeView) => void;
}

export class MeshHub {
  readonly directory: NodeDirectory;
  readonly session: MqttSession;
  private server: NtpServer | undefined;
  ntpAddress: { address: string; port: number } | undefined;

  constructor(private readonly o: MeshHubOptions) {
    this.directory = new NodeDirectory(o.topics, () => (o.timescale.synchronized ? o.timescale.nowNs() : undefined));
    this.session = new MqttSession({ ...o.mqtt, clientId: o.mqtt.clientId ?? `lockstep-hub-${process.pid}` });
    this.session.onMessage((topic, payload) => this.directory.handle(topic, payload));
    if (o.onNode) this.directory.onChange(o.onNode);
  }

  async start(): Promise<void> {
    if (this.o.ntp) {
      this.server = new NtpServer({ ...this.o.ntp, timescale: this.o.timescale });
      this.ntpAddress = await this.server.start();
    }
    const subscribe = () => this.session.subscribe([this.o.topics.allNodes('state')]).catch(() => undefined);
    this.session.onConnect(() => void subscribe());
    if (this.session.connected) await subscribe();
  }

  ntpStats(): ReturnType<NtpServer['stats']> | undefined {
    return this.server?.stats();
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    await this.session.close(true);
  }
}
