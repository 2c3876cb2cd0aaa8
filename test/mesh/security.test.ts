/**
 * The sample ACL (hardware/mosquitto-acl.conf) on a real Mosquitto with TLS
 * from a private CA and passwords: a node can write only its own topics, and
 * cannot send triggers; our client connects over mqtts:// with --ca.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { Topics } from '../../src/mesh/topics.js';
import { track, untrack } from '../support/processes.js';
import { repoRoot } from '../support/repo.js';

const ACL = join(repoRoot(), 'hardware', 'mosquitto-acl.conf');

function makeCa(dir: string): { cafile: string; certfile: string; keyfile: string } {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=lockstep test CA', '-keyout', 'ca.key', '-out', 'ca.crt']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.crt']);
  return { cafile: join(dir, 'ca.crt'), certfile: join(dir, 'server.crt'), keyfile: join(dir, 'server.key') };
}

describe('mesh security: the sample ACL, passwords and TLS on a real Mosquitto', function () {
  this.timeout(30_000);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-acl-'));
  let broker: PrivateBroker;
  const sessions: MqttSession[] = [];
  const topics = new Topics('g1');

  before(async function () {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      execFileSync('mosquitto_passwd', ['-h'], { stdio: 'ignore' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') this.skip(); // openssl or mosquitto_passwd missing
    }
    const tls = makeCa(dir);
    const passwd = join(dir, 'passwd');
    writeFileSync(passwd, '');
    for (const [user, pass] of [['lockstep-hub', 'hubpass'], ['pi-01', 'pass1'], ['pi-02', 'pass2']]) {
      execFileSync('mosquitto_passwd', ['-b', passwd, user!, pass!]);
    }
    broker = new PrivateBroker({ allowAnonymous: false, tls, extraConfig: [`password_file ${passwd}`, `acl_file ${ACL}`] });
    const { pid } = await broker.start();
    track(pid);
  });
  after(async () => {
    for (const s of sessions) await s.close(false).catch(() => undefined);
    if (broker?.pid) untrack(broker.pid);
    await broker?.dispose();
  });

  const connect = async (user: string, password: string) => {
    const s = new MqttSession({ url: broker.url, clientId: `c-${user}-${sessions.length}`, username: user, password, caFile: join(dir, 'ca.crt'), publishTimeoutMs: 2000 });
    sessions.push(s);
    await s.waitConnected(5000);
    return s;
  };

  it('refuses a wrong password and a client that does not trust the CA', async () => {
    const bad = new MqttSession({ url: broker.url, clientId: 'bad', username: 'pi-01', password: 'nope', caFile: join(dir, 'ca.crt') });
    sessions.push(bad);
    let error: unknown;
    await bad.waitConnected(1500).catch((e) => (error = e));
    expect(String(error)).to.match(/no connection/);
    const noCa = new MqttSession({ url: broker.url, clientId: 'noca', username: 'pi-01', password: 'pass1' });
    sessions.push(noCa);
    error = undefined;
    await noCa.waitConnected(1500).catch((e) => (error = e));
    expect(String(error)).to.match(/no connection/);
  });

  it('lets a node write only its own topics and read triggers; only the hub user sends triggers', async () => {
    const hub = await connect('lockstep-hub', 'hubpass');
    const pi1 = await connect('pi-01', 'pass1');
    const got: string[] = [];
    hub.onMessage((t, p) => got.push(`${t} ${p.toString()}`));
    await hub.subscribe([topics.allNodes('report'), topics.allNodes('state')]);
    const nodeGot: string[] = [];
    pi1.onMessage((t) => nodeGot.push(t));
    await pi1.subscribe([topics.trigger]);

    await pi1.publish(topics.node('pi-01', 'report'), 'own');
    await pi1.publish(topics.node('pi-02', 'report'), 'forged').catch(() => undefined); // refused by the broker
    await pi1.publish(topics.trigger, 'node-sent trigger').catch(() => undefined);
    await hub.publish(topics.trigger, 'hub trigger');
    await new Promise((r) => setTimeout(r, 500));
    expect(got).to.deep.equal([`${topics.node('pi-01', 'report')} own`]);
    expect(nodeGot).to.deep.equal([topics.trigger]); // only the hub's
  });
});
