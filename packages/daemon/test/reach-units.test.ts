import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Networks } from '../src/reach/networks.ts'
import { encode, decode } from '../src/reach/holepunch.ts'
import { dialPortFor } from '../src/node/tcp-dial-port.ts'

describe('which addresses count as public', () => {
  it('keeps libp2p\'s private ranges private, and adds the configured ones', () => {
    const plain = new Networks()
    assert.equal(plain.isPublicAddr('/ip4/8.8.8.8/tcp/1'), true)
    for (const a of ['/ip4/10.1.2.3/tcp/1', '/ip4/192.168.1.2/tcp/1', '/ip4/127.0.0.1/tcp/1', '/ip4/203.0.113.5/tcp/1', '/ip4/100.64.0.1/tcp/1']) {
      assert.equal(plain.isPublicAddr(a), false, a)
    }
    const lab = new Networks(['203.0.113.0/24', '10.20.0.0/16'])
    assert.equal(lab.isPublicAddr('/ip4/203.0.113.5/udp/4151/quic-v1'), true)
    assert.equal(lab.isPublicAddr('/ip4/10.20.9.9/tcp/1'), true)
    assert.equal(lab.isPublicAddr('/ip4/10.21.0.1/tcp/1'), false, 'only the configured range')
    assert.equal(lab.isPublicAddr('/ip4/192.0.2.2/tcp/1'), false)
    assert.equal(lab.isPublicAddr('/dns4/example.org/tcp/1'), true)
    assert.equal(lab.isPublicAddr('/ip4/203.0.113.10/tcp/4151/p2p/12D3KooWEMoLmJ8ZYaA9V2tpBWXGjC7qAQpG4nhtxWZNpgbDkTDW/p2p-circuit'), true, 'a relayed address by its relay')
  })

  it('refuses a malformed range with a message naming it', () => {
    for (const bad of ['203.0.113.0', '203.0.113.0/33', 'x/8', '::1/129']) {
      assert.throws(() => new Networks([bad]), (err: any) => err.code === 'E_BAD_REQUEST' && err.message.includes(bad), bad)
    }
  })
})

describe('DCUtR messages', () => {
  it('encode as the libp2p HolePunch protobuf, length-prefixed', () => {
    // type=CONNECT (field 1 varint 100), ObsAddrs=/ip4/1.2.3.4/tcp/5 (field 2, 8 bytes: 04 01020304 06 0005)
    assert.deepEqual([...encode(100, ['/ip4/1.2.3.4/tcp/5'])], [12, 0x08, 100, 0x12, 8, 4, 1, 2, 3, 4, 6, 0, 5])
    assert.deepEqual([...encode(300, [])], [3, 0x08, 0xac, 0x02])
  })

  it('decode round-trips, skips unknown fields and rejects broken input', () => {
    const frame = encode(100, ['/ip4/198.51.100.7/tcp/4153', '/ip4/203.0.113.21/udp/4151/quic-v1'])
    const msg = decode(frame.subarray(1))
    assert.equal(msg.type, 100)
    assert.deepEqual(msg.addrs.map(String), ['/ip4/198.51.100.7/tcp/4153', '/ip4/203.0.113.21/udp/4151/quic-v1'])
    // an unknown varint field 3 and an unknown bytes field 4 are skipped
    assert.equal(decode(Uint8Array.from([0x18, 1, 0x22, 2, 9, 9, 0x08, 100])).type, 100)
    assert.throws(() => decode(Uint8Array.from([0x12, 7, 4, 1])), /truncated/)
    assert.throws(() => decode(Uint8Array.from([])), /without a type/)
    assert.throws(() => decode(Uint8Array.from([0x08, 0xff])), /bad varint/)
  })
})

describe('the TCP dial port', () => {
  it('is the first IPv4 TCP listen port + 2, and off for ephemeral listen ports', () => {
    assert.equal(dialPortFor(['/ip4/0.0.0.0/udp/4151/quic-v1', '/ip4/0.0.0.0/tcp/4151', '/ip4/0.0.0.0/tcp/4152/ws']), 4153)
    assert.equal(dialPortFor(['/ip4/127.0.0.1/tcp/0']), 0)
    // an IPv6-only daemon punches from a fixed port too; IPv4's listen port wins when both are there
    assert.equal(dialPortFor(['/ip6/::/tcp/5000']), 5002)
    assert.equal(dialPortFor(['/ip6/::/tcp/5000', '/ip4/0.0.0.0/tcp/4151']), 4153)
    assert.equal(dialPortFor(['/ip4/0.0.0.0/udp/4151/quic-v1']), 0)
    assert.equal(dialPortFor(['/ip4/0.0.0.0/tcp/65535']), 0)
  })
})
