/**
 * Compute with real daemons (docs/spec/compute.md): computers offer CPU; a job's tasks run replicated on
 * them and are accepted by quorum, with results equal to a local run of the same module; a lying worker
 * written from the spec (a bare libp2p peer speaking /p2pos/compute/1.0.0, returning wrong bytes) never
 * gets a result accepted and loses its trust, while honest workers earn trust and then run tasks with
 * fewer replicas; a worker killed mid-task has its task rerun elsewhere; a submitter killed mid-job finds
 * the results that waited on the workers when it is back; an offer to a group serves only its members and
 * a job may keep to a group; a peer speaking the worker protocol from the spec gets stable refusals; bad
 * input gets a clear error and the daemons keep serving.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { compileTask } from '../packages/daemon/src/compute/module.ts'
import { Sandbox } from '../packages/daemon/src/compute/sandbox.ts'
import { startTestnet, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'
import { lyingWorker } from './compute-liar.ts'
import { bareLibp2p } from './spec-peer.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { byteStream } from '@libp2p/utils'
import { COMPUTE_PROTOCOL } from '@p2pos/api'
import { readBytes, readJson, writeBytes, writeJson } from '../packages/daemon/src/wire/framing.ts'
import { moduleId } from '../packages/daemon/src/compute/module.ts'
import { FIXTURES, buildWasm } from './compute-build.ts'

const json = async (d: TestDaemon, argv: string[], code = 0, timeoutMs = 180_000): Promise<any> => {
  const r = await d.cli([...argv, '--json'], { timeoutMs })
  assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!)
}

/** The same module run here, in the test process, on each input: what every accepted result must equal. */
async function localRun (wasm: string, inputs: string): Promise<Map<string, Buffer>> {
  const sandbox = new Sandbox(1)
  try {
    const mod = await compileTask(await readFile(wasm), 64 << 20)
    const out = new Map<string, Buffer>()
    for (const name of (await readdir(inputs)).sort()) {
      const r = await sandbox.run(mod, await readFile(join(inputs, name)), { cpuMs: 60_000, memoryBytes: 64 << 20, outputBytes: 1 << 20 })
      out.set(name, Buffer.from(r.output))
    }
    return out
  } finally {
    await sandbox.close()
  }
}

async function assertOut (out: string, expected: Map<string, Buffer>): Promise<void> {
  assert.deepEqual((await readdir(out)).sort(), [...expected.keys()].sort())
  for (const [name, bytes] of expected) assert.deepEqual(await readFile(join(out, name)), bytes, `result of ${name}`)
}

