import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos name claim LABEL [--json]'

/** Claims a name for this computer's person: LABEL.SUFFIX, where the suffix is bound to the person key. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {}, USAGE)
  if (positionals[0] !== 'claim' || positionals.length !== 2) throw new UsageError(USAGE)
  const r = await (await client()).claimName(positionals[1])
  print(values.json === true, { name: r.name }, () => `${r.name}\n(stored by ${r.stored} DHT peer(s); others reach you by this name, or the link p2pos://${r.name})`)
  return 0
}
