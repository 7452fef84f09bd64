import { args, client, print } from '../output.ts'

export async function run (argv: string[]): Promise<number> {
  const { values } = args(argv, {}, 'p2pos status [--json]')
  const info = await (await client()).info()
  print(values.json === true, info, () => [
    `peer id       ${info.peerId}`,
    `version       ${info.version} (API v${info.apiVersion})`,
    `reachability  ${info.reachability}`,
    `peers         ${info.peers}${info.relayedPeers > 0 ? ` (${info.relayedPeers} reached only through a relay — p2pos doctor explains)` : ''}`,
    `local API     ${info.api}  (${info.socket})`,
    'addresses',
    ...info.addrs.map(a => `  ${a}`)
  ].join('\n'))
  return 0
}
