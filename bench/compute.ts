/**
 * npm run bench:compute — compute (docs/spec/compute.md) on loopback with real daemon processes, on the
 * example's workload (examples/compute: Mandelbrot tiles, C built to WebAssembly):
 *
 * 1. overhead: a task run through the network (a job of one task, 1 replica) against the same module run
 *    locally in the sandbox, per task; and a job of BENCH_TASKS tasks (1 and 2 replicas) against running
 *    them one after another locally;
 * 2. lying workers: BENCH_WORKERS honest worker daemons and BENCH_LIARS workers written from the spec that
 *    return wrong bytes (test/compute-liar.ts); a job with fixed replication (2 of 2), then BENCH_ADAPTIVE_JOBS
 *    jobs with adaptive replication: wrong results accepted (compared with the local run) and results per
 *    task of each;
 * 3. churn: BENCH_CHURN_WORKERS worker daemons, BENCH_KILL of them killed (SIGKILL) once a fifth of a job's
 *    tasks are accepted: tasks completed.
 *
 * Settings (env): BENCH_TASKS (100), BENCH_WORKERS (4), BENCH_LIARS (1), BENCH_ADAPTIVE_JOBS (3),
 * BENCH_CHURN_WORKERS (10), BENCH_KILL (3), BENCH_SINGLE (10 one-task jobs), BENCH_ITER (tile iterations,
 * 300), BENCH_CHURN_ITER (4000: longer tasks, so that workers die mid-task), BENCH_PARTS (which of 1,2,3 to
 * run; default all).
 */
import { execFile } from 'node:child_process'
import { cpus, loadavg, tmpdir } from 'node:os'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startTestnet, REPO, until, type Testnet, type TestDaemon } from '@p2pos/testnet'
import { compileTask } from '../packages/daemon/src/compute/module.ts'
import { Sandbox } from '../packages/daemon/src/compute/sandbox.ts'
import { writeTiles } from '../examples/compute/tiles.ts'
import { lyingWorker } from '../test/compute-liar.ts'
import { envInt } from './common.ts'

const TASKS = envInt('BENCH_TASKS', 100)
const WORKERS = envInt('BENCH_WORKERS', 4)
const LIARS = envInt('BENCH_LIARS', 1)
const ADAPTIVE_JOBS = envInt('BENCH_ADAPTIVE_JOBS', 3)
const CHURN_WORKERS = envInt('BENCH_CHURN_WORKERS', 10)
const KILL = envInt('BENCH_KILL', 3)
const SINGLE = envInt('BENCH_SINGLE', 10)
const ITER = envInt('BENCH_ITER', 300)
const CHURN_ITER = envInt('BENCH_CHURN_ITER', 4000)
const PARTS = new Set((process.env.BENCH_PARTS ?? '1,2,3').split(',').map(x => x.trim()))
const LIMITS = { cpuMs: 60_000, memoryBytes: 64 << 20, outputBytes: 1 << 20 }

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }
const f = (n: number, d = 1): string => n.toFixed(d)
const errors = (s: { taskErrors: Array<{ task: string, code: string, message: string }> }): string =>
  s.taskErrors.length === 0 ? '' : `; failed: ${s.taskErrors.slice(0, 3).map(e => `${e.task} ${e.code} ${e.message}`).join('; ')}`

/** Tiles for `tasks` tasks: a square image of ⌈√tasks⌉ × ⌈√tasks⌉ tiles of 64 px, the first `tasks` kept. */
async function tiles (dir: string, tasks: number, iter: number): Promise<string> {
  const side = Math.ceil(Math.sqrt(tasks))
  await writeTiles(dir, side * 64, 64, iter)
  const names = (await readdir(dir)).sort()
  for (const extra of names.slice(tasks)) await rm(join(dir, extra))
  return dir
}

