/** Shared CLI plumbing: argument parsing, JSON vs human output, errors with stable exit codes. */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { P2pos, P2posError, type ErrorCode } from '@p2pos/sdk'

export class UsageError extends Error {}

export function args<T extends NonNullable<ParseArgsConfig['options']>> (argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options: { ...options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
  } catch (err: any) {
    throw new UsageError(`${err.message}\nusage: ${usage}`)
  }
}

export function print (json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : human() + '\n')
}

export async function client (): Promise<P2pos> {
  return await P2pos.connect()
}

/** Exit codes (README §CLI): 0 ok, 1 other error, 2 usage, 3 daemon not running, 4 peer, 5 app or service, 6 bad manifest, 7 not permitted. */
const EXIT: Partial<Record<ErrorCode, number>> = {
  E_DAEMON_NOT_RUNNING: 3,
  E_NOT_RUNNING: 3,
  E_UNKNOWN_PEER: 4,
  E_PEER_UNREACHABLE: 4,
  E_INVALID_PEER: 4,
  E_TIMEOUT: 4,
  E_NOT_CONNECTED: 4,
  E_NO_APP: 5,
  E_APP_REJECTED: 5,
  E_NO_SERVICE: 5,
  E_BAD_MANIFEST: 6,
  E_FORBIDDEN: 7,
  E_NOT_MEMBER: 7
}

export function fail (err: unknown, json: boolean): number {
  if (err instanceof UsageError) {
    process.stderr.write(`p2pos: ${err.message}\n`)
    return 2
  }
  const e = err instanceof P2posError ? err : new P2posError('E_INTERNAL', String((err as any)?.message ?? err))
  if (json) process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n')
  process.stderr.write(`p2pos: ${e.message} [${e.code}]\n`)
  return EXIT[e.code] ?? 1
}
