/**
 * examples/compute (a Mandelbrot image rendered in tiles): built from its C source with clang + wasi-libc
 * by its build script, run as a job on real worker daemons, and the assembled image compared with the same
 * module run locally in the sandbox and with a native build of the same source; `p2pos job run` on a real
 * terminal (a private tmux server) shows its progress bar.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { compileTask } from '../packages/daemon/src/compute/module.ts'
import { Sandbox } from '../packages/daemon/src/compute/sandbox.ts'
import { CLI, NODE, REPO, createTestnet } from '../packages/testnet/src/index.ts'
import { Tmux, sh } from './tmux.ts'
import { assemble, writeTiles } from '../examples/compute/tiles.ts'

const run = promisify(execFile)
const EXAMPLE = join(REPO, 'examples/compute')

it('the Mandelbrot example renders the same image through the network as locally and natively', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'p2pos-mandelbrot-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const wasm = join(dir, 'mandelbrot.wasm')
  await run(join(EXAMPLE, 'build.sh'), [wasm], { timeout: 120_000 })
  const native = join(dir, 'mandelbrot-native')
  await run('clang', ['-O2', '-ffp-contract=off', '-o', native, join(EXAMPLE, 'mandelbrot.c')], { timeout: 120_000 })
  const SIZE = 256
  const TILE = 64
  const inputs = join(dir, 'tiles')
  assert.equal(await writeTiles(inputs, SIZE, TILE, 300), 16)

  const net = await createTestnet(4, t)
  const [a, ...workers] = net.nodes
  await net.connectAll()
  for (const w of workers) assert.equal((await w.cli(['compute', 'offer', '--cores', '2'])).code, 0)
  const out = join(dir, 'out')
  const r = await a.cli(['job', 'run', wasm, '--inputs', inputs, '--out', out, '--json'], { timeoutMs: 300_000 })
  assert.equal(r.code, 0, r.stderr)
  const summary = JSON.parse(r.stdout)
  assert.deepEqual({ tasks: summary.tasks, accepted: summary.accepted, failed: summary.failed }, { tasks: 16, accepted: 16, failed: 0 })
  const image = await assemble(out, SIZE, TILE)
  assert.equal(image.subarray(0, 15).toString(), `P5\n${SIZE} ${SIZE}\n255\n`)

  // the same tiles run here: in the sandbox, and as a native program
  const local = join(dir, 'local')
  const nativeOut = join(dir, 'native')
  const { mkdir, writeFile } = await import('node:fs/promises')
  await mkdir(local)
  await mkdir(nativeOut)
  const sandbox = new Sandbox(1)
  try {
    const mod = await compileTask(await readFile(wasm), 64 << 20)
    for (const name of await readdir(inputs)) {
      const input = await readFile(join(inputs, name))
      await writeFile(join(local, name), (await sandbox.run(mod, input, { cpuMs: 60_000, memoryBytes: 64 << 20, outputBytes: 1 << 20 })).output)
      const child = execFile(native, { encoding: 'buffer', maxBuffer: 1 << 24 })
      child.stdin!.end(input)
      const bytes = await new Promise<Buffer>((resolve, reject) => {
        const parts: Buffer[] = []
        child.stdout!.on('data', (d: Buffer) => parts.push(d))
        child.on('error', reject)
        child.on('close', (code) => { if (code === 0) resolve(Buffer.concat(parts)); else reject(new Error(`native exited ${String(code)}`)) })
      })
      await writeFile(join(nativeOut, name), bytes)
    }
  } finally {
    await sandbox.close()
  }
  assert.ok(image.equals(await assemble(local, SIZE, TILE)), 'the network result equals a local run of the module')
  assert.ok(image.equals(await assemble(nativeOut, SIZE, TILE)), 'and a native build of the same C')
  // a real picture: the set itself (0) and light background both present
  const pixels = image.subarray(15)
  assert.ok(pixels.includes(0) && pixels.some(p => p > 200))

  // on a terminal: the progress bar, then the job's summary
  const term = await Tmux.start()
  t.after(async () => { await term.stop() })
  await term.open('job', 160, 20, `env P2POS_HOME=${sh(a.home)} ${sh(NODE)} ${sh(CLI)} job run ${sh(wasm)} --inputs ${sh(inputs)} --out ${sh(join(dir, 'out-tty'))}; echo JOB-EXIT=$?; sleep 600`)
  const screen = await term.waitScreen('job', 'JOB-EXIT=', 300_000)
  assert.match(screen, /\[#{30}\] 16\/16/, screen)
  assert.match(screen, /done +16\/16 accepted, 0 failed, [0-9.]+ replicas per task/, screen)
  assert.match(screen, /JOB-EXIT=0/)
})
