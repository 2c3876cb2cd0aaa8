import { expect } from 'chai';
import {
  decodePacket, encodePacket, authenticatedBytes, kissCode, asciiRefId, formatRefId,
  NtpDecodeError, type NtpPacket,
} from '../../src/ntp/packet.js';

function basePacket(): NtpPacket {
  return {
    leap: 0, version: 4, mode: 4, stratum: 2, poll: 6, precision: -24,
    rootDelaySeconds: 0.015625, rootDispersionSeconds: 0.5,
    referenceId: 0x7f000001,
    referenceTime: 0xe8a1_2b3c_0000_0000n,
    originTime: 0x0123_4567_89ab_cdefn,
    receiveTime: 0xe8a1_2b3d_8000_0000n,
    transmitTime: 0xe8a1_2b3d_8000_1000n,
    extensions: [],
  };
}

describe('ntp/packet', () => {
  it('round-trips every header field', () => {
    const p = basePacket();
    const bytes = encodePacket(p);
    expect(bytes.length).to.equal(48);
    expect(decodePacket(bytes)).to.deep.equal(p);
  });

  it('decodes a client request assembled byte by byte (a vector independent of encodePacket)', () => {
    // 0x23 = LI 0, VN 4, mode 3; stratum 0; poll 0; precision 0x20; 36 zero bytes; transmit 0xeb0bd3a4_9c6e6000.
    const hex = '23000020' + '00'.repeat(36) + 'eb0bd3a49c6e6000';
    const p = decodePacket(Buffer.from(hex, 'hex'));
    expect(p).to.include({ leap: 0, version: 4, mode: 3, stratum: 0, poll: 0, precision: 32 });
    expect(p.transmitTime).to.equal(0xeb0b_d3a4_9c6e_6000n);
    expect(p.mac).to.equal(undefined);
  });

  it('tells a MAC from extension fields by length', () => {
    const withMac = encodePacket({ ...basePacket(), mac: { keyId: 7, digest: Buffer.alloc(20, 0xab) } });
    expect(withMac.length).to.equal(72);
    const decoded = decodePacket(withMac);
    expect(decoded.mac?.keyId).to.equal(7);
    expect(decoded.mac?.digest.length).to.equal(20);
    expect(authenticatedBytes(withMac, decoded).length).to.equal(48);

    const ext = { type: 0x0104, body: Buffer.alloc(28, 1) };
    const withExtAndMac = encodePacket({ ...basePacket(), extensions: [ext], mac: { keyId: 9, digest: Buffer.alloc(16, 2) } });
    const both = decodePacket(withExtAndMac);
    expect(both.extensions).to.have.length(1);
    expect(both.extensions[0]!.type).to.equal(0x0104);
    expect(both.extensions[0]!.body.equals(ext.body)).to.equal(true);
    expect(both.mac?.keyId).to.equal(9);
    expect(both.mac?.digest.equals(Buffer.alloc(16, 2))).to.equal(true);
  });

  it('refuses truncated, oversized, misaligned and badly extended packets with a reason', () => {
    const good = encodePacket(basePacket());
    const cases: Array<[string, Buffer]> = [
      ['truncated', good.subarray(0, 47)],
      ['oversized', Buffer.concat([good, Buffer.alloc(2000)])],
      ['not a multiple of 4', Buffer.concat([good, Buffer.alloc(2)])],
      ['neither a MAC nor an extension field', Buffer.concat([good, Buffer.alloc(8)])],
      ['bad length', Buffer.concat([good, Buffer.from([0, 1, 0, 200]), Buffer.alloc(28)])],
    ];
    for (const [reason, bytes] of cases) {
      expect(() => decodePacket(bytes), reason).to.throw(NtpDecodeError).with.property('reason').that.includes(reason.split(' ')[0]!);
    }
  });

  it('reads Kiss-o\'-Death codes only at stratum 0', () => {
    const kod = { ...basePacket(), stratum: 0, referenceId: asciiRefId('RATE') };
    expect(kissCode(decodePacket(encodePacket(kod)))).to.equal('RATE');
    expect(kissCode(basePacket())).to.equal(undefined);
    expect(formatRefId(asciiRefId('GPS'), 1)).to.equal('GPS');
    expect(formatRefId(0x7f000001, 3)).to.equal('127.0.0.1');
  });

  it('survives thousands of random and mutated packets (only NtpDecodeError escapes)', () => {
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const good = encodePacket({ ...basePacket(), mac: { keyId: 1, digest: Buffer.alloc(20, 5) } });
    let decoded = 0;
    for (let i = 0; i < 5000; i++) {
      let bytes: Buffer;
      if (i % 2 === 0) {
        bytes = Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
      } else {
        bytes = Buffer.from(good);
        for (let m = 0; m < 1 + Math.floor(rand() * 6); m++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
        if (rand() < 0.3) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
      }
      try {
        decodePacket(bytes);
        decoded++;
      } catch (error) {
        expect(error).to.be.instanceOf(NtpDecodeError);
      }
    }
    expect(decoded).to.be.greaterThan(0); // mutated-but-well-formed packets still decode
  });
});
