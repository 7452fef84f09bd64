import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos service list [PEER] | p2pos service call PEER|local SERVICE JSON [--timeout MS]  [--json]'

/** Services: what this node (or a peer, to us) offers, and one request/reply call. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { timeout: { type: 'string' } }, USAGE)
  const json = values.json === true
  const p2p = await client()
  switch (positionals[0]) {
    case 'list': {
      if (positionals.length > 2) throw new UsageError(`usage: ${USAGE}`)
      const list = await p2p.services(positionals[1])
      print(json, list, () => list.length === 0
        ? 'no services'
        : list.map(s => `${s.name.padEnd(24)} ${s.app.padEnd(32)} ${s.available ? 'available' : 'stopped  '} ${s.remote ? 'remote ' : 'local  '} ${s.description}`).join('\n'))
      return 0
    }
    case 'call': {
      if (positionals.length !== 4) throw new UsageError(`usage: ${USAGE}`)
      const [, peer, service, text] = positionals
      let request: unknown
      try {
        request = JSON.parse(text)
      } catch {
        throw new UsageError(`the request must be JSON, e.g. '{"text": "hi"}'\nusage: ${USAGE}`)
      }
      const reply = await p2p.callService(peer, service, request, { timeoutMs: values.timeout != null ? Number(values.timeout) : undefined })
      // the reply is JSON either way: --json changes nothing here
      process.stdout.write(JSON.stringify(reply) + '\n')
      return 0
    }
    default:
      throw new UsageError(`usage: ${USAGE}`)
  }
}
