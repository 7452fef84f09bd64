/**
 * The trust record of a worker key and adaptive replication (compute.md §4), BOINC's scheme without its
 * server: a worker whose last TRUST_STREAK results were all valid is trusted, and a task whose first
 * worker is trusted runs on it alone unless a spot check (probability max(MIN_SPOT_CHECK, 1/streak))
 * replicates it anyway. One invalid result resets the streak; a worker with mostly invalid results is
 * shunned. Pure functions, no I/O.
 */
import type { Trust } from './store.ts'

export const TRUST_STREAK = 10
export const MIN_SPOT_CHECK = 0.05

export const NEW_TRUST: Trust = Object.freeze({ valid: 0, invalid: 0, streak: 0 })

export function isTrusted (t: Trust | undefined): boolean {
  return t != null && t.streak >= TRUST_STREAK
}

/**
 * A worker with at least SHUN_AFTER invalid results and more invalid than valid ones gets no more tasks
 * from this computer (BOINC lowers such a host's daily quota to one; here its results are worth nothing).
 */
export const SHUN_AFTER = 3

export function isShunned (t: Trust | undefined): boolean {
  return t != null && t.invalid >= SHUN_AFTER && t.invalid > t.valid
}

export function spotCheckProbability (t: Trust): number {
  return Math.max(MIN_SPOT_CHECK, 1 / Math.max(1, t.streak))
}

/** Whether a task whose first worker has record `t` runs on it alone; `random` in [0, 1). */
export function runsAlone (t: Trust | undefined, random: number): boolean {
  return t != null && isTrusted(t) && random >= spotCheckProbability(t)
}

/** The record after one more result, valid (equal to the accepted one) or not. */
export function afterResult (t: Trust | undefined, valid: boolean): Trust {
  const r = t ?? NEW_TRUST
  return valid
    ? { valid: r.valid + 1, invalid: r.invalid, streak: r.streak + 1 }
    : { valid: r.valid, invalid: r.invalid + 1, streak: 0 }
}
