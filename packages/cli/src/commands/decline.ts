import { UsageError, args, client, print } from '../output.ts'

export async function decide (argv: string[], verb: 'accept' | 'decline'): Promise<number> {
  const usage = `p2pos ${verb} ID [--json]`
  const { values, positionals } = args(argv, {}, usage)
  if (positionals.length !== 1) throw new UsageError(usage)
  const p2p = await client()
  const inv = verb === 'accept' ? await p2p.acceptInvitation(positionals[0]) : await p2p.declineInvitation(positionals[0])
  print(values.json === true, inv, () => `${inv.state} the invitation to ${inv.app} from ${inv.fromName ?? inv.from}`)
  return 0
}

/** `p2pos decline ID`: declines an invitation; the inviter gets the answer. */
export async function run (argv: string[]): Promise<number> {
  return await decide(argv, 'decline')
}
