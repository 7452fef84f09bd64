/**
 * `npm run bench:names` — name resolution (names.md §5) on a testnet: success rate, latency, DHT hops and
 * peers asked, against a baseline measured in the same network at the same time.
 *
 * For each N of BENCH_SIZES (in-process daemons, @p2pos/testnet mode 'inprocess', spread over
 * BENCH_HOSTS host processes joined into one network over loopback: bench/hosts.ts), then for a network of
 * BENCH_PROCESS_N real daemon processes (mode 'process'), each step coordinated by a fresh child process:

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
 *   5. memory: JS heap and RSS above each host's baseline after a full GC, summed (in-process), or the sum
 *      of the daemon processes' RSS (process mode); open files, routing-table sizes (in-process).

 * A step that fails or takes longer than BENCH_STEP_S stops the sweep; the figures so far are printed.
 * Every loop is bounded in count, every call in time.
 *
 * Environment (defaults): BENCH_SIZES=10,50,100,200,400,1000 BENCH_PROCESS_N=10 (0: none)
 * BENCH_DEGREE=3 BENCH_SETTLE_S=30 (convergence after connecting takes 10–20 s) BENCH_NAMES=10 BENCH_RESOLVERS=5 BENCH_TIMEOUT_S=30 (per call)
 * BENCH_STEP_S=900 BENCH_START_CONCURRENCY=8 BENCH_CONNECT_CONCURRENCY=16 (connectAll's dials in flight, per host)
 * BENCH_CONNECT_ATTEMPTS=6 BENCH_CONNECT_PAUSE_S=4 (a refused dial is retried 1, 2, 4 … s apart up to this) BENCH_VERBOSE=1 (every call)
 * BENCH_HOSTS=ceil(N/250) (host processes of the in-process daemons) BENCH_NOFILE (raise each host's
 * limit on open files to this, with prlimit: root) BENCH_PING_ABORT=1 (in-process: libp2p's connection
 * monitor aborts a connection whose ping failed, as in real daemons; by default it does not — the
 * testnet's pingAbort: false, see README.md) BENCH_HEAP_MB=16384 BENCH_CONFIG='{"…": …}' (daemon config
 * overrides for every daemon)
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism, totalmem, loadavg } from 'node:os'
import { createInterface } from 'node:readline'
import { startTestnet } from '@p2pos/testnet'
import { envInt } from './common.ts'
import { HostedTestnet, runOp, type HostStats, type OpName, type OpResult, type Query } from './hosts.ts'

const STEP = process.argv.find(a => a.startsWith('--step='))?.slice('--step='.length)
const MODE = (process.argv.find(a => a.startsWith('--mode='))?.slice('--mode='.length) ?? 'inprocess') as 'inprocess' | 'process'

interface Sample { kind: 'resolve' | 'dhtget' | 'ping', ok: boolean, ms: number, error?: string, query?: Query, conns?: number, connsAfter?: number }

interface StepResult {
  n: number
  mode: 'inprocess' | 'process'
  /** host processes of the in-process daemons (bench/hosts.ts) */
  hosts: number
  startMs: number
  connectMs: number
  retries: number
  rt?: { mean: number, min: number, max: number }
  conns: { mean: number, min: number, max: number }
  /** stored -1: failed */
  claims: Array<{ ms: number, stored: number, error?: string }>
  puts: Array<{ ms: number, stored: number, error?: string }>
  /** the hosts' CPU (% of one core, summed) while connecting and in each 5 s window after connectAll */
  connectCpuPct?: number
  connectLoopP99Ms?: number
  cpuAfterConnect: number[]
  /** connections closed (all daemons) in the same windows, and during the resolutions */
  closedAfterConnect: number[]
  closedDuring: number
  samples: Sample[]
  heapMB?: number
  rssMB: number
  fds?: number
  fdLimit?: number
  idleCpuPct: number
  loopDelayP99Ms: number
  measureMs: number
  stopMs: number
  load: number[]
  stopped?: string
  /** resolvers that were connected to the owner, disconnected before they resolved */
  disconnected: number
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
function progress (line: string): void {
  process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

/** The network a step measures: in-process daemons in host processes, or daemon processes. */
interface BenchNet {
  ids: string[]
  edges: (options: { degree: number }) => Array<[number, number]>
  connectAll: (options: { degree: number, concurrency: number, attempts?: number, maxPauseMs?: number }) => Promise<{ dials: number, retries: number }>
  op: (i: number, op: OpName, a: Record<string, unknown>, timeoutMs: number) => Promise<OpResult>
  /** in-process only (null: daemon processes) */
  stats: (options?: { gc?: boolean }) => Promise<HostStats[] | null>
  /** the sum of the daemons' RSS (process mode) */
  processRssMB?: () => number
  stop: () => Promise<number>
}

async function inprocessNet (n: number, config: Record<string, unknown>): Promise<BenchNet & { hosts: number }> {
  const hosts = envInt('BENCH_HOSTS', Math.max(1, Math.ceil(n / 250)))
  const net = await HostedTestnet.start(n, {
    hosts,
    config,
    startConcurrency: envInt('BENCH_START_CONCURRENCY', 8),
    pingAbort: process.env.BENCH_PING_ABORT === '1',
    heapMB: envInt('BENCH_HEAP_MB', 16384),
    nofile: process.env.BENCH_NOFILE != null ? envInt('BENCH_NOFILE', 65536) : undefined
  })
  return {
    hosts,
    ids: net.nodes.map(x => x.peerId),
    edges: (o) => net.edges(o),
    connectAll: async (o) => await net.connectAll(o),
    op: async (i, op, a, t) => await net.op(i, op, a, t),
    stats: async (o) => await net.stats(o),
    stop: async () => await net.stop()
  }
}

async function processNet (n: number, config: Record<string, unknown>): Promise<BenchNet> {
  const net = await startTestnet(n, config, { mode: 'process' })
  return {
    ids: net.nodes.map(d => d.peerId),
    edges: (o) => net.edges(o),
    connectAll: async (o) => await net.connectAll(o),
    op: async (i, op, a, t) => await runOp(net.nodes[i], op, a, t),
    stats: async () => null,
    processRssMB: () => {
      let mb = 0
      for (const d of net.nodes) mb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.process!.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
      return mb
    },
    stop: async () => { const t = performance.now(); await net.stop(); return performance.now() - t }
  }
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)

/* ---------- one step, in a child process ---------- */

async function step (n: number, mode: 'inprocess' | 'process'): Promise<void> {
  const inprocess = mode === 'inprocess'
  const stepStart = Date.now()
  const timeoutMs = envInt('BENCH_TIMEOUT_S', 30) * 1000
  const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}')

  let t = performance.now()
  const net = inprocess ? await inprocessNet(n, config) : await processNet(n, config)
  const hosts = 'hosts' in net ? net.hosts as number : 0
  const startMs = performance.now() - t
  progress(`${mode} ${n}: started in ${(startMs / 1000).toFixed(1)} s${inprocess ? ` (${hosts} host processes)` : ''}`)
  let stopMs = NaN
  try {
    const degree = envInt('BENCH_DEGREE', 3)
    await net.stats() // resets the hosts' CPU and loop counters
    t = performance.now()
    const connect = await net.connectAll({ degree, concurrency: envInt('BENCH_CONNECT_CONCURRENCY', 16), attempts: envInt('BENCH_CONNECT_ATTEMPTS', 6), maxPauseMs: envInt('BENCH_CONNECT_PAUSE_S', 4) * 1000 }).catch((err: any) => {
      const st = String(err?.message ?? err).split('\n')
      progress(`${n}: connectAll failed after ${((performance.now() - t) / 1000).toFixed(1)} s: ${st.slice(0, 2).join(' ').slice(0, 400)}`)
      throw new Error(`connectAll: ${st[0].slice(0, 300)}`)
    })
    const connectMs = performance.now() - t
    const cs = await net.stats()
    const connectCpuPct = cs == null ? undefined : sum(cs.map(h => h.cpuPct))
    const connectLoopP99Ms = cs == null ? undefined : Math.max(...cs.map(h => h.loopP99Ms))
    progress(`${n}: connected in ${(connectMs / 1000).toFixed(1)} s (${connect.dials} dials, ${connect.retries} retried)${cs != null ? `; hosts' CPU ${connectCpuPct!.toFixed(0)} % of a core, event loop delay p99 ${connectLoopP99Ms!.toFixed(0)} ms (worst host)` : ''}`)

    // the CPU the network takes while nothing is asked of it, in 5 s windows: convergence or upkeep?
    const cpuAfterConnect: number[] = []
    const closedAfterConnect: number[] = []
    const settleEnd = performance.now() + envInt('BENCH_SETTLE_S', 30, 0) * 1000
    while (performance.now() < settleEnd) {
      await sleep(Math.min(5000, Math.max(0, settleEnd - performance.now())))
      const w = await net.stats()
      if (w != null) { cpuAfterConnect.push(sum(w.map(h => h.cpuPct))); closedAfterConnect.push(sum(w.map(h => h.closed))) }
    }
    if (inprocess) progress(`${n}: after connect, 5 s windows: CPU ${cpuAfterConnect.map(x => x.toFixed(0)).join(' ')} %; connections closed ${closedAfterConnect.join(' ')}`)

    // idle cost, before the measurement
    await sleep(3000)
    const idle = await net.stats({ gc: true })
    const idleCpuPct = idle == null ? -1 : sum(idle.map(h => h.cpuPct))
    await net.stats() // the GC's CPU is not the network's
    const loopDelayP99Ms = idle == null ? NaN : Math.max(...idle.map(h => h.loopP99Ms))
    const rtSizes = idle?.flatMap(h => h.rt)
    if (idle != null) progress(`${n}: idle: ${idleCpuPct.toFixed(0)} % of a core (hosts ${idle.map(h => h.cpuPct.toFixed(0)).join(' ')}), loop p99 ${loopDelayP99Ms.toFixed(0)} ms, open files ${idle.map(h => h.fds).join(' ')}, RSS ${idle.map(h => h.rssMB.toFixed(0)).join(' ')} MB`)

    const ids = net.ids
    const connsOf = async (i: number): Promise<Set<string>> => {
      const r = await net.op(i, 'peers', {}, timeoutMs)
      if (!r.ok) throw new Error(`peers of node${i}: ${r.error ?? ''}`)
      return new Set(r.result as string[])
    }

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
      const c = await net.op(i, 'claimName', { name: `bench${j}` }, timeoutMs)
      claims.push(c.ok ? { ms: c.ms, stored: c.result.stored } : { ms: c.ms, stored: -1, error: c.error })
      names.push(c.ok ? c.result.name : '')
      const p = await net.op(i, 'dhtPut', { ns: 'bench', value: `plain record of owner ${j}` }, timeoutMs)
      puts.push(p.ok ? { ms: p.ms, stored: p.result.stored } : { ms: p.ms, stored: -1, error: p.error })
      progress(`${n}: owner ${j + 1}/${K}: claim ${Math.round(claims[j].ms)} ms (stored on ${claims[j].stored}${claims[j].error != null ? `: ${claims[j].error}` : ''}), put ${Math.round(puts[j].ms)} ms (stored on ${puts[j].stored})`)
    }
    if (claims.every(c => c.error != null)) throw new Error(`no name could be claimed: ${claims[0].error}`)

    // resolutions, each from a daemon not connected to the owner; the baseline from another such daemon
    const used = new Set<number>()
    let disconnected = 0
    let closedDuring = 0
    const samples: Sample[] = []
    const R = envInt('BENCH_RESOLVERS', 5)
    const edges = net.edges({ degree })
    const neighbours = (i: number): number[] => edges.filter(([a, b]) => a === i || b === i).map(([a, b]) => a === i ? b : a)
    const timed = async (kind: Sample['kind'], who: number, op: OpName, a: Record<string, unknown>): Promise<Sample> => {
      const conns0 = await connsOf(who).then(c => c.size, () => -1)
      const r = await net.op(who, op, a, timeoutMs)
      const s: Sample = { kind, ok: r.ok, ms: r.ms, error: r.error, query: r.query, conns: conns0 }
      if (!s.ok) s.connsAfter = await connsOf(who).then(c => c.size, () => -1)
      samples.push(s)
      if (process.env.BENCH_VERBOSE === '1' && kind !== 'ping') {
        const x = s.query
        progress(`  ${kind} by node${who} (${s.conns} connections${s.connsAfter != null ? `, ${s.connsAfter} after` : ''}): ${s.ok ? 'ok' : 'FAILED'} in ${Math.round(s.ms)} ms${x != null ? `; asked ${x.asked}, errors ${x.errors} ${JSON.stringify(x.errorKinds)}, 1st record ${x.firstRecordMs != null ? Math.round(x.firstRecordMs) : '–'} ms at hop ${x.firstRecordHop ?? '–'}, query end ${Math.round(x.endMs ?? -1)} ms` : ''}${s.error != null ? `: ${s.error}` : ''}`)
      }
      return s
    }
    // resolutions stop in time for the step to report within its bound (the parent kills it at BENCH_STEP_S)
    const stepDeadline = stepStart + envInt('BENCH_STEP_S', 900) * 1000 * 0.85
    let stopped: string | undefined
    try {
      for (const [j, owner] of owners.entries()) {
        if (names[j] === '') continue
        for (let r = 0; r < R; r++) {
          if (Date.now() > stepDeadline) throw new Error('resolutions: step time limit reached')
          const chosen: number[] = []
          for (let tries = 0; chosen.length < 2 && tries < 200; tries++) {
            const i = Math.floor(random() * n)
            if (i === owner || chosen.includes(i) || (tries < 100 && used.has(i))) continue
            if ((await connsOf(i)).has(ids[owner])) {
              // small networks: every daemon is connected to every other; close that connection first
              if (tries < 150) continue
              await net.op(i, 'disconnect', { peer: ids[owner] }, timeoutMs)
              disconnected++
            }
            chosen.push(i)
          }
          if (chosen.length < 2) { progress(`${n}: no two daemons left that are not connected to owner ${owner}`); break }
          for (const i of chosen) used.add(i)
          const [a, b] = (samples.length >> 1) % 2 === 0 ? chosen : [chosen[1], chosen[0]]
          const order: Array<() => Promise<Sample>> = [
            async () => await timed('resolve', a, 'resolve', { name: names[j], expect: ids[owner] }),
            async () => await timed('dhtget', b, 'dhtGet', { peer: ids[owner], ns: 'bench' })
          ]
          if (r % 2 === 1) order.reverse()
          for (const f of order) await f()
          const nb = neighbours(a)
          if (nb.length > 0) await timed('ping', a, 'ping', { peer: ids[pick(nb)] })
        }
        const last = samples.filter(s => s.kind === 'resolve').slice(-R)
        const st = await net.stats()
        const closed = st == null ? 0 : sum(st.map(h => h.closed))
        closedDuring += closed
        progress(`${n}: name ${j + 1}/${K}: resolve ${last.map(s => s.ok ? Math.round(s.ms) : 'FAIL').join(' ')} ms${st != null ? `; connections closed meanwhile: ${closed}, open files ${st.map(h => h.fds).join(' ')}` : ''}`)
      }
    } catch (err: any) {
      stopped = String(err?.message ?? err)
      progress(`${n}: resolutions stopped: ${stopped}`)
    }
    const measureMs = performance.now() - measure0

    const end = await net.stats({ gc: true })
    const conns = end != null ? end.flatMap(h => h.conns) : await Promise.all(ids.map(async (_, i) => (await connsOf(i).catch(() => new Set())).size))
    const rssMB = end != null ? sum(end.map(h => h.rssMB)) : net.processRssMB!()
    stopMs = await net.stop()
    const result: StepResult = {
      n,
      mode,
      hosts,
      startMs,
      connectMs,
      retries: connect.retries,
      rt: rtSizes == null ? undefined : { mean: sum(rtSizes) / n, min: Math.min(...rtSizes), max: Math.max(...rtSizes) },
      conns: { mean: sum(conns) / n, min: Math.min(...conns), max: Math.max(...conns) },
      claims,
      puts,
      connectCpuPct,
      connectLoopP99Ms,
      cpuAfterConnect,
      closedAfterConnect,
      closedDuring,
      samples,
      heapMB: end != null ? sum(end.map(h => h.heapMB)) : undefined,
      rssMB,
      fds: end != null ? sum(end.map(h => h.fds)) : undefined,
      fdLimit: end != null ? Math.min(...end.map(h => h.fdLimit)) : undefined,
      idleCpuPct,
      loopDelayP99Ms,
      measureMs,
      stopMs,
      load: loadavg(),
      disconnected,
      stopped
    }
    console.log(JSON.stringify({ result }))
  } finally {
    if (Number.isNaN(stopMs)) await net.stop().catch(() => {})
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

export const HEADER = '| N | mode (hosts) | resolved (disconnected first) | p50 (ms) | p99 (ms) | max (ms) | dht.get baseline p50 / p99 (ms) | resolve ÷ dht.get (p50) | ping p50 (ms) | hop of 1st answer, mean (max) | peers asked, mean | 1st answer / query end p50 (ms) | RT size mean | RSS / daemon (MB) | heap / daemon (MB) | fds / daemon | idle CPU (%) | start / connect (s) |'

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
  return `| ${r.n} | ${r.mode}${r.hosts > 0 ? ` (${r.hosts})` : ''} | ${ok.length}/${res.length} (${r.disconnected}) | ${f0(q(ok, 0.5))} | ${f0(q(ok, 0.99))} | ${ok.length > 0 ? f0(Math.max(...ok)) : '–'} | ${f0(q(base, 0.5))} / ${f0(q(base, 0.99))} (${base.length}/${of('dhtget').length}) | ${(q(ok, 0.5) / q(base, 0.5)).toFixed(2)} | ${f0(q(pings, 0.5))} | ${hops.length > 0 ? `${f1(mean(hops))} (${Math.max(...hops)})` : '–'} | ${qs.length > 0 ? f1(mean(rq.map(x => x.asked + x.errors))) : '–'} | ${firsts.length > 0 ? `${f0(q(firsts, 0.5))} / ${f0(q(ends, 0.5))}` : '–'} | ${r.rt != null ? `${f1(r.rt.mean)} (${r.rt.min}–${r.rt.max})` : '–'} | ${f1(r.rssMB / r.n)} | ${r.heapMB != null ? f1(r.heapMB / r.n) : '–'} | ${r.fds != null ? f1(r.fds / r.n) : '–'} | ${r.idleCpuPct >= 0 ? f0(r.idleCpuPct) : '–'} | ${f1(r.startMs / 1000)} / ${f1(r.connectMs / 1000)} |`
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
      console.log(rows[rows.length - 1]) // at once: a later step that is cut short must not lose this one
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
  console.log('\n' + HEADER + '\n|' + '---|'.repeat(18) + '\n' + rows.join('\n'))
  if (failure != null) console.log(`\nstopped: ${failure}`)
}

if (STEP != null) {
  step(Number(STEP), MODE).then(() => {
    setTimeout(() => { console.error(`still alive 20 s after stop: ${process.getActiveResourcesInfo().join(', ')}`); process.exit(3) }, 20_000).unref()
  }, (err) => { console.error(err?.stack ?? err); process.exit(1) })
} else {
  await main()
}
