import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos invite PERSON APPID [--context JSON] [--ttl SECONDS] [--json]'

/** Invites a person to an app, with a context for that app; delivered now or once one of their computers is online. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { context: { type: 'string' }, ttl: { type: 'string' } }, USAGE)
  if (positionals.length !== 2) throw new UsageError(USAGE)
  let context: unknown = null
  if (values.context != null) {
    try {
      context = JSON.parse(values.context)
    } catch {
      throw new UsageError(`--context must be JSON\nusage: ${USAGE}`)
    }
  }
  const ttl = values.ttl == null ? undefined : Number(values.ttl)
  if (ttl != null && !(Number.isInteger(ttl) && ttl > 0)) throw new UsageError(`--ttl takes whole seconds\nusage: ${USAGE}`)
  const p2p = await client()
  const sent = await p2p.invite(positionals[0].replace(/^p2pos:\/\//, ''), context, { app: positionals[1], ttlMs: ttl == null ? undefined : ttl * 1000 })
  print(values.json === true, sent, () => sent.state === 'delivered'
    ? `invitation ${sent.id} delivered to ${sent.deliveredTo ?? sent.to}`
    : `invitation ${sent.id} ${sent.state}${sent.error != null ? ` (${sent.error})` : ''}; delivery goes on until ${sent.expires}`)
  return 0
}
