import { args, client, print } from '../output.ts'

export async function run (argv: string[]): Promise<number> {
  const { values } = args(argv, {}, 'p2pos id [--json]')
  const info = await (await client()).info()
  const out = { peerId: info.peerId, addrs: info.addrs.map(a => a.includes('/p2p/') ? a : `${a}/p2p/${info.peerId}`) }
  print(values.json === true, out, () => [out.peerId, ...out.addrs].join('\n'))
  return 0
}
