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
