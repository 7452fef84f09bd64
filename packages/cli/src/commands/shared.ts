import { UsageError, args, client, print } from '../output.ts'
import { human } from './storage.ts'

const USAGE = 'p2pos shared [GROUP] [--search WORDS] [--json]'

/** What was shared with a group (or every group this computer is in), newest first; --search filters by name. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { search: { type: 'string', short: 's' } }, USAGE)
  if (positionals.length > 1) throw new UsageError(`wrong arguments\nusage: ${USAGE}`)
  const list = await (await client()).shared(positionals[0], { search: values.search as string | undefined })
  print(values.json === true, list, () => list.length === 0 ? 'nothing shared with ' + (positionals[0] ?? 'your groups') + (values.search != null ? ` matching "${String(values.search)}"` : '') : list.map(i =>
    `${i.cid}  ${human(i.size).padStart(10)}  ${i.name}  (${i.groupName}, ${i.at.slice(0, 16).replace('T', ' ')})`).join('\n'))
  return 0
}
