import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos contacts add NAME [--as PETNAME] | list [--json] | remove PETNAME'

/** The address book: petnames for people, usable wherever a PEER or PERSON is asked for. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { as: { type: 'string' } }, USAGE)
  const json = values.json === true
  const p2p = await client()
  switch (positionals[0]) {
    case 'add': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const c = await p2p.addContact(positionals[1].replace(/^p2pos:\/\//, ''), { as: values.as })
      print(json, c, () => `added ${c.petname} (${c.name ?? c.person})`)
      return 0
    }
    case 'list': {
      const list = await p2p.contacts()
      print(json, list, () => list.length === 0 ? 'no contacts (p2pos contacts add NAME)' : list.map(c =>
        `${c.petname.padEnd(16)} ${c.online ? 'online ' : 'offline'}  ${c.name ?? c.person}  ${c.online ? '' : `last seen ${c.lastSeen ?? 'never'}`}`).join('\n'))
      return 0
    }
    case 'remove': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const r = await p2p.removeContact(positionals[1])
      print(json, r, () => r.removed ? 'removed' : 'no such contact')
      return r.removed ? 0 : 1
    }
    default:
      throw new UsageError(USAGE)
  }
}
