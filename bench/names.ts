/**
 * `npm run bench:names` — name resolution (names.md §5) on a testnet: success rate, latency, DHT hops and
 * peers asked, against a baseline measured in the same network at the same time.
 *
 * For each N of BENCH_SIZES (in-process daemons, @p2pos/testnet mode 'inprocess'), then for a network of
 * BENCH_PROCESS_N real daemon processes (mode 'process'), each in a fresh child process:
 *
 *   1. starts N daemons and connects them: connectAll({ degree: BENCH_DEGREE }) (each dials that many random
 *      earlier ones), then lets the routing tables fill for BENCH_SETTLE_S
 *   2. BENCH_NAMES random daemons (owners) claim a name each (`names.claim`, SDK) and put a plain signed
 *      app record (`dht.put`, SDK) — the baseline's record
 *   3. for each name, BENCH_RESOLVERS random daemons that are not connected to its owner (and, as far as N
 *      allows, have resolved nothing yet) resolve it with `names.resolve` (SDK); for each, another such
 *      daemon fetches the owner's plain record with `dht.get` (SDK): the same kad-dht lookup without the
 *      people layer. The two alternate in order. A third measure, `ping` (SDK) of a peer the resolver is
 *      connected to, is one request/response round trip on the loaded network.
 *   4. in-process only: every resolver's kad-dht `get` is observed (its events teed): peers asked
 *      (PEER_RESPONSE + QUERY_ERROR), the hop at which the first peer answered with the record (peers the
 *      query started from are hop 1; a peer first named in the `closer` list of a hop-h answer is hop h+1),
 *      when that first answer came, and when the query ended.
 *   5. memory: JS heap and RSS above the child's baseline after a full GC (in-process), or the sum of the
 *      daemon processes' RSS (process mode); routing-table sizes (in-process).
 *
 * A step that fails or takes longer than BENCH_STEP_S stops the sweep; the figures so far are printed.
 * Every loop is bounded in count, every call in time.
 *
 * Environment (defaults): BENCH_SIZES=10,50,100,200,400,1000 BENCH_PROCESS_N=10 (0: none)
 * BENCH_DEGREE=3 BENCH_SETTLE_S=30 (convergence after connecting takes 10–20 s) BENCH_NAMES=10 BENCH_RESOLVERS=5 BENCH_TIMEOUT_S=30 (per call)
 * BENCH_STEP_S=900 BENCH_START_CONCURRENCY=8 BENCH_CONNECT_CONCURRENCY=16 (connectAll's dials in flight) BENCH_VERBOSE=1 (every call)
 * BENCH_PING_ABORT=0 (in-process: libp2p's connection monitor no longer aborts a connection whose ping
 * failed — an experiment, see README.md) BENCH_HEAP_MB=16384 BENCH_CONFIG='{"…": …}' (daemon
 * config overrides for every daemon)
 */
import { spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { availableParallelism, totalmem, loadavg } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { startTestnet, type InProcessDaemon, type TestDaemon } from '@p2pos/testnet'
import { within } from '@p2pos/testnet/wait'
import { envInt } from './common.ts'

const STEP = process.argv.find(a => a.startsWith('--step='))?.slice('--step='.length)
const MODE = (process.argv.find(a => a.startsWith('--mode='))?.slice('--mode='.length) ?? 'inprocess') as 'inprocess' | 'process'

interface Query { key: string, asked: number, errors: number, errorKinds: Record<string, number>, firstRecordMs?: number, firstRecordHop?: number, endMs?: number, values: number }

interface Sample { kind: 'resolve' | 'dhtget' | 'ping', ok: boolean, ms: number, error?: string, query?: Query, conns?: number, connsAfter?: number }

interface StepResult {
  n: number
  mode: 'inprocess' | 'process'
  startMs: number
  connectMs: number
  retries: number
  rt?: { mean: number, min: number, max: number }
  conns: { mean: number, min: number, max: number }
  /** stored -1: failed */
  claims: Array<{ ms: number, stored: number, error?: string }>
  puts: Array<{ ms: number, stored: number, error?: string }>
  /** the process's CPU (% of one core) in each 5 s window after connectAll, settle and idle measurement */
  cpuAfterConnect: number[]
  /** connections closed (all daemons) in the same windows, and during the resolutions */
  closedAfterConnect: number[]
  closedDuring: number
  samples: Sample[]
  heapMB?: number
  rssMB: number
  fds?: number
  idleCpuPct: number
  loopDelayP99Ms: number
  measureMs: number
  stopMs: number
  load: number[]
  stopped?: string
  /** resolvers that were connected to the owner, disconnected before they resolved */
  disconnected: number
}

const mb = (bytes: number): number => bytes / 1024 / 1024
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
function progress (line: string): void {
  process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

/** Tees the events of a daemon's kad-dht `get` into `queries` (in-process daemons only). */
function observe (d: InProcessDaemon, queries: Query[]): void {
  const dht = d.daemon!.node.services.dht as any
  const orig = dht.get.bind(dht)
  dht.get = async function * (key: Uint8Array, options?: unknown) {
    const q: Query = { key: new TextDecoder().decode(key), asked: 0, errors: 0, errorKinds: {}, values: 0 }
    queries.push(q)
    const t0 = performance.now()
    const hop = new Map<string, number>()
    try {
      for await (const ev of orig(key, options)) {
        if (ev.name === 'SEND_QUERY') {
          const id = String(ev.to)
          if (!hop.has(id)) hop.set(id, 1) // queried before any answer named it: a starting peer
        } else if (ev.name === 'PEER_RESPONSE') {
          q.asked++
          const from = String(ev.from)
          const h = hop.get(from) ?? 1
          for (const p of ev.closer ?? []) {
            const id = String(p.id)
            if (!hop.has(id)) hop.set(id, h + 1)
          }
          if (ev.record != null && q.firstRecordMs == null) { q.firstRecordMs = performance.now() - t0; q.firstRecordHop = h }
        } else if (ev.name === 'QUERY_ERROR') {
          q.errors++
          const why = String(ev.error?.name ?? '') + ': ' + String(ev.error?.message ?? ev.error).replace(/12D3Koo\w+/g, '…').replace(/\/ip4\S+/g, 'ADDR').slice(0, 100)
          q.errorKinds[why] = (q.errorKinds[why] ?? 0) + 1
        } else if (ev.name === 'VALUE') {
          q.values++
        }
        yield ev
      }
    } finally {
      q.endMs = performance.now() - t0
    }
  }
}

/* ---------- one step, in a child process ---------- */

async function step (n: number, mode: 'inprocess' | 'process'): Promise<void> {
  const inprocess = mode === 'inprocess'
  if (inprocess) await import('@p2pos/daemon') // loaded before the baseline: module code is not a per-daemon cost
  const gc = (globalThis as any).gc as (() => void) | undefined
  if (gc == null) throw new Error('run with --expose-gc')
  gc()
  const base = process.memoryUsage()
  const baseFds = readdirSync('/proc/self/fd').length
  const timeoutMs = envInt('BENCH_TIMEOUT_S', 30) * 1000
  const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}')

  let t = performance.now()
  const net = await startTestnet(n, config, { mode, concurrency: envInt('BENCH_START_CONCURRENCY', 8) })
  const startMs = performance.now() - t
  progress(`${mode} ${n}: started in ${(startMs / 1000).toFixed(1)} s`)
  try {
    const degree = envInt('BENCH_DEGREE', 3)
    t = performance.now()
    const connectLoop = monitorEventLoopDelay({ resolution: 10 })
    connectLoop.enable()
    const connectCpu0 = process.cpuUsage()
    let connect
    try {
      connect = await net.connectAll({ degree, concurrency: envInt('BENCH_CONNECT_CONCURRENCY', 16) })
    } finally {
      const c = process.cpuUsage(connectCpu0)
      connectLoop.disable()
      progress(`${n}: while connecting: ${((c.user + c.system) / 1000 / (performance.now() - t) * 100).toFixed(0)} % of a core, event loop delay p50 ${(connectLoop.percentile(50) / 1e6).toFixed(0)} ms, p99 ${(connectLoop.percentile(99) / 1e6).toFixed(0)} ms, max ${(connectLoop.max / 1e6).toFixed(0)} ms`)
    }
    const connectMs = performance.now() - t
    progress(`${n}: connected in ${(connectMs / 1000).toFixed(1)} s (${connect.dials} dials, ${connect.retries} retried)`)
    // connections closed, all daemons together (in-process): libp2p's connection monitor aborts a
    // connection whose ping fails, and every daemon pings all its connections at the same moment
    let closed = 0
    if (inprocess) {
      for (const d of net.nodes) {
        const node = (d as InProcessDaemon).daemon!.node as any
        node.addEventListener('connection:close', () => { closed++ })
        if (process.env.BENCH_PING_ABORT === '0') node.components.connectionMonitor.abortConnectionOnPingFailure = false
      }
    }
    // the CPU the network takes while nothing is asked of it, in 5 s windows: convergence or upkeep?
    const cpuAfterConnect: number[] = []
    const closedAfterConnect: number[] = []
    const settleEnd = performance.now() + envInt('BENCH_SETTLE_S', 30, 0) * 1000
    while (performance.now() < settleEnd) {
      const c0 = process.cpuUsage()
      const w0 = performance.now()
      await sleep(Math.min(5000, Math.max(0, settleEnd - w0)))
      const c = process.cpuUsage(c0)
      if (performance.now() - w0 > 1000) { cpuAfterConnect.push((c.user + c.system) / 1000 / (performance.now() - w0) * 100); closedAfterConnect.push(closed); closed = 0 }
    }
    if (inprocess) progress(`${n}: after connect, 5 s windows: CPU ${cpuAfterConnect.map(x => x.toFixed(0)).join(' ')} %; connections closed ${closedAfterConnect.join(' ')}; open files ${readdirSync('/proc/self/fd').length}`)

    // idle cost, before the measurement
    const loop = monitorEventLoopDelay({ resolution: 10 })
    loop.enable()
    const cpu0 = process.cpuUsage()
    const idle0 = performance.now()
    await sleep(3000)
    const cpu = process.cpuUsage(cpu0)
    const idleCpuPct = inprocess ? (cpu.user + cpu.system) / 1000 / (performance.now() - idle0) * 100 : -1
    loop.disable()

    const ids = net.nodes.map(d => d.peerId)
    const rtSizes = inprocess ? net.nodes.map(d => ((d as InProcessDaemon).daemon!.node.services.dht as any).routingTable.size as number) : undefined
    const connsOf = async (d: TestDaemon): Promise<Set<string>> => new Set((await within(timeoutMs, 'peers', d.client.peers())).map(p => p.peerId))

    let seed = 11
    const random = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
    const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]

    // owners claim a name each and put a plain record
    const K = Math.min(envInt('BENCH_NAMES', 10), Math.floor(n / 2))
    const owners: number[] = []
    while (owners.length < K) { const i = Math.floor(random() * n); if (!owners.includes(i)) owners.push(i) }
    const claims: StepResult['claims'] = []
    const puts: StepResult['puts'] = []
    const names: string[] = []
    const measure0 = performance.now()
    for (const [j, i] of owners.entries()) {
      const c = net.nodes[i].client
      let c0 = performance.now()
      try {
        const r = await c.claimName(`bench${j}`, { timeoutMs })
        claims.push({ ms: performance.now() - c0, stored: r.stored })
        names.push(r.name)
      } catch (err: any) {
        claims.push({ ms: performance.now() - c0, stored: -1, error: String(err?.message ?? err).slice(0, 200) })
        names.push('')
      }
      c0 = performance.now()
      try {
        const p = await c.dhtPut('bench', `plain record of owner ${j}`, { timeoutMs })
        puts.push({ ms: performance.now() - c0, stored: p.stored })
      } catch (err: any) {
        puts.push({ ms: performance.now() - c0, stored: -1, error: String(err?.message ?? err).slice(0, 200) })
      }
      progress(`${n}: owner ${j + 1}/${K}: claim ${Math.round(claims[j].ms)} ms (stored on ${claims[j].stored}${claims[j].error != null ? `: ${claims[j].error}` : ''}), put ${Math.round(puts[j].ms)} ms (stored on ${puts[j].stored})`)
    }
    if (claims.every(c => c.error != null)) throw new Error(`no name could be claimed: ${claims[0].error}`)

    // resolutions, each from a daemon not connected to the owner; the baseline from another such daemon
    const queries = new Map<number, Query[]>()
    if (inprocess) for (const [i, d] of net.nodes.entries()) { const qs: Query[] = []; queries.set(i, qs); observe(d as InProcessDaemon, qs) }
    const used = new Set<number>()
    let disconnected = 0
    let closedDuring = 0
    const samples: Sample[] = []
    const R = envInt('BENCH_RESOLVERS', 5)
    const edges = net.edges({ degree })
    const neighbours = (i: number): number[] => edges.filter(([a, b]) => a === i || b === i).map(([a, b]) => a === i ? b : a)
    const timed = async (kind: Sample['kind'], who: number, fn: () => Promise<unknown>): Promise<Sample> => {
      const qs = queries.get(who)
      const before = qs?.length ?? 0
      const conns0 = await connsOf(net.nodes[who]).then(c => c.size, () => -1)
      const c0 = performance.now()
      let s: Sample
      try {
        await within(timeoutMs + 5000, kind, fn())
        s = { kind, ok: true, ms: performance.now() - c0 }
      } catch (err: any) {
        s = { kind, ok: false, ms: performance.now() - c0, error: String(err?.message ?? err).slice(0, 200) }
      }
      if (qs != null && qs.length > before) s.query = qs[before]
      s.conns = conns0
      if (!s.ok) s.connsAfter = await connsOf(net.nodes[who]).then(c => c.size, () => -1)
      samples.push(s)
      if (process.env.BENCH_VERBOSE === '1' && kind !== 'ping') {
        const x = s.query
        progress(`  ${kind} by node${who} (${s.conns} connections${s.connsAfter != null ? `, ${s.connsAfter} after` : ''}): ${s.ok ? 'ok' : 'FAILED'} in ${Math.round(s.ms)} ms${x != null ? `; asked ${x.asked}, errors ${x.errors} ${JSON.stringify(x.errorKinds)}, 1st record ${x.firstRecordMs != null ? Math.round(x.firstRecordMs) : '–'} ms at hop ${x.firstRecordHop ?? '–'}, query end ${Math.round(x.endMs ?? -1)} ms` : ''}${s.error != null ? `: ${s.error}` : ''}`)
      }
      return s
    }
    const stepDeadline = Date.now() + envInt('BENCH_STEP_S', 900) * 1000 * 0.6
    let stopped: string | undefined
    try {
    for (const [j, owner] of owners.entries()) {
      if (names[j] === '') continue
      for (let r = 0; r < R; r++) {
        if (Date.now() > stepDeadline) throw new Error('resolutions: step time limit reached')
        if (inprocess) progress(`${n}: open files ${readdirSync('/proc/self/fd').length}, connections closed so far ${closedDuring + closed}`)
        const chosen: number[] = []
        for (let tries = 0; chosen.length < 2 && tries < 200; tries++) {
          const i = Math.floor(random() * n)
          if (i === owner || chosen.includes(i) || (tries < 100 && used.has(i))) continue
          if ((await connsOf(net.nodes[i])).has(ids[owner])) {
            // small networks: every daemon is connected to every other; close that connection first
            if (tries < 150) continue
            await within(timeoutMs, 'disconnect', net.nodes[i].client.disconnectPeer(ids[owner])).catch(() => {})
            disconnected++
          }
          chosen.push(i)
        }
        if (chosen.length < 2) { progress(`${n}: no two daemons left that are not connected to owner ${owner}`); break }
        for (const i of chosen) used.add(i)
        const [a, b] = (samples.length >> 1) % 2 === 0 ? chosen : [chosen[1], chosen[0]]
        const order: Array<() => Promise<Sample>> = [
          async () => await timed('resolve', a, async () => {
            const res = await net.nodes[a].client.resolve(names[j], { timeoutMs })
            if (res.person !== ids[owner]) throw new Error(`resolved to ${res.person}, not ${ids[owner]}`)
          }),
          async () => await timed('dhtget', b, async () => await net.nodes[b].client.dhtGet(ids[owner], 'bench', { timeoutMs }))
        ]
        if (r % 2 === 1) order.reverse()
        for (const f of order) await f()
        const nb = neighbours(a)
        if (nb.length > 0) await timed('ping', a, async () => await net.nodes[a].client.ping(ids[pick(nb)], { timeoutMs }))
      }
      const last = samples.filter(s => s.kind === 'resolve').slice(-R)
      progress(`${n}: name ${j + 1}/${K}: resolve ${last.map(s => s.ok ? Math.round(s.ms) : 'FAIL').join(' ')} ms${inprocess ? `; connections closed meanwhile: ${closed}, open files ${readdirSync('/proc/self/fd').length}` : ''}`)
      closedDuring += closed
      closed = 0
    }
    } catch (err: any) {
      stopped = String(err?.message ?? err)
      progress(`${n}: resolutions stopped: ${stopped}`)
    }
    const measureMs = performance.now() - measure0

    gc()
    const mem = process.memoryUsage()
    let rssMB: number
    if (inprocess) {
      rssMB = mb(mem.rss - base.rss)
    } else {
      rssMB = 0
      for (const d of net.nodes) {
        const status = readFileSync(`/proc/${d.process!.pid}/status`, 'utf8')
        rssMB += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024
      }
    }
    const conns = await Promise.all(net.nodes.map(async d => (await connsOf(d)).size))
    const fds = readdirSync('/proc/self/fd').length - baseFds

    t = performance.now()
    await net.stop()
    const stopMs = performance.now() - t
    const result: StepResult = {
      n,
      mode,
      startMs,
      connectMs,
      retries: connect.retries,
      rt: rtSizes == null ? undefined : { mean: rtSizes.reduce((x, y) => x + y, 0) / n, min: Math.min(...rtSizes), max: Math.max(...rtSizes) },
      conns: { mean: conns.reduce((x, y) => x + y, 0) / n, min: Math.min(...conns), max: Math.max(...conns) },
      claims,
      puts,
      cpuAfterConnect,
      closedAfterConnect,
      closedDuring,
      samples,
      heapMB: inprocess ? mb(mem.heapUsed - base.heapUsed) : undefined,
      rssMB,
      fds: inprocess ? fds : undefined,
      idleCpuPct,
      loopDelayP99Ms: loop.percentile(99) / 1e6,
      measureMs,
      stopMs,
      load: loadavg(),
      disconnected,
      stopped
    }
    console.log(JSON.stringify({ result }))
  } finally {
    await net.stop()
  }
}

