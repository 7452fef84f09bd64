import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos link CID [--type TYPE] [--ttl SECONDS] [--json]'

/** A loopback link that plays or downloads the file under CID in a browser (GET with byte ranges), for a while. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { type: { type: 'string' }, ttl: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`wrong arguments\nusage: ${USAGE}`)
  const ttl = values.ttl != null ? Number(values.ttl) : undefined
  if (ttl != null && !(Number.isInteger(ttl) && ttl > 0)) throw new UsageError(`--ttl is a whole number of seconds\nusage: ${USAGE}`)
  const r = await (await client()).storageLink(positionals[0], { type: values.type as string | undefined, ttlMs: ttl != null ? ttl * 1000 : undefined })
  print(values.json === true, r, () => `${r.url}\n(works until ${r.expires})`)
  return 0
}
