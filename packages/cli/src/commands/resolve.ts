import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos resolve NAME [--json]   (a name, petname, person id or peer id)'

/** Who a name stands for: the person and the computers they use now. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { timeout: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(USAGE)
  const ref = positionals[0].replace(/^p2pos:\/\//, '')
  const r = await (await client()).resolve(ref)
  print(values.json === true, { name: r.name, person: r.person, peers: r.peers, names: r.names }, () =>
    `${r.name ?? '(no name)'}\nperson ${r.person}\n${r.peers.map(p => `  computer ${p}`).join('\n')}`)
  return 0
}