/* ---------- the parent: one child per step ---------- */

interface Outcome { result?: StepResult, error?: string }

async function runStep (n: number, mode: 'inprocess' | 'process', boundMs: number): Promise<Outcome> {
  const child = spawn(process.execPath, ['--expose-gc', `--max-old-space-size=${envInt('BENCH_HEAP_MB', 16384)}`, import.meta.filename, `--step=${n}`, `--mode=${mode}`], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let result: StepResult | undefined
  let stderrTail = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderrTail = (stderrTail + d).slice(-3000)
    if (d.includes('  [')) process.stderr.write(d.split('\n').filter(l => l.startsWith('  [')).map(l => l + '\n').join(''))
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const msg = JSON.parse(line)
      if (msg.result != null) result = msg.result
    } catch {}
  })
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, boundMs)
  const code = await new Promise<number | null>(resolve => child.on('exit', (c) => resolve(c)))
  clearTimeout(timer)
  if (timedOut) return { result, error: `took longer than ${boundMs / 1000} s (killed)` }
  if (code !== 0 || result == null) return { result, error: `exited with ${code}: ${stderrTail.split('\n').filter(l => !l.startsWith('  [')).slice(-12).join('\n')}` }
  return { result }
}

const f0 = (x: number | undefined): string => x == null || Number.isNaN(x) ? '–' : x.toFixed(0)
const f1 = (x: number | undefined): string => x == null || Number.isNaN(x) ? '–' : x.toFixed(1)
function q (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]
}
const mean = (xs: number[]): number => xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length

