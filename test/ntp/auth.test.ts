import { expect } from 'chai';
import { createSocket } from 'node:dgram';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  aesCmac,
  appendMac,
  computeDigest,
  decodePacketWithMac,
  KeyFileError,
  loadKeyFile,
  parseKeyFile,
  verifyMac,
  MAX_DIGEST_BYTES,
  type SymmetricKey,
} from '../../src/ntp/auth.js';
import { decodePacket, encodePacket, type NtpPacket } from '../../src/ntp/packet.js';
import { unixNsToNtp } from '../../src/ntp/timestamp.js';
import { haveChronyd, startChronydServer } from '../support/chronyd.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function request(version = 4): NtpPacket {
  return {
    leap: 0,
    version,
    mode: 3,
    stratum: 0,
    poll: 6,
    precision: -20,
    rootDelaySeconds: 0,
    rootDispersionSeconds: 0,
    referenceId: 0,
    referenceTime: 0n,
    originTime: 0n,
    receiveTime: 0n,
    transmitTime: unixNsToNtp(1_700_000_000_123_456_789n),
    extensions: [],
  };
}

describe('ntp/auth: symmetric keys', () => {
  describe('AES-CMAC against RFC 4493 and NIST SP 800-38B vectors', () => {
    const k128: SymmetricKey = { id: 1, type: 'AES128', key: hex('2b7e1516 28aed2a6 abf71588 09cf4f3c') };
    const m64 = hex(`6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51
                     30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710`);
    it('example 1: empty message', () => {
      expect(aesCmac(k128, Buffer.alloc(0)).toString('hex')).to.equal('bb1d6929e95937287fa37d129b756746');
    });
    it('example 2: one full block', () => {
      expect(aesCmac(k128, m64.subarray(0, 16)).toString('hex')).to.equal('070a16b46b4d4144f79bdd9dd04a287c');
    });
    it('example 3: 40 bytes (a padded last block)', () => {
      expect(aesCmac(k128, m64.subarray(0, 40)).toString('hex')).to.equal('dfa66747de9ae63030ca32611497c827');
    });
    it('example 4: 64 bytes', () => {
      expect(aesCmac(k128, m64).toString('hex')).to.equal('51f0bebf7e3b9d92fc49741779363cfe');
    });
    it('AES-256: empty and one block', () => {
      const k256: SymmetricKey = {
        id: 2,
        type: 'AES256',
        key: hex('603deb10 15ca71be 2b73aef0 857d7781 1f352c07 3b6108d7 2d9810a3 0914dff4'),
      };
      expect(aesCmac(k256, Buffer.alloc(0)).toString('hex')).to.equal('028962f61b7bf89efc6b551f4667d983');
      expect(aesCmac(k256, m64.subarray(0, 16)).toString('hex')).to.equal('28a7023f452e8f82bd4bf28d8c37c35c');
    });
  });

  describe('classic NTP MAC: digest(key || data), not HMAC', () => {
    const data = Buffer.from(Array.from({ length: 48 }, (_, i) => i));
    const key = Buffer.from('secret-key-0123');
    it('SHA1, MD5 and SHA256 (truncated to 20 bytes for NTPv4) match independently computed vectors', () => {
      expect(computeDigest({ id: 1, type: 'SHA1', key }, data).toString('hex')).to.equal('e8d4c61296392fb80dc945cdf5bf6fa29ba32d67');
      expect(computeDigest({ id: 1, type: 'MD5', key }, data).toString('hex')).to.equal('c058b48676a097ced79e541e2a84563b');
      const sha256 = 'b2b60abc09fc1f7e13533a5eddc8909678fb1f1f42a5197eb1fd6f11e0b3f8e5';
      expect(computeDigest({ id: 1, type: 'SHA256', key }, data).toString('hex')).to.equal(sha256.slice(0, 40));
      expect(computeDigest({ id: 1, type: 'SHA256', key }, data, MAX_DIGEST_BYTES).toString('hex')).to.equal(sha256);
    });
    it('SHA512 is truncated to 20 bytes in NTPv4 and full in NTPv3', () => {
      expect(computeDigest({ id: 1, type: 'SHA512', key }, data)).to.have.length(20);
      expect(computeDigest({ id: 1, type: 'SHA512', key }, data, MAX_DIGEST_BYTES)).to.have.length(64);
    });
  });

  describe('keyfile parsing (chrony format)', () => {
    it('reads every form: HEX:, ASCII:, bare ASCII, the MD5 default, comments and blank lines', () => {
      const keys = parseKeyFile(
        [
          '# lockstep keys',
          '',
          '1 SHA1 HEX:0102030405060708090A0B0C0D0E0F1011121314',
          '  2 AES128 HEX:2b7e151628aed2a6abf7158809cf4f3c  ',
          '3 SHA256 HEX:00ff',
          '4 MD5 ASCII:hello:world',
          '5 plainpassword',
          '; another comment',
          '% and another',
          '! and one more',
          '6 sha512 barekey',
          '7 AES256 HEX:603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4',
          '4294967295 SHA1 ASCII:max-id',
        ].join('\n'),
      );
      expect([...keys.keys()]).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 4294967295]);
      expect(keys.get(1)).to.deep.include({ type: 'SHA1' });
      expect(keys.get(1)!.key.toString('hex')).to.equal('0102030405060708090a0b0c0d0e0f1011121314');
      expect(keys.get(2)!.type).to.equal('AES128');
      expect(keys.get(3)!.key.toString('hex')).to.equal('00ff');
      expect(keys.get(4)!.key.toString()).to.equal('hello:world');
      expect(keys.get(5)).to.deep.include({ type: 'MD5' });
      expect(keys.get(5)!.key.toString()).to.equal('plainpassword');
      expect(keys.get(6)!.type).to.equal('SHA512');
      expect(keys.get(7)!.key).to.have.length(32);
    });

    const bad: Array<[string, RegExp]> = [
      ['1 SHA1 HEX:abc', /line 2: key 1: HEX: value must be an even number of hex digits/],
      ['1 SHA1 HEX:zz', /line 2: .*hex digits/],
      ['1 AES128 HEX:0011', /line 2: key 1: AES128 needs exactly 16 bytes \(32 hex digits\), got 2/],
      ['1 BLAKE2 HEX:0011', /line 2: key 1: unknown type 'BLAKE2'/],
      ['x SHA1 HEX:0011', /line 2: key id 'x' is not an integer/],
      ['4294967296 SHA1 HEX:0011', /line 2: key id .* is not an integer/],
      ['1 SHA1 HEX:0011 extra', /line 2: expected 'ID TYPE KEY'/],
      ['1', /line 2: expected 'ID TYPE KEY'/],
      ['1 SHA1 ASCII:', /line 2: key 1: the key value is empty/],
    ];
    for (const [line, pattern] of bad) {
      it(`refuses '${line}' with the line number and the reason`, () => {
        expect(() => parseKeyFile(`# first line\n${line}\n`)).to.throw(KeyFileError, pattern);
      });
    }

    it('refuses a duplicate key id', () => {
      expect(() => parseKeyFile('1 SHA1 ASCII:a\n1 MD5 ASCII:b\n')).to.throw(KeyFileError, /line 2: key id 1 is defined twice/);
    });

    it('loadKeyFile names the file when it cannot be read or parsed', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'lockstep-keys-'));
      try {
        const missing = join(dir, 'nope');
        let error: unknown;
        await loadKeyFile(missing).catch((e) => (error = e));
        expect(error).to.be.instanceOf(KeyFileError);
        expect((error as Error).message).to.contain(missing).and.to.contain('no such file');
        const badFile = join(dir, 'bad');
        writeFileSync(badFile, '1 SHA1 HEX:0\n');
        error = undefined;
        await loadKeyFile(badFile).catch((e) => (error = e));
        expect((error as Error).message).to.match(new RegExp(`${badFile}, line 1: key 1: HEX`));
        const good = join(dir, 'good');
        writeFileSync(good, '9 AES128 HEX:2b7e151628aed2a6abf7158809cf4f3c\n');
        expect((await loadKeyFile(good)).get(9)!.type).to.equal('AES128');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('appendMac / verifyMac', () => {
    const keys = parseKeyFile(
      ['1 SHA1 HEX:0102030405060708090A0B0C0D0E0F1011121314', '2 AES128 HEX:2b7e151628aed2a6abf7158809cf4f3c', '3 SHA256 ASCII:sha256-key', '4 MD5 ASCII:md5-key', '5 SHA512 ASCII:sha512-key'].join('\n'),
    );

    for (const id of [1, 2, 3, 4, 5]) {
      it(`key ${id} (${keys.get(id)!.type}): a signed NTPv4 packet verifies; its MAC is 20 or 24 bytes so decodePacket finds it`, () => {
        const bytes = appendMac(encodePacket(request()), keys.get(id)!);
        expect(bytes.length - 48).to.be.oneOf([20, 24]);
        const packet = decodePacket(bytes);
        expect(packet.mac!.keyId).to.equal(id);
        const result = verifyMac(bytes, packet, keys);
        expect(result.ok).to.equal(true);
        if (result.ok) expect(result.key.id).to.equal(id);
      });
    }

    it('refuses a flipped bit, an unknown key id, a missing MAC and a wrong digest length', () => {
      const bytes = appendMac(encodePacket(request()), keys.get(1)!);
      const tampered = Buffer.from(bytes);
      tampered[40]! ^= 1;
      expect(verifyMac(tampered, decodePacket(tampered), keys)).to.deep.include({ ok: false });
      const otherKeys = parseKeyFile('1 SHA1 HEX:FF02030405060708090A0B0C0D0E0F1011121314');
      const wrong = verifyMac(bytes, decodePacket(bytes), otherKeys);
      expect(wrong.ok).to.equal(false);
      expect(!wrong.ok && wrong.reason).to.match(/does not match key 1/);
      const unknown = verifyMac(bytes, decodePacket(bytes), parseKeyFile('7 SHA1 ASCII:x'));
      expect(!unknown.ok && unknown.reason).to.match(/unknown key id 1/);
      const plain = encodePacket(request());
      expect(verifyMac(plain, decodePacket(plain), keys)).to.deep.include({ ok: false });
      // An AES128 (16-byte) digest presented for the SHA1 key: wrong length, refused before comparing.
      const short = appendMac(encodePacket(request()), { ...keys.get(2)!, id: 1 });
      const shortResult = verifyMac(short, decodePacket(short), keys);
      expect(!shortResult.ok && shortResult.reason).to.match(/needs a 20-byte digest/);
    });

    it('NTPv3 carries the full SHA256/SHA512 digest (what chrony sends with such keys)', () => {
      for (const id of [3, 5]) {
        const bytes = appendMac(encodePacket(request(3)), keys.get(id)!, MAX_DIGEST_BYTES);
        expect(() => decodePacket(bytes)).to.throw(); // NTPv4 rules would read it as an extension field
        const packet = decodePacketWithMac(bytes);
        expect(packet.mac!.digest.length).to.equal(id === 3 ? 32 : 64);
        expect(verifyMac(bytes, packet, keys).ok).to.equal(true);
        // A truncated digest is not accepted for a v3 packet.
        const truncated = appendMac(encodePacket(request(3)), keys.get(id)!);
        expect(verifyMac(truncated, decodePacketWithMac(truncated), keys).ok).to.equal(false);
      }
    });

    it('decodePacketWithMac refuses trailing bytes that cannot be a v3 MAC', () => {
      const header = encodePacket(request(3));
      expect(() => decodePacketWithMac(Buffer.concat([header, Buffer.alloc(8)]))).to.throw(/not a MAC/);
      expect(() => decodePacketWithMac(Buffer.concat([header, Buffer.alloc(72)]))).to.throw(/not a MAC/);
    });
  });

  describe('interop: chronyd as a server signs replies we verify, and accepts our MACs', function () {
    this.timeout(30000);
    const keyLines = [
      '1 SHA1 HEX:0102030405060708090A0B0C0D0E0F1011121314',
      '2 AES128 HEX:2b7e151628aed2a6abf7158809cf4f3c',
      '3 SHA256 HEX:000102030405060708090a0b0c0d0e0f',
      '4 MD5 ASCII:lockstep-md5-key',
    ];
    const keys = parseKeyFile(keyLines.join('\n'));
    let server: Awaited<ReturnType<typeof startChronydServer>> | undefined;

    before(async function () {
      if (!haveChronyd()) this.skip();
      server = await startChronydServer({ keyLines });
    });
    after(async () => server?.stop());

    async function ask(bytes: Buffer): Promise<Buffer | undefined> {
      const socket = createSocket('udp4');
      try {
        return await new Promise<Buffer | undefined>((resolve) => {
          const timer = setTimeout(() => resolve(undefined), 1500);
          socket.on('message', (msg) => {
            clearTimeout(timer);
            resolve(msg);
          });
          socket.send(bytes, server!.port, server!.host);
        });
      } finally {
        socket.close();
      }
    }

    for (const [id, version] of [[1, 4], [2, 4], [3, 3], [3, 4], [4, 4]] as const) {
      it(`key ${id} (${keys.get(id)!.type}, NTPv${version})`, async () => {
        const key = keys.get(id)!;
        const req = appendMac(encodePacket(request(version)), key, version === 4 ? undefined : MAX_DIGEST_BYTES);
        let reply: Buffer | undefined;
        for (let attempt = 0; attempt < 3 && !reply; attempt++) reply = await ask(req);
        expect(reply, 'chronyd answered').to.not.equal(undefined);
        const packet = decodePacketWithMac(reply!);
        expect(packet.mode).to.equal(4);
        expect(packet.mac?.keyId).to.equal(id);
        expect(verifyMac(reply!, packet, keys)).to.deep.include({ ok: true });
      });
    }

    it('a request signed with a wrong key gets no signed reply (crypto-NAK or silence)', async () => {
      const wrong: SymmetricKey = { id: 1, type: 'SHA1', key: Buffer.alloc(20, 7) };
      const reply = await ask(appendMac(encodePacket(request()), wrong));
      if (reply && reply.length > 52) {
        // (52 bytes is a crypto-NAK: a zero key id and no digest.)
        const packet = decodePacketWithMac(reply);
        expect(verifyMac(reply, packet, keys).ok).to.equal(false);
      }
    });
  });
});
