import { args, client, print } from '../output.ts'

export async function run (argv: string[]): Promise<number> {
  const { values } = args(argv, {}, 'p2pos peers [--json]')
  const peers = await (await client()).peers()
  print(values.json === true, peers, () => peers.length === 0
    ? 'no connections'
    : peers.map(p => `${p.peerId}  ${p.direction.padEnd(8)} ${p.relayed ? 'relayed' : 'direct '}  ${p.rttMs != null ? `${p.rttMs} ms` : '-'}  ${p.addr}`).join('\n'))
  return 0
}
