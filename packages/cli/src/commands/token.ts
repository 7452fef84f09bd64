import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos token create APPID[,APPID...] [--label TEXT] | p2pos token list | p2pos token revoke TOKEN  [--json]'

/** Issues app tokens: each may act only as the app ids it names. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { label: { type: 'string' } }, USAGE)
  const p2p = await client()
  const json = values.json === true
  switch (positionals[0]) {
    case 'create': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const token = await p2p.createToken(positionals[1].split(','), values.label)
      print(json, { token }, () => token)
      return 0
    }
    case 'list': {
      const list = await p2p.call('tokens.list')
      print(json, list, () => list.map((t: any) => `${t.token}  ${t.apps.join(',')}  ${t.label}`).join('\n') || 'no app tokens')
      return 0
    }
    case 'revoke': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const r = await p2p.call('tokens.revoke', { token: positionals[1] })
      print(json, r, () => r.revoked === true ? 'revoked' : 'no such token')
      return r.revoked === true ? 0 : 1
    }
    default:
      throw new UsageError(USAGE)
  }
}
