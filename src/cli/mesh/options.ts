/**
 * Options shared by `lockstep node`, `hub`, `trigger` and `demo`: the broker
 * connection (URL, credentials, TLS), the group, and the trigger keys.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { Topics, TopicError } from '../../mesh/topics.js';
import { KeyRing, KeyFileError } from '../../mesh/signing.js';
import type { MqttSessionOptions } from '../../mesh/mqtt-session.js';

export const MQTT_OPTIONS = {
  broker: { type: 'string', multiple: true },
  group: { type: 'string' },
  prefix: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  'password-file': { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  keys: { type: 'string' },
} as const;

export const MQTT_HELP = `broker:
  --broker URL[,URL...]  mqtt://HOST[:1883] or mqtts://HOST[:8883] (default mqtt://127.0.0.1:1883); several
                         (repeat it or separate by commas) are tried in turn when one fails: failover
                         between brokers that are bridged or clustered (see README, 'More than one broker')
  --group NAME           topics live under lockstep/NAME/ (default 'default')
  --prefix TOPIC         use this topic prefix instead of lockstep/GROUP
  --username U           MQTT user name (an ACL can limit each node to its own topics)
  --password P | --password-file FILE
  --ca FILE              CA certificate (PEM) that signed the broker's TLS certificate (mqtts://)
  --cert FILE --key FILE client certificate and key, if the broker requires them
  --keys FILE            trigger signing keys, one 'ID HEX:<hex>' per line (HMAC-SHA256)`;

export interface MeshValues {
  broker?: string | string[];
  group?: string;
  prefix?: string;
  username?: string;
  password?: string;
  'password-file'?: string;
  ca?: string;
  cert?: string;
  key?: string;
  keys?: string;
}

export function topicsFrom(v: MeshValues): Topics {
  try {
    return new Topics(v.group ?? 'default', v.prefix);
  } catch (error) {
    if (error instanceof TopicError) throw new UsageError(error.message);
    throw error;
  }
}

export function mqttFrom(v: MeshValues): Omit<MqttSessionOptions, 'clientId'> {
  const given = (Array.isArray(v.broker) ? v.broker : v.broker === undefined ? [] : [v.broker]).flatMap((b) => b.split(',')).map((b) => b.trim()).filter(Boolean);
  const urls = given.length ? given : ['mqtt://127.0.0.1:1883'];
  for (const url of urls) {
    if (!/^(mqtts?|wss?):\/\/[^/]+/.test(url)) throw new UsageError(`--broker '${url}' must look like mqtt://HOST:PORT or mqtts://HOST:PORT`);
    if ((v.ca || v.cert) && !/^(mqtts|wss):/.test(url)) throw new UsageError('--ca/--cert need an mqtts:// broker URL');
  }
  if (new Set(urls.map((u) => u.split(':')[0])).size > 1) throw new UsageError(`--broker: give every URL the same scheme (mqtt:// or mqtts://), not ${urls.join(', ')}`);
  const url = urls[0]!;
  if (!!v.cert !== !!v.key) throw new UsageError('--cert and --key go together');
  const options: Omit<MqttSessionOptions, 'clientId'> = { url };
  if (urls.length > 1) options.servers = urls;
  if (v.username) options.username = v.username;
  if (v.password !== undefined && v['password-file'] !== undefined) throw new UsageError('give --password or --password-file, not both');
  if (v.password !== undefined) options.password = v.password;
  if (v['password-file'] !== undefined) {
    try {
      options.password = readFileSync(v['password-file'], 'utf8').trim();
    } catch (error) {
      throw new UsageError(`cannot read --password-file ${v['password-file']}: ${(error as NodeJS.ErrnoException).code}`);
    }
  }
  for (const [flag, path] of [['ca', v.ca], ['cert', v.cert], ['key', v.key]] as const) {
    if (path) {
      try {
        readFileSync(path);
      } catch (error) {
        throw new UsageError(`cannot read --${flag} ${path}: ${(error as NodeJS.ErrnoException).code}`);
      }
    }
  }
  if (v.ca) options.caFile = v.ca;
  if (v.cert) options.certFile = v.cert;
  if (v.key) options.keyFile = v.key;
  return options;
}

export function keysFrom(v: MeshValues): KeyRing | undefined {
  if (!v.keys) return undefined;
  try {
    return KeyRing.load(v.keys);
  } catch (error) {
    if (error instanceof KeyFileError) throw new UsageError(error.message);
    throw error;
  }
}
