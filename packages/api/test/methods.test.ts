import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { validateParams, P2posError, errorName } from '../src/index.ts'

const PEER = '12D3KooWBXTFK8XdVJn5GqZCgYjLLmDqUceEji77ADBNVr52opYY'

function code (fn: () => unknown): string {
  try { fn() } catch (e) { return (e as P2posError).code }
  return 'no error'
}

describe('method parameters', () => {
  it('accepts well-formed parameters', () => {
    assert.deepEqual(validateParams('peers.ping', { peer: PEER }), { peer: PEER })
    assert.deepEqual(validateParams('node.info', undefined), {})
    assert.deepEqual(validateParams('pubsub.publish', { app: 'org.x', topic: 't', data: 'aGk=' }), { app: 'org.x', topic: 't', data: 'aGk=' })
  })

  it('names the wrong field with a stable code', () => {
    assert.equal(code(() => validateParams('peers.ping', {})), 'E_BAD_REQUEST')
    assert.equal(code(() => validateParams('peers.ping', { peer: 'Not A Peer' })), 'E_INVALID_PEER')
    // a name or a petname is a PEER too (resolved by the daemon, names.md §5)
    assert.equal(code(() => validateParams('peers.ping', { peer: 'alice.kf3mxq7ph2n4w5ra' })), 'no error')
    assert.equal(code(() => validateParams('peers.ping', { peer: 'alice' })), 'no error')
    assert.equal(code(() => validateParams('peers.ping', { peer: 42 })), 'E_INVALID_PEER')
    assert.equal(code(() => validateParams('peers.ping', { peer: PEER, extra: 1 })), 'E_BAD_REQUEST')
    assert.equal(code(() => validateParams('peers.ping', [PEER])), 'E_BAD_REQUEST')
    assert.equal(code(() => validateParams('peers.ping', { peer: PEER, timeoutMs: -1 })), 'E_BAD_REQUEST')
    assert.equal(code(() => validateParams('peers.ping', { peer: PEER, timeoutMs: 1.5 })), 'E_BAD_REQUEST')
    assert.equal(code(() => validateParams('apps.register', { session: 's', app: 'Bad App' })), 'E_BAD_REQUEST')
    assert.equal(code(() => validateParams('pubsub.publish', { app: 'a', topic: 't', data: 'not base64!' })), 'E_BAD_REQUEST')
    assert.equal(code(() => validateParams('pubsub.publish', { app: 'a', topic: 't', data: Buffer.alloc(70_000).toString('base64') })), 'E_TOO_LARGE')
    assert.equal(code(() => validateParams('dht.put', { name: 'n', value: 'x'.repeat(9000) })), 'E_TOO_LARGE')
    try {
      validateParams('peers.connect', { addr: 5 })
    } catch (e) {
      assert.deepEqual((e as P2posError).details, { field: 'addr' })
    }
  })

  it('derives error names from codes', () => {
    assert.equal(errorName('E_NO_APP'), 'NoAppError')
    assert.equal(errorName('E_DAEMON_NOT_RUNNING'), 'DaemonNotRunningError')
    assert.equal(P2posError.from({ code: 'E_TIMEOUT', message: 'late' }).name, 'TimeoutError')
    assert.equal(P2posError.from({ code: 'E_MADE_UP' }).code, 'E_PROTOCOL')
  })
})
