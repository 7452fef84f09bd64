import { UsageError, args, client, print } from '../output.ts'
import { human, parseSize } from './storage.ts'

const USAGE = 'p2pos compute offer --cores N [--memory SIZE] [--from GROUP|anyone] | status [--json]   (0 cores withdraws)'

/** Contributed CPU (compute.md §3): how many of other computers' tasks this computer runs at once, and for whom. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { cores: { type: 'string' }, memory: { type: 'string' }, from: { type: 'string' } }, USAGE)
  const json = values.json === true
  switch (positionals[0]) {
    case 'offer': {
      if (positionals.length !== 1 || values.cores == null) throw new UsageError(USAGE)
      const cores = Number(values.cores)
      if (!Number.isInteger(cores) || cores < 0 || cores > 256) throw new UsageError(`--cores must be a whole number from 0 to 256\nusage: ${USAGE}`)
      const memory = values.memory != null ? parseSize(values.memory) : undefined
      const s = await (await client()).computeOffer(cores, { memory, from: values.from })
      print(json, s, () => cores === 0 ? 'CPU offer withdrawn' : `offering ${s.cores} cores and ${human(s.memory)} to ${s.from === 'anyone' ? 'anyone' : `group ${s.from}`}`)
      return 0
    }
    case 'status': {
      if (positionals.length !== 1) throw new UsageError(USAGE)
      const s = await (await client()).computeStatus()
      print(json, s, () => [
        `offered   ${s.cores === 0 ? 'nothing (p2pos compute offer --cores N)' : `${s.cores} cores, ${human(s.memory)}, to ${s.from}`}`,
        `running   ${s.running} tasks of other computers, ${s.queued} queued; ${s.done} done`,
        `workers   ${s.trust.length} known, ${s.trust.filter(t => t.trusted).length} trusted` +
          s.trust.map(t => `\n  ${t.peer}  ${t.valid} valid, ${t.invalid} invalid, streak ${t.streak}${t.trusted ? ' (trusted)' : ''}${t.shunned ? ' (shunned)' : ''}`).join('')
      ].join('\n'))
      return 0
    }
    default:
      throw new UsageError(USAGE)
  }
}
