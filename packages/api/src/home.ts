/**
 * Where a daemon keeps its state and a client finds it (local-api.md §1): `$P2POS_HOME`, else
 * `~/.p2pos`. Node built-ins only: the api package has no runtime dependencies.
 */
import { homedir } from 'node:os'
import { join } from 'node:path'

/** The daemon's home directory: `$P2POS_HOME` when set, else `~/.p2pos`. */
export function defaultHome (): string {
  return process.env.P2POS_HOME ?? join(homedir(), '.p2pos')
}
