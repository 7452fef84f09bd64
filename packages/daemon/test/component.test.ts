/**
 * The daemon's lifecycle: components start in order and stop in reverse, every one of them — also when
 * one fails to stop, and when one fails to start (those already started are stopped again).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lifecycle, type Component } from '../src/core/component.ts'

function recorder (log: string[], name: string, fail: { start?: boolean, stop?: boolean } = {}): Component {
  return {
    name,
    start: async () => { log.push(`start ${name}`); if (fail.start === true) throw new Error(`${name} cannot start`) },
    stop: async () => { log.push(`stop ${name}`); if (fail.stop === true) throw new Error(`${name} cannot stop`) }
  }
}

test('starts in order, stops in reverse, and stops the rest when one fails to stop', async () => {
  const log: string[] = []
  const logged: string[] = []
  const life = new Lifecycle([recorder(log, 'a'), recorder(log, 'b', { stop: true }), { name: 'no-hooks' }, recorder(log, 'c')], m => logged.push(m))
  await life.start()
  assert.deepEqual(log, ['start a', 'start b', 'start c'])
  await life.stop()
  assert.deepEqual(log.slice(3), ['stop c', 'stop b', 'stop a'])
  assert.match(logged.join('\n'), /b failed to stop: b cannot stop/)
  await life.stop() // a second stop stops nothing twice
  assert.equal(log.length, 6)
})

test('a component that fails to start: those started before it are stopped, in reverse, and the error is thrown', async () => {
  const log: string[] = []
  const life = new Lifecycle([recorder(log, 'a'), recorder(log, 'b'), recorder(log, 'c', { start: true }), recorder(log, 'd')])
  await assert.rejects(life.start(), /c cannot start/)
  assert.deepEqual(log, ['start a', 'start b', 'start c', 'stop b', 'stop a'])
})