describe('compute between real daemons', () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon, c: TestDaemon, d: TestDaemon
  let dir: string
  let upper: string, trap: string, slow: string, clock: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pos-compute-'))
    ;[upper, trap, slow, clock] = await Promise.all(['echo-upper', 'trap', 'slow', 'clock'].map(async n => await buildWasm(join(FIXTURES, `${n}.c`))))
    net = await startTestnet(4)
    ;[a, b, c, d] = net.nodes
    await net.connectAll()
  })
  after(async () => {
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const inputs = async (name: string, files: Record<string, string | Buffer>): Promise<string> => {
    const p = join(dir, name)
    await mkdir(p, { recursive: true })
    for (const [f, content] of Object.entries(files)) await writeFile(join(p, f), content)
    return p
  }

  it('bad input gets a clear error; with no volunteer in reach a job says so and fails at its timeout', async () => {
    const some = await inputs('some', { 'a.txt': 'x' })
    const notWasm = join(dir, 'not.wasm')
    await writeFile(notWasm, '#!/bin/sh\necho hello\n')
    assert.equal((await json(a, ['job', 'run', notWasm, '--inputs', some], 1)).error.code, 'E_BAD_MODULE')
    const imports = await json(a, ['job', 'run', clock, '--inputs', some], 1)
    assert.equal(imports.error.code, 'E_BAD_MODULE')
    assert.deepEqual(imports.error.details.imports, ['wasi_snapshot_preview1.clock_time_get'])
    const big = await inputs('big', { 'huge.bin': Buffer.alloc(4 * 1024 * 1024 + 1) })
    const tooLarge = await json(a, ['job', 'run', upper, '--inputs', big], 1)
    assert.equal(tooLarge.error.code, 'E_TOO_LARGE')
    assert.equal(tooLarge.error.details.input, 'huge.bin')
    await mkdir(join(dir, 'empty'))
    assert.equal((await json(a, ['job', 'run', upper, '--inputs', join(dir, 'empty')], 1)).error.code, 'E_BAD_REQUEST')
    assert.equal((await json(a, ['job', 'run', join(dir, 'nope.wasm'), '--inputs', some], 1)).error.code, 'E_NOT_FOUND')
    assert.equal((await json(a, ['job', 'run', upper, '--inputs', some, '--replicas', '1', '--quorum', '2'], 1)).error.code, 'E_BAD_REQUEST')
    assert.equal((await json(a, ['job', 'status', 'feedfeedfeed'], 1)).error.code, 'E_NOT_FOUND')
    assert.equal((await a.cli(['compute', 'offer', '--cores', 'many'])).code, 2)
    assert.equal((await a.cli(['job', 'run', upper])).code, 2)

    // nobody offers CPU yet: the job waits, says why, and fails at its timeout with E_NO_WORKERS
    const started = await a.client.runJob({ module: upper, inputs: some, timeoutMs: 3000 })
    await until('the job says it waits for volunteers', async () => /waiting for volunteers/.test((await a.client.jobStatus(started.job)).waiting ?? ''), 10_000)
    const end = await a.client.waitJob(started.job)
    assert.equal(end.state, 'failed')
    assert.equal(end.error?.code, 'E_NO_WORKERS')
    assert.equal(end.failed, 1)
    const viaCli = await json(a, ['job', 'run', upper, '--inputs', some, '--timeout', '2000'], 1, 60_000)
    assert.equal(viaCli.error.code, 'E_NO_WORKERS')
    assert.deepEqual({ tasks: viaCli.error.details.tasks, accepted: viaCli.error.details.accepted, failed: viaCli.error.details.failed }, { tasks: 1, accepted: 0, failed: 1 })
    // an offer to a group this computer is not in
    assert.equal((await json(a, ['compute', 'offer', '--cores', '1', '--from', 'no-such-group'], 1)).error.code, 'E_NOT_FOUND')
    assert.equal((await a.client.computeStatus()).cores, 0)
    assert.equal((await a.client.info()).peerId, a.peerId, 'the daemon still serves')
  })

  it('offers persist across a restart; compute status says what this computer offers and runs', async () => {
    for (const w of [b, c, d]) await json(w, ['compute', 'offer', '--cores', '2', '--memory', '512MiB'])
    await b.kill('SIGTERM')
    await b.start()
    for (const y of [a, c, d]) await b.client.connectPeer(y.addr)
    const s = await json(b, ['compute', 'status'])
    assert.deepEqual(Object.keys(s).sort(), ['cores', 'done', 'from', 'memory', 'queued', 'running', 'trust'])
    assert.equal(s.cores, 2)
    assert.equal(s.memory, 512 * 2 ** 20)
    assert.equal(s.running, 0)
    await until('a knows b speaks compute again', async () => (await a.client.peers()).some(p => p.peerId === b.peerId))
  })

  it('a peer speaking the worker protocol from the spec gets stable refusals for bad requests, a result for a good one, and the worker goes on', async () => {
    const peer = await bareLibp2p()
    try {
      const ask = async (target: TestDaemon, ...frames: Array<Record<string, unknown> | Uint8Array>): Promise<any[]> => {
        const stream = await peer.dialProtocol(multiaddr(target.addr), COMPUTE_PROTOCOL)
        const bs = byteStream(stream, { maxBufferSize: 8 << 20 })
        const signal = AbortSignal.timeout(30_000)
        const replies: any[] = []
        try {
          for (const f of frames) {
            if (f instanceof Uint8Array) await writeBytes(bs, f)
            else await writeJson(bs, f)
          }
          // the worker's answers: `{ok, needModule}` first for a task it takes, then its result
          for (let i = 0; i < 3; i++) {
            const reply = await readJson<any>(bs, signal, 1 << 20)
            replies.push(reply)
            if (reply?.type === 'done') {
              replies.push(await readBytes(bs, signal, 1 << 20))
              await writeJson(bs, { type: 'ack' })
            }
            if (reply?.ok !== true || reply.needModule == null) break
          }
        } finally {
          bs.unwrap()
          await stream.close().catch(() => {})
        }
        return replies
      }
      const module = await readFile(upper)
      const task = { type: 'task', job: 'spec-peer', task: 0, module: moduleId(module), moduleSize: module.byteLength, inputSize: 5, limits: { cpuMs: 10_000, memoryBytes: 16 << 20, outputBytes: 1024 } }
      assert.equal((await ask(b, { type: 'nope' }))[0].error.code, 'E_PROTOCOL')
      assert.equal((await ask(b, { type: 'task', job: 'x' }))[0].error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(b, { ...task, limits: { ...task.limits, memoryBytes: 1 << 30 } }))[0].error.code, 'E_MEMORY_LIMIT')
      assert.equal((await ask(a, task))[0].error.code, 'E_FORBIDDEN', 'a computer that offers no CPU')
      assert.equal((await ask(b, { ...task, job: 'a/b' }))[0].error.code, 'E_BAD_REQUEST', 'a job id is part of datastore keys')
      // handing over, following and dropping (wire.md §12)
      const queue = { type: 'queue', job: 'spec-peer', module: task.module, moduleSize: task.moduleSize, limits: task.limits, tasks: [{ task: 0, inputSize: 5 }] }
      assert.equal((await ask(b, { ...queue, tasks: [] }))[0].error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(b, { ...queue, tasks: [{ task: 0, inputSize: 5 }, { task: 0, inputSize: 5 }] }))[0].error.code, 'E_BAD_REQUEST', 'a task twice')
      assert.equal((await ask(a, queue))[0].error.code, 'E_FORBIDDEN')
      assert.deepEqual(await ask(b, { type: 'results', job: 'spec-peer' }), [{ ok: true, holds: [] }])
      assert.deepEqual(await ask(b, { type: 'drop', job: 'spec-peer' }), [{ ok: true, dropped: 0 }])
      assert.equal((await ask(b, { type: 'results' }))[0].error.code, 'E_BAD_REQUEST')
      // the module's bytes must be the module named
      const wrong = await ask(b, task, new Uint8Array(module.byteLength).fill(7), new TextEncoder().encode('hello'))
      assert.deepEqual(wrong[0], { ok: true, needModule: true })
      assert.equal(wrong[1].error.code, 'E_PROTOCOL')
      // the real thing: the module and the input, the output back
      const good = await ask(b, task, module, new TextEncoder().encode('hello'))
      assert.deepEqual(good[0], { ok: true, needModule: true })
      assert.equal(good[1].type, 'done')
      assert.equal(new TextDecoder().decode(good[2]), 'HELLO')
      assert.equal((await ask(b, { type: 'result', job: 'spec-peer', task: 0 }))[0].error.code, 'E_NOT_FOUND', 'acknowledged: it no longer waits')
      assert.equal((await b.client.info()).peerId, b.peerId, 'the worker still serves')
    } finally {
      await peer.stop()
    }
  })

  it('a job runs on the workers, each task on 2 of them, and its results equal a local run', async () => {
    const files: Record<string, string> = {}
    for (let i = 0; i < 8; i++) files[`part-${i}.txt`] = `task ${i}: ${'hello, volunteers '.repeat(i * 50)}\n`
    const dirIn = await inputs('upper-in', files)
    const out = join(dir, 'upper-out')
    const doneBy = async (): Promise<number> => { let n = 0; for (const w of [b, c, d]) n += (await json(w, ['compute', 'status'])).done; return n }
    const before = await doneBy()
    const r = await json(a, ['job', 'run', upper, '--inputs', dirIn, '--out', out, '--replicas', '2', '--quorum', '2', '--fixed'])
    assert.deepEqual(Object.keys(r).sort(), ['accepted', 'failed', 'job', 'replicasUsed', 'tasks'])
    assert.deepEqual({ tasks: r.tasks, accepted: r.accepted, failed: r.failed, replicasUsed: r.replicasUsed }, { tasks: 8, accepted: 8, failed: 0, replicasUsed: 2 })
    await assertOut(out, await localRun(upper, dirIn))
    // every result was run by workers, none here: 16 runs in all
    assert.equal(await doneBy() - before, 16)
    assert.equal((await json(a, ['compute', 'status'])).done, 0)
    // the same figures in the metrics (metrics.md)
    let fromMetrics = 0
    for (const w of [b, c, d]) fromMetrics += Number(/^p2pos_compute_done_tasks (\d+)$/m.exec(await w.client.metricsText())?.[1] ?? NaN)
    assert.equal(fromMetrics, await doneBy())
    assert.match(await b.client.metricsText(), /^p2pos_compute_cores [1-9]/m)
    const st = await json(a, ['job', 'status', r.job])
    assert.equal(st.state, 'done')
    assert.equal(st.module.slice(0, 7), 'bafkrei')
    const list = await json(a, ['job', 'list'])
    assert.equal(list[0].job, r.job)
    assert.ok((await a.cli(['job', 'list'])).stdout.includes(`${r.job}  done`))
  })

  it('a program that traps fails each task with E_TRAP, agreed by quorum; the workers keep serving', async () => {
    const dirIn = await inputs('trap-in', { 'one.txt': '1', 'two.txt': '2' })
    const out = join(dir, 'trap-out')
    const r = await json(a, ['job', 'run', trap, '--inputs', dirIn, '--out', out, '--fixed'], 1)
    assert.deepEqual({ accepted: r.accepted, failed: r.failed }, { accepted: 0, failed: 2 })
    const st = await json(a, ['job', 'status', r.job])
    assert.deepEqual(st.taskErrors.map((e: any) => e.code), ['E_TRAP', 'E_TRAP'])
    assert.match(await readFile(join(out, 'one.txt.error'), 'utf8'), /^E_TRAP/)
    for (const w of [b, c, d]) assert.equal((await w.client.info()).peerId, w.peerId)
  })

  it('a lying worker never gets a result accepted and loses its trust; honest workers earn it and then need fewer replicas', async () => {
    const liar = await lyingWorker()
    try {
      await a.client.connectPeer(liar.node.getMultiaddrs()[0].toString())
      await until('a knows the liar speaks compute', async () => {
        const p = await liar.node.peerStore.get(liar.node.getPeers()[0]).catch(() => undefined)
        return p != null && (await a.client.peers()).some(x => x.peerId === liar.node.peerId.toString())
      })
      const files: Record<string, string> = {}
      for (let i = 0; i < 24; i++) files[`t${String(i).padStart(2, '0')}`] = `input number ${i}\n`
      const dirIn = await inputs('liar-in', files)
      const expected = await localRun(upper, dirIn)
      const out1 = join(dir, 'liar-out-1')
      const fixed = await json(a, ['job', 'run', upper, '--inputs', dirIn, '--out', out1, '--fixed'])
      assert.equal(fixed.accepted, 24)
      await assertOut(out1, expected)
      assert.ok(liar.tasks() > 0, 'the liar was sent tasks')
      assert.ok(fixed.replicasUsed > 2, `disagreements cost more replicas (${fixed.replicasUsed})`)
      const trust = new Map((await json(a, ['compute', 'status'])).trust.map((t: any) => [t.peer, t]))
      const lt: any = trust.get(liar.node.peerId.toString())
      assert.ok(lt != null && lt.valid === 0 && lt.invalid > 0 && lt.streak === 0 && !lt.trusted, JSON.stringify(lt))
      for (const w of [b, c, d]) assert.equal((trust.get(w.peerId) as any)?.invalid, 0)

      // adaptive replication: once honest workers are trusted, tasks run with fewer replicas, and the liar still gains nothing
      const out2 = join(dir, 'liar-out-2')
      const adaptive = await json(a, ['job', 'run', upper, '--inputs', dirIn, '--out', out2])
      assert.equal(adaptive.accepted, 24)
      await assertOut(out2, expected)
      const after = new Map((await json(a, ['compute', 'status'])).trust.map((t: any) => [t.peer, t]))
      assert.ok([b, c, d].some(w => (after.get(w.peerId) as any)?.trusted === true), 'some honest worker is trusted')
      assert.ok(adaptive.replicasUsed < fixed.replicasUsed, `adaptive ${adaptive.replicasUsed} < fixed ${fixed.replicasUsed}`)
      assert.equal((after.get(liar.node.peerId.toString()) as any).valid, 0)
    } finally {
      await liar.node.stop()
    }
  })

  it('whose work a computer runs is its owner\'s choice: an offer to a group serves only its members, and a job may keep to a group', async () => {
    const g = await json(d, ['group', 'create', 'lab'])
    const inv = await json(d, ['group', 'invite', 'lab', c.peerId])
    assert.deepEqual(await json(c, ['group', 'join', inv.code]), { id: g.id, name: 'lab' })
    const offered = await json(d, ['compute', 'offer', '--cores', '2', '--from', 'lab'])
    assert.equal(offered.from, g.id)
    const files: Record<string, string> = {}
    for (let i = 0; i < 4; i++) files[`g${i}`] = `group task ${i}\n`
    const dirIn = await inputs('group-in', files)
    const expected = await localRun(upper, dirIn)
    const done = async (): Promise<number[]> => await Promise.all([b, c, d].map(async w => (await w.client.computeStatus()).done))
    // a (not in the group): d takes none of its tasks
    const before = await done()
    const fromA = await json(a, ['job', 'run', upper, '--inputs', dirIn, '--out', join(dir, 'group-a'), '--replicas', '1', '--quorum', '1', '--fixed'])
    assert.equal(fromA.accepted, 4)
    const afterA = await done()
    assert.equal(afterA[2], before[2], 'd ran nothing for a')
    assert.equal(afterA[0] + afterA[1] - before[0] - before[1], 4)
    // c (a member) keeps its job to the group: only d runs it
    const fromC = await json(c, ['job', 'run', upper, '--inputs', dirIn, '--out', join(dir, 'group-c'), '--replicas', '1', '--quorum', '1', '--fixed', '--group', 'lab'])
    assert.equal(fromC.accepted, 4)
    await assertOut(join(dir, 'group-c'), expected)
    const afterC = await done()
    assert.equal(afterC[2] - afterA[2], 4, 'd ran all of c\'s group job')
    assert.equal(afterC[0], afterA[0], 'b, not in the group, ran none of it')
    // a group this computer is not in
    assert.equal((await json(a, ['job', 'run', upper, '--inputs', dirIn, '--group', 'lab'], 1)).error.code, 'E_NOT_FOUND')
    await json(d, ['compute', 'offer', '--cores', '2', '--from', 'anyone'])
  })

  it('a worker killed mid-task has its task rerun elsewhere; every task completes', async () => {
    const files: Record<string, string> = {}
    for (let i = 0; i < 6; i++) files[`spin-${i}`] = `${600 + i}\n`
    const dirIn = await inputs('spin-in', files)
    const expected = await localRun(slow, dirIn)
    const out = join(dir, 'spin-out')
    const started = await a.client.runJob({ module: slow, inputs: dirIn, out, replicas: 1, quorum: 1, adaptive: false })
    await until('d runs a task', async () => (await d.client.computeStatus()).running > 0, 60_000)
    await d.kill('SIGKILL')
    const end = await a.client.waitJob(started.job)
    assert.deepEqual({ state: end.state, accepted: end.accepted, failed: end.failed }, { state: 'done', accepted: 6, failed: 0 })
    await assertOut(out, expected)
    assert.match(a.log, /lost task|lost \d+ tasks/)
  })

  it('a submitter killed early in a job: the workers run all its tasks meanwhile, and when it is back it gets every result, each task accepted once', async () => {
    const files: Record<string, string> = {}
    for (let i = 0; i < 16; i++) files[`r-${String(i).padStart(2, '0')}`] = `${300 + i}\n`
    const dirIn = await inputs('resume-in', files)
    const expected = await localRun(slow, dirIn)
    const out = join(dir, 'resume-out')
    const workers = [b, c]
    const sum = async (f: (s: any) => number): Promise<number> => { let n = 0; for (const w of workers) n += f(await w.client.computeStatus()); return n }
    const doneBefore = await sum(s => s.done)
    const started = await a.client.runJob({ module: slow, inputs: dirIn, out, replicas: 2, quorum: 2, adaptive: false })
    // every replica (16 tasks × 2) is handed over to the workers' queues before anything much has run
    await until('the workers hold all 32 replicas', async () => await sum(s => s.queued + s.running + s.done) - doneBefore === 32, 30_000)
    await a.kill('SIGKILL')
    const doneAtKill = await sum(s => s.done) - doneBefore
    assert.ok(doneAtKill < 16, `killed early: ${doneAtKill} of 32 replicas had run`)
    await until('the job went on without its submitter, to its end', async () => await sum(s => s.queued + s.running) === 0, 120_000)
    assert.equal(await sum(s => s.done) - doneBefore, 32, 'every replica ran once while the submitter was away')
    await a.start()
    for (const w of workers) await a.client.connectPeer(w.addr)
    const end = await a.client.waitJob(started.job)
    assert.deepEqual({ state: end.state, accepted: end.accepted, failed: end.failed, tasks: end.tasks, replicasUsed: end.replicasUsed }, { state: 'done', accepted: 16, failed: 0, tasks: 16, replicasUsed: 2 })
    await assertOut(out, expected)
    assert.equal(await sum(s => s.done) - doneBefore, 32, 'the results that waited were collected, none run again')
    // each task accepted exactly once, over both lives of the submitter
    const accepted = [...a.log.matchAll(new RegExp(`compute: job ${started.job} task (\\d+) accepted`, 'g'))].map(m => Number(m[1]))
    assert.deepEqual(accepted.sort((x, y) => x - y), [...Array(16).keys()])
    // nothing of the job is left on the workers
    await until('the workers dropped what was left of the finished job', async () => await sum(s => s.queued) === 0)
  })

  it('job rm forgets a running job: its workers drop its queued tasks at once, and it is gone from status and list', async () => {
    const files: Record<string, string> = {}
    for (let i = 0; i < 24; i++) files[`x-${String(i).padStart(2, '0')}`] = `${900 + i}\n`
    const dirIn = await inputs('rm-in', files)
    const workers = [b, c]
    const sum = async (f: (s: any) => number): Promise<number> => { let n = 0; for (const w of workers) n += f(await w.client.computeStatus()); return n }
    const started = await a.client.runJob({ module: slow, inputs: dirIn, out: join(dir, 'rm-out'), replicas: 1, quorum: 1, adaptive: false })
    await until('the workers queue its tasks', async () => await sum(s => s.queued) > 0, 30_000)
    const doneAtRm = await sum(s => s.done)
    const r = await json(a, ['job', 'rm', started.job])
    assert.deepEqual(r, { job: started.job, state: 'running', workers: 2 })
    assert.equal(await sum(s => s.queued), 0, 'the queued tasks are dropped')
    assert.equal((await json(a, ['job', 'status', started.job], 1)).error.code, 'E_NOT_FOUND')
    assert.ok(!(await json(a, ['job', 'list'])).some((j: any) => j.job === started.job))
    assert.equal((await json(a, ['job', 'rm', started.job], 1)).error.code, 'E_NOT_FOUND', 'an unknown job')
    assert.equal((await a.cli(['job', 'rm'])).code, 2)
    // only the tasks running when it was removed end; nothing else of it runs
    await until('the running tasks end', async () => await sum(s => s.running) === 0, 60_000)
    assert.ok(await sum(s => s.done) - doneAtRm <= 4, 'at most the 4 running tasks ran after job rm')
    // a finished job is removed too
    const fin = await json(a, ['job', 'list'])
    const r2 = await json(a, ['job', 'rm', fin[0].job])
    assert.equal(r2.state, fin[0].state)
    assert.equal((await json(a, ['job', 'status', fin[0].job], 1)).error.code, 'E_NOT_FOUND')
  })

  it('a worker killed with tasks in its queue runs them when it is back, while the submitter is away too; every result arrives once', async () => {
    const files: Record<string, string> = {}
    for (let i = 0; i < 16; i++) files[`q-${String(i).padStart(2, '0')}`] = `${700 + i}\n`
    const dirIn = await inputs('queue-in', files)
    const expected = await localRun(slow, dirIn)
    const out = join(dir, 'queue-out')
    const workers = [b, c]
    const sum = async (f: (s: any) => number): Promise<number> => { let n = 0; for (const w of workers) n += f(await w.client.computeStatus()); return n }
    const doneBefore = await sum(s => s.done)
    const started = await a.client.runJob({ module: slow, inputs: dirIn, out, replicas: 1, quorum: 1, adaptive: false })
    await until('the workers hold all 16 tasks', async () => await sum(s => s.queued + s.running + s.done) - doneBefore === 16, 30_000)
    const queuedOnB = (await b.client.computeStatus()).queued
    assert.ok(queuedOnB > 0, 'b has tasks waiting in its queue')
    await a.kill('SIGKILL')
    await b.kill('SIGKILL')
    await b.start()
    // b runs what it had queued (and what it was running when killed) with nobody connected to it
    await until('the workers ran every task', async () => await sum(s => s.queued + s.running) === 0, 120_000)
    assert.equal(await sum(s => s.done) - doneBefore, 16, 'each task ran to its end once: the queue survived the SIGKILL')
    await a.start()
    for (const w of workers) await a.client.connectPeer(w.addr)
    const end = await a.client.waitJob(started.job)
    assert.deepEqual({ state: end.state, accepted: end.accepted, failed: end.failed }, { state: 'done', accepted: 16, failed: 0 })
    await assertOut(out, expected)
    assert.equal(await sum(s => s.done) - doneBefore, 16, 'none ran again')
    const accepted = [...a.log.matchAll(new RegExp(`compute: job ${started.job} task (\\d+) accepted`, 'g'))].map(m => Number(m[1]))
    assert.deepEqual(accepted.sort((x, y) => x - y), [...Array(16).keys()])
  })
})