export const HEADER = '| N | mode | resolved (disconnected first) | p50 (ms) | p99 (ms) | max (ms) | dht.get baseline p50 / p99 (ms) | resolve ÷ dht.get (p50) | ping p50 (ms) | hop of 1st answer, mean (max) | peers asked, mean | 1st answer / query end p50 (ms) | RT size mean | RSS / daemon (MB) | heap / daemon (MB) | idle CPU (%) | start / connect (s) |'

function row (r: StepResult): string {
  const of = (k: Sample['kind']): Sample[] => r.samples.filter(s => s.kind === k)
  const res = of('resolve')
  const ok = res.filter(s => s.ok).map(s => s.ms)
  const base = of('dhtget').filter(s => s.ok).map(s => s.ms)
  const pings = of('ping').filter(s => s.ok).map(s => s.ms)
  const qs = [...res, ...of('dhtget')].filter(s => s.ok && s.query != null).map(s => s.query!)
  const rq = res.filter(s => s.ok && s.query != null).map(s => s.query!)
  const hops = rq.map(x => x.firstRecordHop).filter((x): x is number => x != null)
  const firsts = rq.map(x => x.firstRecordMs).filter((x): x is number => x != null)
  const ends = rq.map(x => x.endMs).filter((x): x is number => x != null)
  return `| ${r.n} | ${r.mode} | ${ok.length}/${res.length} (${r.disconnected}) | ${f0(q(ok, 0.5))} | ${f0(q(ok, 0.99))} | ${ok.length > 0 ? f0(Math.max(...ok)) : '–'} | ${f0(q(base, 0.5))} / ${f0(q(base, 0.99))} (${base.length}/${of('dhtget').length}) | ${(q(ok, 0.5) / q(base, 0.5)).toFixed(2)} | ${f0(q(pings, 0.5))} | ${hops.length > 0 ? `${f1(mean(hops))} (${Math.max(...hops)})` : '–'} | ${qs.length > 0 ? f1(mean(rq.map(x => x.asked + x.errors))) : '–'} | ${firsts.length > 0 ? `${f0(q(firsts, 0.5))} / ${f0(q(ends, 0.5))}` : '–'} | ${r.rt != null ? `${f1(r.rt.mean)} (${r.rt.min}–${r.rt.max})` : '–'} | ${f1(r.rssMB / r.n)} | ${r.heapMB != null ? f1(r.heapMB / r.n) : '–'} | ${r.idleCpuPct >= 0 ? f0(r.idleCpuPct) : '–'} | ${f1(r.startMs / 1000)} / ${f1(r.connectMs / 1000)} |`
}