async function localRun (wasm: string, inputs: string): Promise<{ out: Map<string, Buffer>, perTaskMs: number[], totalMs: number }> {
  const sandbox = new Sandbox(1)
  try {
    const mod = await compileTask(await readFile(wasm), LIMITS.memoryBytes)
    const out = new Map<string, Buffer>()
    const perTaskMs: number[] = []
    const t0 = performance.now()
    for (const name of (await readdir(inputs)).sort()) {
      const t = performance.now()
      const r = await sandbox.run(mod, await readFile(join(inputs, name)), LIMITS)
      perTaskMs.push(performance.now() - t)
      out.set(name, Buffer.from(r.output))
    }
    return { out, perTaskMs, totalMs: performance.now() - t0 }
  } finally {
    await sandbox.close()
  }
}

async function job (submitter: TestDaemon, params: Parameters<TestDaemon['client']['runJob']>[0]): Promise<{ ms: number, status: Awaited<ReturnType<TestDaemon['client']['waitJob']>> }> {
  const t0 = performance.now()
  const started = await submitter.client.runJob(params)
  const status = await submitter.client.waitJob(started.job, { pollMs: 500 })
  return { ms: performance.now() - t0, status }
}

async function wrongAccepted (out: string, expected: Map<string, Buffer>): Promise<number> {
  let wrong = 0
  for (const [name, bytes] of expected) {
    const got = await readFile(join(out, name)).catch(() => undefined)
    if (got != null && !got.equals(bytes)) wrong++
  }
  return wrong
}

