/**
 * The trust record and adaptive replication (docs/spec/compute.md §4), as pure functions: trust is earned
 * by TRUST_STREAK valid results in a row and lost by one invalid result; a trusted worker runs a task alone
 * except for spot checks (at least 5 %); a worker with mostly invalid results is shunned.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { MIN_SPOT_CHECK, TRUST_STREAK, afterResult, isShunned, isTrusted, runsAlone, spotCheckProbability } from '../packages/daemon/src/compute/trust.ts'
import type { Trust } from '../packages/daemon/src/compute/store.ts'

const after = (results: boolean[], t?: Trust): Trust => results.reduce<Trust | undefined>((r, v) => afterResult(r, v), t)!

it('trust comes after TRUST_STREAK valid results in a row and goes with one invalid result', () => {
  assert.equal(isTrusted(undefined), false, 'a new worker key is not trusted')
  assert.equal(isTrusted(after(Array(TRUST_STREAK - 1).fill(true))), false)
  const trusted = after(Array(TRUST_STREAK).fill(true))
  assert.equal(isTrusted(trusted), true)
  const caught = afterResult(trusted, false)
  assert.deepEqual(caught, { valid: TRUST_STREAK, invalid: 1, streak: 0 })
  assert.equal(isTrusted(caught), false, 'one bad result costs all trust')
  assert.equal(isTrusted(after(Array(TRUST_STREAK - 1).fill(true), caught)), false, 'and it takes a whole new streak to earn it back')
})

it('a trusted worker runs a task alone except for spot checks, never below 5 %', () => {
  const t = after(Array(TRUST_STREAK).fill(true))
  assert.equal(spotCheckProbability(t), 1 / TRUST_STREAK)
  assert.equal(spotCheckProbability(after(Array(1000).fill(true))), MIN_SPOT_CHECK)
  assert.equal(runsAlone(t, 0.99), true)
  assert.equal(runsAlone(t, 0.01), false, 'a spot check')
  assert.equal(runsAlone(after(Array(TRUST_STREAK - 1).fill(true)), 0.99), false, 'an untrusted worker never runs alone')
  assert.equal(runsAlone(undefined, 0.99), false)
  // over many tasks of a long-trusted worker the share replicated is the 5 % floor
  const veteran = after(Array(500).fill(true))
  let checked = 0
  for (let i = 0; i < 1000; i++) if (!runsAlone(veteran, i / 1000)) checked++
  assert.equal(checked, 50)
})

it('a worker with at least 3 invalid results, more than its valid ones, is shunned', () => {
  assert.equal(isShunned(after([false, false])), false)
  assert.equal(isShunned(after([false, false, false])), true)
  assert.equal(isShunned(after([...Array(10).fill(true), false, false, false])), false, 'faults in a long good record are not shunning')
})
