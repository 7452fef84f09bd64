/** bin/conference for tests, run as a user would: against a daemon's home, never throwing on failure. */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { REPO, runProgram, type CliResult } from '../packages/testnet/src/index.ts'

export const CONFERENCE = join(REPO, 'bin/conference')

export async function conference (home: string, argv: string[], options: { timeoutMs?: number } = {}): Promise<CliResult> {
  return await runProgram(home, CONFERENCE, argv, options)
}

/** `conference ARGS --json` that must succeed; its parsed output. */
export async function conferenceJson (home: string, argv: string[]): Promise<any> {
  const r = await conference(home, [...argv, '--json'])
  assert.equal(r.code, 0, `conference ${argv.join(' ')}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout)
}
