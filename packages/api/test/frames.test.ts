import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { FrameDecoder, FrameType, encodeAck, encodeFrame, encodeMsg, encodeNack, readU32, LIMITS, P2posError } from '../src/index.ts'

describe('channel frames', () => {
  it('decodes frames split at every possible byte boundary', () => {
    const bytes = new Uint8Array([...encodeMsg(7, 0, new TextEncoder().encode('hello')), ...encodeAck(7), ...encodeFrame(FrameType.DATA, new Uint8Array([1, 2, 3])), ...encodeFrame(FrameType.END)])
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new FrameDecoder()
      const frames = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))]
      assert.deepEqual(frames.map(f => f.type), [FrameType.MSG, FrameType.ACK, FrameType.DATA, FrameType.END])
      assert.equal(readU32(frames[0].payload), 7)
      assert.equal(frames[0].payload[4], 0)
      assert.equal(new TextDecoder().decode(frames[0].payload.subarray(5)), 'hello')
      assert.deepEqual([...frames[2].payload], [1, 2, 3])
      assert.equal(frames[3].payload.byteLength, 0)
      assert.equal(d.pending, 0)
    }
  })

  it('decodes byte by byte', () => {
    const bytes = encodeNack(3, 'E_APP_REJECTED', 'no thanks')
    const d = new FrameDecoder()
    const frames = []
    for (const b of bytes) frames.push(...d.push(new Uint8Array([b])))
    assert.equal(frames.length, 1)
    assert.equal(frames[0].type, FrameType.NACK)
    assert.deepEqual(JSON.parse(new TextDecoder().decode(frames[0].payload.subarray(4))), { code: 'E_APP_REJECTED', message: 'no thanks' })
  })

  it('refuses unknown frame types and oversized frames before buffering them', () => {
    assert.throws(() => new FrameDecoder().push(new Uint8Array([9, 0, 0, 0, 0])), (e: P2posError) => e.code === 'E_PROTOCOL')
    const huge = new Uint8Array([FrameType.DATA, 0x7f, 0xff, 0xff, 0xff])
    assert.throws(() => new FrameDecoder().push(huge), (e: P2posError) => e.code === 'E_TOO_LARGE')
  })

  it('refuses to encode a message over the limit', () => {
    assert.throws(() => encodeMsg(1, 0, new Uint8Array(LIMITS.messageBytes + 1)), (e: P2posError) => e.code === 'E_TOO_LARGE' && e.name === 'TooLargeError')
    assert.equal(encodeMsg(1, 0, new Uint8Array(LIMITS.messageBytes)).byteLength, LIMITS.messageBytes + 10)
  })
})

describe('channel frames, streaming DATA', () => {
  it('hands DATA out in pieces as it arrives, with the same bytes, and other frames whole', () => {
    const body = new Uint8Array(1000).map((_, i) => i % 251)
    const bytes = new Uint8Array([...encodeFrame(FrameType.DATA, body), ...encodeMsg(1, 0, new TextEncoder().encode('after')), ...encodeFrame(FrameType.END)])
    for (const step of [1, 7, 333, 4096]) {
      const d = new FrameDecoder({ streamData: true })
      const frames = []
      for (let off = 0; off < bytes.length; off += step) frames.push(...d.push(bytes.subarray(off, off + step)))
      const data = frames.filter(f => f.type === FrameType.DATA)
      assert.deepEqual(Buffer.concat(data.map(f => f.payload)), Buffer.from(body))
      if (step < 1000) assert.ok(data.length > 1, 'delivered in pieces')
      assert.deepEqual(frames.filter(f => f.type !== FrameType.DATA).map(f => f.type), [FrameType.MSG, FrameType.END])
      assert.equal(d.pending, 0)
    }
  })
})