async function main (): Promise<void> {
  console.log(`bench:compute  ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}, load ${loadavg().map(x => x.toFixed(2)).join(' ')}`)
  console.log(`settings: tasks ${TASKS}, workers ${WORKERS} + ${LIARS} liars, churn ${CHURN_WORKERS} workers − ${KILL}, tile iterations ${ITER} (churn ${CHURN_ITER})`)
  const dir = await mkdtemp(join(tmpdir(), 'p2pos-bench-compute-'))
  const wasm = join(dir, 'mandelbrot.wasm')
  await promisify(execFile)(join(REPO, 'examples/compute/build.sh'), [wasm])
  const inputs = await tiles(join(dir, 'tiles'), TASKS, ITER)
  const one = await tiles(join(dir, 'one'), 1, ITER)
  const local = await localRun(wasm, inputs)
  console.log(`local: ${TASKS} tasks one after another ${f(local.totalMs)} ms, per task median ${f(median(local.perTaskMs), 2)} ms`)

  let net: Testnet | undefined
  const liars: Array<Awaited<ReturnType<typeof lyingWorker>>> = []
  try {
    // ---- 1. overhead ----
    net = await startTestnet(1 + WORKERS)
    const [sub, ...workers] = net.nodes
    await net.connectAll()
    for (const w of workers) await w.client.computeOffer(2)
    // warm-up: every worker has started its sandbox threads and compiled the module before anything is timed
    const warm = await job(sub, { module: wasm, inputs, replicas: Math.min(WORKERS, 4), quorum: 1, adaptive: false })
    console.log(`warm-up: a ${TASKS}-task job with ${Math.min(WORKERS, 4)} replicas each, ${f(warm.ms)} ms`)
    const singles: number[] = []
    for (let i = 0; i < (PARTS.has('1') ? SINGLE : 0); i++) singles.push((await job(sub, { module: wasm, inputs: one, replicas: 1, quorum: 1, adaptive: false })).ms)
    const oneLocal = median(local.perTaskMs)
    if (PARTS.has('1')) {
      console.log(`\n1. overhead (${WORKERS} workers × 2 cores)`)
      console.log(`  one task through the network, 1 replica: median ${f(median(singles))} ms of ${SINGLE} jobs vs ${f(oneLocal, 2)} ms locally: +${f(median(singles) - oneLocal)} ms`)
    }
    for (const k of PARTS.has('1') ? [1, 2] : []) {
      const r = await job(sub, { module: wasm, inputs, out: join(dir, `overhead-${k}`), replicas: k, quorum: k, adaptive: false })
      const wrong = await wrongAccepted(join(dir, `overhead-${k}`), local.out)
      console.log(`  ${TASKS}-task job, ${k} replica${k > 1 ? 's' : ''}: ${f(r.ms)} ms = ${f(r.ms / local.totalMs, 2)} × the local sequential run; accepted ${r.status.accepted}, wrong ${wrong}, results per task ${r.status.replicasUsed}${errors(r.status)}`)
    }

    // ---- 2. lying workers ----
    for (let i = 0; i < (PARTS.has('2') ? LIARS : 0); i++) {
      const liar = await lyingWorker()
      liars.push(liar)
      await sub.client.connectPeer(liar.node.getMultiaddrs()[0].toString())
    }
    if (PARTS.has('2')) {
      console.log(`\n2. ${LIARS} lying of ${WORKERS + LIARS} workers (${f(100 * LIARS / (WORKERS + LIARS), 0)} %)`)
      const rows: string[] = []
      const fixed = await job(sub, { module: wasm, inputs, out: join(dir, 'liars-fixed'), replicas: 2, quorum: 2, adaptive: false })
      rows.push(`  fixed 2-of-2:      accepted ${fixed.status.accepted}/${TASKS}, wrong accepted ${await wrongAccepted(join(dir, 'liars-fixed'), local.out)}, results per task ${fixed.status.replicasUsed}, ${f(fixed.ms)} ms${errors(fixed.status)}`)
      for (let j = 1; j <= ADAPTIVE_JOBS; j++) {
        const out = join(dir, `liars-adaptive-${j}`)
        const r = await job(sub, { module: wasm, inputs, out, replicas: 2, quorum: 2 })
        rows.push(`  adaptive, job ${j}:  accepted ${r.status.accepted}/${TASKS}, wrong accepted ${await wrongAccepted(out, local.out)}, results per task ${r.status.replicasUsed}, ${f(r.ms)} ms${errors(r.status)}`)
      }
      console.log(rows.join('\n'))
      const trust = (await sub.client.computeStatus()).trust
      for (const l of liars) {
        const t = trust.find(x => x.peer === l.node.peerId.toString())
        console.log(`  liar ${l.node.peerId.toString().slice(-8)}: ran ${l.tasks()} tasks, record valid ${t?.valid} invalid ${t?.invalid} streak ${t?.streak}`)
      }
      console.log(`  honest workers trusted: ${trust.filter(t => t.trusted).length} of ${WORKERS}`)
      for (const l of liars.splice(0)) await l.node.stop()
    }
    await net.stop()
    net = undefined

    // ---- 3. churn ----
    if (!PARTS.has('3')) return
    const heavy = await tiles(join(dir, 'heavy'), TASKS, CHURN_ITER)
    const heavyLocal = await localRun(wasm, heavy)
    net = await startTestnet(1 + CHURN_WORKERS)
    const [csub, ...cworkers] = net.nodes
    await net.connectAll()
    for (const w of cworkers) await w.client.computeOffer(1)
    const t0 = performance.now()
    const started = await csub.client.runJob({ module: wasm, inputs: heavy, out: join(dir, 'churn'), replicas: 1, quorum: 1, adaptive: false })
    await until('a fifth of the tasks accepted', async () => (await csub.client.jobStatus(started.job)).accepted >= TASKS / 5, 600_000)
    const victims = cworkers.slice(0, KILL)
    const runningAtKill = await Promise.all(victims.map(async v => (await v.client.computeStatus()).running))
    await Promise.all(victims.map(async v => await v.kill('SIGKILL')))
    const end = await csub.client.waitJob(started.job, { pollMs: 500 })
    const ms = performance.now() - t0
    console.log(`\n3. churn: ${KILL} of ${CHURN_WORKERS} workers (${f(100 * KILL / CHURN_WORKERS, 0)} %) killed once ${TASKS / 5} tasks were accepted (tasks running on them then: ${runningAtKill.reduce((a, b) => a + b, 0)})`)
    console.log(`  tasks completed ${end.accepted}/${end.tasks} (${f(100 * end.accepted / end.tasks, 0)} %), failed ${end.failed}, wrong ${await wrongAccepted(join(dir, 'churn'), heavyLocal.out)}, ${f(ms)} ms (local sequential ${f(heavyLocal.totalMs)} ms)${errors(end)}`)
  } finally {
    for (const l of liars) { try { await l.node.stop() } catch {} }
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