async function main (): Promise<void> {
  const sizes = (process.env.BENCH_SIZES ?? '10,50,100,200,400,1000').split(',').map(s => Number(s.trim())).filter(x => Number.isInteger(x) && x >= 4).slice(0, 20)
  const processN = envInt('BENCH_PROCESS_N', 10, 0)
  const boundMs = envInt('BENCH_STEP_S', 900) * 1000
  console.log(`names: ${new Date().toISOString()}; ${availableParallelism()} cores, ${f0(totalmem() / 2 ** 30)} GiB, node ${process.version}; degree ${envInt('BENCH_DEGREE', 3)}, ${envInt('BENCH_NAMES', 10)} names × ${envInt('BENCH_RESOLVERS', 5)} resolvers, settle ${envInt('BENCH_SETTLE_S', 30, 0)} s${process.env.BENCH_CONFIG != null ? `, config ${process.env.BENCH_CONFIG}` : ''}`)
  const rows: string[] = []
  const steps: Array<[number, 'inprocess' | 'process']> = sizes.map(n => [n, 'inprocess'])
  if (processN > 0) steps.push([processN, 'process'])
  let failure: string | undefined
  for (const [n, mode] of steps) {
    const t = performance.now()
    const { result: r, error } = await runStep(n, mode, boundMs)
    if (r != null) {
      rows.push(row(r))
      console.log(JSON.stringify({ ...r, samples: undefined, failed: r.samples.filter(s => !s.ok).map(s => `${s.kind}: ${s.error ?? ''}`), stepMs: performance.now() - t }))
    }
    if (error != null) {
      failure = `${mode} N=${n}: ${error}`
      console.log(failure)
      // the process-mode step still runs after an in-process failure: it is another measurement
      if (mode === 'inprocess' && processN > 0 && steps.some(([m, md]) => md === 'process' && m === processN)) {
        const k = steps.findIndex(([, md]) => md === 'process')
        const { result: pr, error: pe } = await runStep(steps[k][0], 'process', boundMs)
        if (pr != null) rows.push(row(pr))
        if (pe != null) console.log(`process N=${processN}: ${pe}`)
      }
      break
    }
  }
  console.log('\n' + HEADER + '\n|' + '---|'.repeat(17) + '\n' + rows.join('\n'))
  if (failure != null) console.log(`\nstopped: ${failure}`)
}

if (STEP != null) {
  step(Number(STEP), MODE).then(() => {
    setTimeout(() => { console.error(`still alive 20 s after stop: ${process.getActiveResourcesInfo().join(', ')}`); process.exit(3) }, 20_000).unref()
  }, (err) => { console.error(err?.stack ?? err); process.exit(1) })
} else {
  await main()
}
