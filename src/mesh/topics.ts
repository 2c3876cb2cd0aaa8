/**
 * MQTT topic layout of a lockstep group. Everything lives under one prefix
 * (`lockstep/<group>` by default) so one broker can host several groups and
 * an ACL can give each node write access to its own subtree only:
 *
 *   <prefix>/trigger                 hub -> nodes: start something (QoS 1)
 *   <prefix>/cancel                  hub -> nodes: cancel a trigger (QoS 1)
 *   <prefix>/node/<id>/trigger       hub -> one node (same schema as above)
 *   <prefix>/node/<id>/state         node: retained sync quality; last will "offline"
 *   <prefix>/node/<id>/ack           node -> hub: scheduled / rejected (QoS 1)
 *   <prefix>/node/<id>/report        node -> hub: one message per fire (QoS 1)
 */

export const DEFAULT_GROUP = 'default';
export const TOPIC_ROOT = 'lockstep';

/** MQTT topic levels may not contain wildcards or '/', and ids show up in file names. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class TopicError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TopicError';
  }
}

/** A node id or group name: letters, digits, '.', '_', '-'; up to 64 characters. */
export function checkId(kind: 'node id' | 'group', value: string): string {
  if (!ID_PATTERN.test(value)) {
    throw new TopicError(`${kind} '${value}' must be 1-64 letters, digits, '.', '_' or '-' (no '/', '+', '#')`);
  }
  return value;
}

export type NodeChannel = 'state' | 'ack' | 'report' | 'trigger';

export class Topics {
  readonly prefix: string;

  /** `prefix` overrides the whole `lockstep/<group>` root (for brokers with their own layout). */
  constructor(readonly group: string = DEFAULT_GROUP, prefix?: string) {
    if (prefix !== undefined) {
      if (!prefix || /[+#]/.test(prefix) || prefix.startsWith('/') || prefix.endsWith('/')) {
        throw new TopicError(`topic prefix '${prefix}' must be non-empty, without wildcards or a leading/trailing '/'`);
      }
      this.prefix = prefix;
    } else {
      this.prefix = `${TOPIC_ROOT}/${checkId('group', group)}`;
    }
  }

  get trigger(): string {
    return `${this.prefix}/trigger`;
  }

  get cancel(): string {
    return `${this.prefix}/cancel`;
  }

  node(id: string, channel: NodeChannel): string {
    return `${this.prefix}/node/${checkId('node id', id)}/${channel}`;
  }

  /** Subscription filter for one channel of every node (`<prefix>/node/+/state`). */
  allNodes(channel: NodeChannel): string {
    return `${this.prefix}/node/+/${channel}`;
  }

  /** Which node and channel a topic under this prefix belongs to, or undefined. */
  parseNodeTopic(topic: string): { nodeId: string; channel: NodeChannel } | undefined {
    const head = `${this.prefix}/node/`;
    if (!topic.startsWith(head)) return undefined;
    const parts = topic.slice(head.length).split('/');
    if (parts.length !== 2) return undefined;
    const [nodeId, channel] = parts as [string, string];
    if (!ID_PATTERN.test(nodeId)) return undefined;
    if (channel !== 'state' && channel !== 'ack' && channel !== 'report' && channel !== 'trigger') return undefined;
    return { nodeId, channel };
  }
}
