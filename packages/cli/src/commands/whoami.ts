import { args, client, print } from '../output.ts'

const USAGE = 'p2pos whoami [--json]'

/** This computer's person: names and linked computers. */
export async function run (argv: string[]): Promise<number> {
  const { values } = args(argv, {}, USAGE)
  const w = await (await client()).whoami()
  print(values.json === true, { person: w.person, name: w.name, devices: w.devices, names: w.names, holder: w.holder }, () => [
    `person  ${w.person}${w.holder ? '  (this computer holds the person key)' : ''}`,
    `name    ${w.names.length > 0 ? w.names.join(', ') : '(none: p2pos name claim LABEL)'}`,
    ...w.devices.map(d => `device  ${d}`)
  ].join('\n'))
  return 0
}
