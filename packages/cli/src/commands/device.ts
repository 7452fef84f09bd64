import { UsageError, args, client, print } from '../output.ts'

const USAGE = `p2pos device link [--json]      on the first computer: a one-time code (10 minutes)
p2pos device join CODE          on the computer to add: become the same person
p2pos device list [--json]
p2pos device unlink PEER        on the first computer: a lost or old computer stops being you`

/** Links several computers to one person. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {}, USAGE)
  const json = values.json === true
  const p2p = await client()
  switch (positionals[0]) {
    case 'link': {
      if (positionals.length !== 1) throw new UsageError(USAGE)
      const r = await p2p.linkDevice()
      print(json, { code: r.code, expires: r.expires }, () => `${r.code}\nOn the other computer: p2pos device join ${r.code}\n(works once, until ${r.expires})`)
      return 0
    }
    case 'join': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const w = await p2p.joinDevice(positionals[1])
      print(json, w, () => `this computer is now ${w.name ?? w.person}, with ${w.devices.length} computers`)
      return 0
    }
    case 'list': {
      const list = await p2p.devices()
      print(json, list, () => list.map(d => `${d.peer}  ${d.holder ? 'key holder' : 'linked'}${d.self ? '  (this one)' : ''}  ${d.online ? 'online' : 'offline'}`).join('\n'))
      return 0
    }
    case 'unlink': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const w = await p2p.unlinkDevice(positionals[1])
      print(json, w, () => `unlinked; ${w.devices.length} computer(s) left`)
      return 0
    }
    default:
      throw new UsageError(USAGE)
  }
}
