import { resolve } from 'node:path'
import { P2posError, type ErrorCode, type JobStatus } from '@p2pos/sdk'
import { UsageError, args, client, print } from '../output.ts'

const USAGE = `p2pos job run MODULE.wasm --inputs DIR [--replicas K] [--quorum Q] [--fixed] [--group GROUP] [--out DIR] [--cpu MS] [--timeout MS] [--json]
       p2pos job status JOB [--json]
       p2pos job list [--json]
       p2pos job rm JOB [--json]`

const int = (text: string | undefined, name: string): number | undefined => {
  if (text == null) return undefined
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a whole number\nusage: ${USAGE}`)
  return n
}

function line (s: JobStatus): string {
  return `${s.job}  ${s.state.padEnd(7)}  ${s.accepted}/${s.tasks} accepted, ${s.failed} failed, ${s.replicasUsed} replicas per task  ${s.created}`
}

function details (s: JobStatus): string {
  return [
    line(s),
    `module   ${s.module}`,
    ...(s.out != null ? [`out      ${s.out}`] : []),
    ...(s.waiting != null ? [`waiting  ${s.waiting}`] : []),
    ...(s.error != null ? [`error    ${s.error.code}: ${s.error.message}`] : []),
    ...s.taskErrors.map(e => `  ${e.task}: ${e.code} ${e.message}`)
  ].join('\n')
}

/** Jobs: one WebAssembly task per input file, each run on several volunteers and accepted by quorum (compute.md §5). */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {
    inputs: { type: 'string' },
    replicas: { type: 'string', short: 'r' },
    quorum: { type: 'string', short: 'q' },
    fixed: { type: 'boolean' },
    group: { type: 'string' },
    out: { type: 'string', short: 'o' },
    cpu: { type: 'string' },
    timeout: { type: 'string' }
  }, USAGE)
  const json = values.json === true
  const p2p = await client()
  switch (positionals[0]) {
    case 'run': {
      if (positionals.length !== 2 || values.inputs == null) throw new UsageError(USAGE)
      const started = await p2p.runJob({
        module: resolve(positionals[1]),
        inputs: resolve(values.inputs),
        out: values.out != null ? resolve(values.out) : undefined,
        replicas: int(values.replicas, 'replicas'),
        quorum: int(values.quorum, 'quorum'),
        adaptive: values.fixed === true ? false : undefined,
        group: values.group,
        cpuMs: int(values.cpu, 'cpu'),
        timeoutMs: int(values.timeout, 'timeout')
      })
      if (!json) process.stderr.write(`job ${started.job}: ${started.tasks} tasks of ${started.module}\n`)
      const bar = process.stderr.isTTY ? progressBar() : undefined
      const s = await p2p.waitJob(started.job, { onProgress: bar })
      if (bar != null) process.stderr.write('\n')
      if (s.state === 'failed' && s.error != null) {
        // the job itself failed (E_NO_WORKERS): its error, with the summary in its details
        throw new P2posError(s.error.code as ErrorCode, `job ${s.job}: ${s.error.message}`, { job: s.job, tasks: s.tasks, accepted: s.accepted, failed: s.failed, replicasUsed: s.replicasUsed })
      }
      print(json, { job: s.job, tasks: s.tasks, accepted: s.accepted, failed: s.failed, replicasUsed: s.replicasUsed }, () => details(s))
      return s.failed === 0 ? 0 : 1
    }
    case 'status': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const s = await p2p.jobStatus(positionals[1])
      print(json, s, () => details(s))
      return 0
    }
    case 'rm': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const r = await p2p.removeJob(positionals[1])
      print(json, r, () => `removed job ${r.job} (it was ${r.state}); ${r.workers} workers told to drop what they held of it`)
      return 0
    }
    case 'list': {
      if (positionals.length !== 1) throw new UsageError(USAGE)
      const list = await p2p.jobs()
      print(json, list, () => list.length === 0 ? 'no jobs (p2pos job run MODULE.wasm --inputs DIR)' : list.map(line).join('\n'))
      return 0
    }
    default:
      throw new UsageError(USAGE)
  }
}

function progressBar (): (s: JobStatus) => void {
  return (s) => {
    const done = s.accepted + s.failed
    const frac = s.tasks === 0 ? 1 : done / s.tasks
    const width = 30
    const filled = Math.round(frac * width)
    const note = s.waiting != null ? `  ${s.waiting}` : `  ${s.running} replicas on workers`
    process.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${s.tasks}${s.failed > 0 ? ` (${s.failed} failed)` : ''}${note}`.padEnd(100).slice(0, 120))
  }
}
