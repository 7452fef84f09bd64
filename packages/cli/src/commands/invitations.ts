import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos invitations [--all] [--sent] [--app APPID] [--json]'

/** Invitations waiting for this person's decision (apps' and groups'); with --sent, those sent from here. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { all: { type: 'boolean' }, sent: { type: 'boolean' }, app: { type: 'string' } }, USAGE)
  if (positionals.length > 0) throw new UsageError(USAGE)
  const json = values.json === true
  const p2p = await client()
  if (values.sent === true) {
    const list = await p2p.sentInvitations({ app: values.app })
    print(json, list, () => list.length === 0 ? 'no invitations sent from this computer' : list.map(s =>
      `${s.id}  ${s.app}  to ${s.to}  ${s.state}${s.error != null ? ` (${s.error})` : ''}`).join('\n'))
    return 0
  }
  const list = await p2p.invitations({ app: values.app, state: values.all === true ? 'all' : 'pending' })
  print(json, list, () => list.length === 0 ? 'no invitations' : list.map(i =>
    `${i.id}  ${i.app}  from ${i.fromName ?? i.from}  ${i.state}  expires ${i.expires}\n    ${JSON.stringify(i.context).slice(0, 200)}`).join('\n'))
  return 0
}
