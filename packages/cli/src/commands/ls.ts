import { UsageError, args, client, print } from '../output.ts'
import { human } from './storage.ts'

const USAGE = 'p2pos ls [--json]'

/** This computer's own items: CID, name, size, and the computers that hold replicas. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {}, USAGE)
  if (positionals.length !== 0) throw new UsageError(USAGE)
  const list = await (await client()).ls()
  print(values.json === true, list, () => list.length === 0 ? 'nothing stored (p2pos put PATH)' : list.map(i =>
    `${i.cid}  ${human(i.size).padStart(10)}  ${i.type === 'directory' ? `${i.name}/` : i.name}  ${i.replicas.length} replicas`).join('\n'))
  return 0
}
