import { it } from 'node:test'
import assert from 'node:assert/strict'
import { until, within } from '../src/wait.ts'

it('until resolves with the first truthy value, retrying falsy answers and throws', async () => {
  let calls = 0
  const v = await until('the third call', async () => {
    calls++
    if (calls === 1) throw new Error('not yet')
    return calls === 3 && { calls }
  }, 5000)
  assert.deepEqual(v, { calls: 3 })
})

it('until names what it waited for, and the last error, when it times out', async () => {
  await assert.rejects(until('the moon', async () => { throw new Error('cloudy') }, 100), /timed out after 100 ms waiting for the moon \(last error: cloudy\)/)
  await assert.rejects(until('nothing', () => false, 50), /waiting for nothing$/)
})

it('within passes the result through, or rejects naming what, and leaves no timer behind', async () => {
  assert.equal(await within(1000, 'a quick answer', Promise.resolve(7)), 7)
  await assert.rejects(within(1000, 'a failure', Promise.reject(new Error('boom'))), /boom/)
  await assert.rejects(within(20, 'a slow answer', new Promise(() => {})), /a slow answer: no answer within 20 ms/)
  const timers = process.getActiveResourcesInfo().filter(r => r === 'Timeout').length
  await within(60_000, 'one more', Promise.resolve())
  assert.equal(process.getActiveResourcesInfo().filter(r => r === 'Timeout').length, timers)
})
