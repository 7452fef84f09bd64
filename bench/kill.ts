/**
 * npm run bench:kill — SIGKILL at random moments (issue: hardening), KILL_RUNS seeded runs (default 50).
 *
 * Two daemon processes A and B. In each run B's `p2pos listen APP --out DIR` receives either a
 * stream of acknowledged messages from an SDK app on A (bench/kill-sender.ts) or a file from
 *  `p2pos send --file` (KILL_FILE_MB, default 64 MiB); a random 0–1.5 s (files: 0–4 s) after traffic starts one of four
 * processes is killed with SIGKILL: B's daemon, A's daemon, the receiving app (listen) or the sending app.
 * Then, checked:
 *   - every message the sender saw acknowledged was printed by the receiving app;
 *   - a file whose `send` exited 0 is in DIR, whole (size and SHA-256);
 *   - a client whose daemon was killed exits non-zero and names the error;
 *   - the killed daemon restarts with the same peer id;
 *   - once a new listen has started on DIR, nothing half-written is left there, under any name.
 *
 *   KILL_RUNS=50 KILL_SEED=1 npm run bench:kill
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, NODE, mulberry32, startTestnet, until, within, type TestDaemon } from '../packages/testnet/src/index.ts'

const RUNS = Number(process.env.KILL_RUNS ?? 50)
const SEED = Number(process.env.KILL_SEED ?? 1)
const FILE_MB = Number(process.env.KILL_FILE_MB ?? 64)
const APP = 'org.bench.kill'
const HERE = new URL('.', import.meta.url).pathname
const VICTIMS = ['receiver daemon', 'sender daemon', 'receiving app', 'sending app'] as const

interface Proc { child: ChildProcess, out: string, err: string, exit: Promise<number | null> }
function run (cmd: string[], home: string): Proc {
  const child = spawn(NODE, cmd, { env: { ...process.env, P2POS_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
  const p: Proc = { child, out: '', err: '', exit: new Promise(resolve => child.once('exit', code => resolve(code))) }
  child.stdout!.on('data', (d: Buffer) => { p.out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { p.err += d.toString() })
  return p
}

const random = mulberry32(SEED)
const net = await startTestnet(2)
const [a, b] = net.nodes as [TestDaemon, TestDaemon]
const work = await mkdtemp(join(tmpdir(), 'p2pos-bench-kill-'))
const file = join(work, 'payload.bin')
const payload = randomBytes(FILE_MB * 1024 * 1024)
await writeFile(file, payload)
const sha = createHash('sha256').update(payload).digest('hex')
const tally: Record<string, { runs: number, acked: number, violations: string[] }> = {}
const t0 = Date.now()
console.log(`${RUNS} runs, seed ${SEED}, files of ${FILE_MB} MiB`)
try {
  for (let i = 0; i < RUNS; i++) {
    const scenario = random() < 0.5 ? 'messages' : 'file'
    const victim = VICTIMS[Math.floor(random() * VICTIMS.length)]
    // files take a few seconds here: some runs kill after the file was stored
    const delayMs = Math.floor(random() * (scenario === 'file' ? 4000 : 1500))
    const key = `${scenario} / ${victim}`
    const t = (tally[key] ??= { runs: 0, acked: 0, violations: [] })
    t.runs++
    const bad = (why: string): void => { t.violations.push(`run ${i} (${delayMs} ms): ${why}`) }
    const out = join(work, `inbox-${i}`)
    await a.client.connectPeer(b.addr).catch(() => {})
    const listen = run([CLI, 'listen', APP, '--out', out], b.home)
    await until('listen to register', () => listen.err.includes('listening as app'), 20_000)
    const sender = scenario === 'messages'
      ? run([join(HERE, 'kill-sender.ts'), `--home=${a.home}`, `--peer=${b.peerId}`, `--app=${APP}`, '--count=100000'], a.home)
      : run([CLI, 'send', b.peerId, APP, '--file', file, '--json'], a.home)
    // the clock starts once traffic flows: the first acknowledged message, or the file's first bytes on B's disk
    await until('traffic to flow', async () => scenario === 'messages' ? sender.out.length > 0 : (await readdir(out).catch(() => [] as string[])).length > 0, 30_000)
      .catch(() => { bad(`no traffic within 30 s: ${sender.err.trim()} ${listen.err.trim()}`) })
    await new Promise(resolve => setTimeout(resolve, delayMs))
    let killed: TestDaemon | undefined
    if (victim === 'receiver daemon') { killed = b; await b.kill('SIGKILL') } else if (victim === 'sender daemon') { killed = a; await a.kill('SIGKILL') } else if (victim === 'receiving app') listen.child.kill('SIGKILL')
    else sender.child.kill('SIGKILL')
    // the survivors end by themselves (a sender whose receiver is gone, a listen whose daemon is gone);
    // a sender still running after 30 s (its side is healthy) is stopped
    const senderCode = await within(30_000, 'sender to end', sender.exit).catch(() => { sender.child.kill('SIGKILL'); return -1 })
    if (victim === 'receiver daemon') {
      const code = await within(30_000, 'listen to end', listen.exit).catch(() => -1)
      if (code !== 3) bad(`listen exited ${code} after its daemon was killed: ${listen.err.trim()}`)
    }
    if (victim === 'sender daemon' && senderCode === 0 && scenario === 'messages') bad('the sending app exited 0 after its daemon was killed')
    if (victim === 'sender daemon' && senderCode !== 0 && senderCode !== -1 && !/\[E_[A-Z_]+\]/.test(sender.err)) bad(`the sending app did not name the error: ${sender.err.trim()}`)
    listen.child.kill('SIGKILL')
    await listen.exit
    // what was acknowledged is there
    if (scenario === 'messages') {
      const acked = sender.out.split('\n').filter(Boolean).map(Number)
      // listen prints "PEER: TEXT" for each message, before it acknowledges it
      const got = new Set(listen.out.split('\n').filter(Boolean).map(l => l.slice(a.peerId.length + 2)))
      t.acked += acked.length
      if (process.env.KILL_VERBOSE != null) console.log(`run ${i} ${key} after ${delayMs} ms: ${acked.length} acknowledged; sender ${senderCode}: ${sender.err.trim()}`)
      const lost = acked.filter(n => !got.has(`m${n}`))
      if (lost.length > 0) bad(`${lost.length} acknowledged messages never reached the app (first m${lost[0]})`)
    } else if (senderCode === 0) {
      t.acked++
      const stored = join(out, 'payload.bin')
      const bytes = await readFile(stored).catch(() => null)
      if (bytes == null) bad('send --file exited 0 but the file is not there')
      else if (createHash('sha256').update(bytes).digest('hex') !== sha) bad('send --file exited 0 but the stored file differs')
    }
    // the killed daemon comes back as itself
    if (killed != null) {
      const id = killed.peerId
      await killed.start()
      if (killed.peerId !== id) bad(`the daemon came back as ${killed.peerId}, not ${id}`)
    }
    // a new listen sweeps what a killed receiver left; nothing half-written remains
    const again = run([CLI, 'listen', APP, '--out', out], b.home)
    await until('the next listen to start', () => again.err.includes('listening as app'), 20_000).catch(() => { bad(`the next listen did not start: ${again.err.trim()}`) })
    again.child.kill('SIGKILL')
    await again.exit
    const left = (await readdir(out).catch(() => [] as string[])).filter(n => n !== 'payload.bin')
    if (left.length > 0) bad(`left behind: ${left.join(', ')}`)
    await rm(out, { recursive: true, force: true })
  }
} finally {
  const s = (Date.now() - t0) / 1000
  console.log('scenario / killed                 runs  acknowledged  violations')
  let total = 0
  for (const [k, v] of Object.entries(tally).sort()) {
    console.log(`${k.padEnd(32)} ${String(v.runs).padStart(5)} ${String(v.acked).padStart(13)} ${String(v.violations.length).padStart(11)}`)
    for (const why of v.violations.slice(0, 5)) console.log(`    ${why}`)
    total += v.violations.length
  }
  console.log(`${RUNS} runs in ${s.toFixed(0)} s; ${total} violations`)
  await net.stop()
  await rm(work, { recursive: true, force: true })
}
