/**
 * In-process daemons spread over several host processes and joined into one network over loopback — the
 * shared harness of the benchmarks that need more daemons than one process holds (bench/names.ts).
 *
 * One process runs JavaScript on one core and holds a limited number of file descriptors; an in-process
 * testnet of a few hundred daemons reaches both. `HostedTestnet.start(n, { hosts: H })` starts H child
 * processes (this file, `--host`), each running n/H daemons with @p2pos/testnet's in-process mode; the
 * daemons of different hosts reach each other over loopback exactly as those of one host do. The parent
 * sees each daemon as `{ index, host, peerId, addr }` and acts on it through `op(i, …)`: the SDK call runs
 * in daemon i's host, against that daemon's local API, as in a single process. `connectAll` dials the same
 * seeded graph as Testnet.connectAll (graphEdges), each host dialling its own daemons' edges, with the
 * same retries. `stats()` reads every host's CPU, memory, descriptors, connections and routing tables.
 *
 * The line protocol is bench/common.ts's (Helper / serveCommands): a host exits when its stdin closes,
 * so it never outlives the benchmark; `stop()` stops every daemon, then every host.
 *
 * With `nofile`, each host's limit on open files (soft and hard) is raised to that with `prlimit --pid`
 * once it runs (needs root to raise the hard limit; the benchmarks say so when they use it).
 */
import { execFileSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { startTestnet, graphEdges, pool, CONNECT_ATTEMPTS, type InProcessDaemon, type TestDaemon, type Testnet, type ConnectOptions } from '@p2pos/testnet'
import { within } from '@p2pos/testnet/wait'
import { Helper, serveCommands, args } from './common.ts'

/** A kad-dht `get` as observed: peers asked, errors, the hop and time of the first answer with the record. */
export interface Query { key: string, asked: number, errors: number, errorKinds: Record<string, number>, firstRecordMs?: number, firstRecordHop?: number, endMs?: number, values: number }

/** The outcome of one timed call on a daemon. */
export interface OpResult { ok: boolean, ms: number, error?: string, query?: Query, result?: any }

export type OpName = 'claimName' | 'dhtPut' | 'resolve' | 'dhtGet' | 'ping' | 'peers' | 'disconnect'

/** Tees the events of a daemon's kad-dht `get` into `queries` (in-process daemons only; nothing changed). */
export function observe (d: InProcessDaemon, queries: Query[]): void {
  const dht = d.daemon!.node.services.dht as any
  const orig = dht.get.bind(dht)
  dht.get = async function * (key: Uint8Array, options?: unknown) {
    const q: Query = { key: new TextDecoder().decode(key), asked: 0, errors: 0, errorKinds: {}, values: 0 }
    queries.push(q)
    if (queries.length > 50) queries.shift()
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

/** Runs one SDK call on daemon `d`, timed; `queries` (if observed) gives the kad-dht query it made. */
export async function runOp (d: TestDaemon, op: OpName, a: Record<string, any>, timeoutMs: number, queries?: Query[]): Promise<OpResult> {
  const c = d.client
  const before = queries?.length ?? 0
  const beforeLast = queries?.[before - 1]
  const t0 = performance.now()
  let out: OpResult
  try {
    let result: any
    const call = async (): Promise<any> => {
      switch (op) {
        case 'claimName': return await c.claimName(a.name, { timeoutMs })
        case 'dhtPut': return await c.dhtPut(a.ns, a.value, { timeoutMs })
        case 'resolve': {
          const res = await c.resolve(a.name, { timeoutMs })
          if (a.expect != null && res.person !== a.expect) throw new Error(`resolved to ${res.person}, not ${a.expect}`)
          return undefined
        }
        case 'dhtGet': await c.dhtGet(a.peer, a.ns, { timeoutMs }); return undefined
        case 'ping': await c.ping(a.peer, { timeoutMs }); return undefined
        case 'peers': return (await c.peers()).map(p => p.peerId)
        case 'disconnect': await c.disconnectPeer(a.peer); return undefined
      }
    }
    result = await within(timeoutMs + 5000, op, call())
    out = { ok: true, ms: performance.now() - t0, result }
  } catch (err: any) {
    out = { ok: false, ms: performance.now() - t0, error: String(err?.message ?? err).slice(0, 200) }
  }
  if (queries != null) {
    // the first query this call started (the list keeps the last 50)
    const start = beforeLast == null ? 0 : queries.indexOf(beforeLast) + 1
    if (queries.length > start) out.query = queries[start]
  }
  return out
}

/** A dial from daemon `from` to `addr`, retried as Testnet.connectAll does (CONNECT_ATTEMPTS, 1, 2, then 4 s apart). */
export async function dialWithRetries (d: TestDaemon, addr: string, onRetry: (why: string) => void, attempts = CONNECT_ATTEMPTS, maxPauseMs = 4000): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await d.client.connectPeer(addr)
      return
    } catch (err: any) {
      if (attempt >= attempts) throw err
      onRetry(String(err?.message ?? err).replace(/12D3Koo\w+/g, '…').replace(/\d+/g, 'N').slice(0, 120))
      await new Promise(resolve => setTimeout(resolve, Math.min(1000 * 2 ** (attempt - 1), maxPauseMs) + Math.random() * 500))
    }
  }
}

/** What one host reports. */
export interface HostStats {
  host: number
  daemons: number
  /** CPU of the host process since the previous stats() (% of one core), and over that time the event loop's delay */
  cpuPct: number
  loopP50Ms: number
  loopP99Ms: number
  loopMaxMs: number
  /** above the host's baseline (every module loaded, no daemon yet); after a full GC if asked */
  heapMB: number
  rssMB: number
  fds: number
  fdLimit: number
  conns: number[]
  rt: number[]
  /** connections closed (all its daemons) since the previous stats() */
  closed: number
}

export interface HostedOptions {
  hosts?: number
  config?: Record<string, unknown>
  startConcurrency?: number
  /** false: libp2p's connection monitor of every daemon keeps a connection whose ping failed (TestnetOptions.pingAbort) */
  pingAbort?: boolean
  heapMB?: number
  /** raise each host's limit on open files to this (prlimit; root) */
  nofile?: number
  /** per host, for starting its daemons */
  startTimeoutMs?: number
}

export interface HostedNode { index: number, host: number, local: number, peerId: string, addr: string }

export class HostedTestnet {
  readonly nodes: HostedNode[]
  readonly hosts: Helper[]

  private constructor (hosts: Helper[], nodes: HostedNode[]) {
    this.hosts = hosts
    this.nodes = nodes
  }

  /** Starts `n` daemons over `options.hosts` host processes (as evenly as possible: the first hosts take one more). */
  static async start (n: number, options: HostedOptions = {}): Promise<HostedTestnet> {
    const h = Math.max(1, Math.min(options.hosts ?? 1, n))
    const helpers: Helper[] = []
    const counts = Array.from({ length: h }, (_, k) => Math.floor(n / h) + (k < n % h ? 1 : 0))
    for (let k = 0; k < h; k++) {
      const helper = new Helper(`host${k}`, import.meta.filename, [`--host=${k}`, `--count=${counts[k]}`], {
        execArgv: ['--expose-gc', `--max-old-space-size=${options.heapMB ?? 16384}`],
        env: {
          HOST_CONFIG: JSON.stringify(options.config ?? {}),
          HOST_START_CONCURRENCY: String(options.startConcurrency ?? 8),
          HOST_PING_ABORT: options.pingAbort === false ? '0' : '1'
        }
      })
      helpers.push(helper)
      if (options.nofile != null && helper.child.pid != null) {
        execFileSync('prlimit', ['--pid', String(helper.child.pid), `--nofile=${options.nofile}:${options.nofile}`], { stdio: 'ignore' })
      }
    }
    try {
      const readies = await Promise.all(helpers.map(async x => await x.waitReady(options.startTimeoutMs ?? 600_000)))
      const nodes: HostedNode[] = []
      for (const [k, r] of readies.entries()) {
        for (const [local, d] of (r.daemons as Array<{ peerId: string, addr: string }>).entries()) nodes.push({ index: nodes.length, host: k, local, ...d })
      }
      return new HostedTestnet(helpers, nodes)
    } catch (err) {
      await Promise.allSettled(helpers.map(async x => await x.stop()))
      throw err
    }
  }

  edges (options: ConnectOptions = {}): Array<[number, number]> {
    return graphEdges(this.nodes.length, { degree: 3, ...options })
  }

  /** Connects the daemons as Testnet.connectAll({ degree }) does; every host dials its own daemons' edges at once, `concurrency` each. */
  /** `attempts` and `maxPauseMs` (default CONNECT_ATTEMPTS and 4 s, as Testnet.connectAll): a refused dial is retried, 1, 2, 4 … s apart up to maxPauseMs. */
  async connectAll (options: ConnectOptions & { attempts?: number, maxPauseMs?: number } = {}, timeoutMs = 1_800_000): Promise<{ dials: number, retries: number, errors: Record<string, number> }> {
    const edges = this.edges(options)
    const byHost = this.hosts.map(() => [] as Array<[number, string, string]>)
    for (const [a, b] of edges) byHost[this.nodes[a].host].push([this.nodes[a].local, this.nodes[b].addr, `node${a} to node${b}`])
    const outs = await Promise.all(this.hosts.map(async (x, k) => await x.request('connect', { edges: byHost[k], concurrency: options.concurrency ?? 16, attempts: options.attempts, maxPauseMs: options.maxPauseMs }, timeoutMs)))
    const errors: Record<string, number> = {}
    for (const o of outs) for (const [k, v] of Object.entries(o.errors as Record<string, number>)) errors[k] = (errors[k] ?? 0) + v
    return { dials: edges.length, retries: outs.reduce((s, o) => s + (o.retries as number), 0), errors }
  }

  /** One SDK call on daemon `i`, timed, in its host; in-process kad-dht `get`s are observed (OpResult.query). */
  async op (i: number, op: OpName, a: Record<string, unknown>, timeoutMs: number): Promise<OpResult> {
    const node = this.nodes[i]
    try {
      return await this.hosts[node.host].request('op', { i: node.local, op, args: a, timeoutMs }, timeoutMs + 30_000)
    } catch (err: any) {
      return { ok: false, ms: -1, error: `host: ${String(err?.message ?? err).slice(0, 200)}` }
    }
  }

  /** Every host's figures since the previous call; with `gc`, memory after a full GC (which costs CPU, counted in the next call). */
  async stats (options: { gc?: boolean } = {}, timeoutMs = 120_000): Promise<HostStats[]> {
    return await Promise.all(this.hosts.map(async x => await x.request<HostStats>('stats', { gc: options.gc === true }, timeoutMs)))
  }

  /** Stops every daemon (each host its own, at once), then the hosts; resolves with the slowest host's stop time. */
  async stop (): Promise<number> {
    const ms = await Promise.all(this.hosts.map(async x => await x.request<number>('stop', {}, 120_000).catch(() => NaN)))
    await Promise.allSettled(this.hosts.map(async x => await x.stop()))
    return Math.max(...ms)
  }
}

/* ---------- a host process ---------- */

async function host (k: number, count: number): Promise<void> {
  await import('@p2pos/daemon') // loaded before the baseline: module code is not a per-daemon cost
  const gc = (globalThis as any).gc as () => void
  gc()
  const base = process.memoryUsage()
  const baseFds = readdirSync('/proc/self/fd').length
  const pingAbort = process.env.HOST_PING_ABORT !== '0'
  const net: Testnet = await startTestnet(count, JSON.parse(process.env.HOST_CONFIG ?? '{}'), {
    mode: 'inprocess',
    concurrency: Number(process.env.HOST_START_CONCURRENCY ?? 8),
    pingAbort
  })
  const nodes = net.nodes as InProcessDaemon[]
  const queries = nodes.map(() => [] as Query[])
  let closed = 0
  for (const [i, d] of nodes.entries()) {
    observe(d, queries[i])
    d.daemon!.node.addEventListener('connection:close', () => { closed++ })
  }
  let cpu0 = process.cpuUsage()
  let t0 = performance.now()
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  // one stop, however it is asked for (the 'stop' command, or stdin closing while that is under way):
  // both wait for it, so the host never exits before its daemons' homes are removed
  let stopping: Promise<number> | undefined
  const stop = async (): Promise<number> => await (stopping ??= (async () => {
    const t = performance.now()
    await net.stop()
    return performance.now() - t
  })())
  serveCommands({ host: k, daemons: nodes.map(d => ({ peerId: d.peerId, addr: d.addr })) }, async (cmd) => {
    switch (cmd.cmd) {
      case 'connect': {
        const errors: Record<string, number> = {}
        let retries = 0
        await pool(cmd.edges as Array<[number, string, string]>, cmd.concurrency as number, async ([local, addr, what]) => {
          try {
            await dialWithRetries(nodes[local], addr, (why) => { retries++; errors[why] = (errors[why] ?? 0) + 1 }, cmd.attempts ?? CONNECT_ATTEMPTS, cmd.maxPauseMs ?? 4000)
          } catch (err: any) {
            throw new Error(`connecting ${what}: ${err?.message ?? String(err)}`)
          }
        })
        return { retries, errors }
      }
      case 'op':
        return await runOp(nodes[cmd.i], cmd.op, cmd.args ?? {}, cmd.timeoutMs, queries[cmd.i])
      case 'stats': {
        const cpu = process.cpuUsage(cpu0)
        const wall = performance.now() - t0
        if (cmd.gc === true) gc()
        const mem = process.memoryUsage()
        const fdLimit = Number(execFileSync('prlimit', ['--pid', String(process.pid), '--nofile', '--output=SOFT', '--noheadings'], { encoding: 'utf8' }).trim())
        const s: HostStats = {
          host: k,
          daemons: count,
          cpuPct: (cpu.user + cpu.system) / 1000 / wall * 100,
          loopP50Ms: loop.percentile(50) / 1e6,
          loopP99Ms: loop.percentile(99) / 1e6,
          loopMaxMs: loop.max / 1e6,
          heapMB: (mem.heapUsed - base.heapUsed) / 2 ** 20,
          rssMB: (mem.rss - base.rss) / 2 ** 20,
          fds: readdirSync('/proc/self/fd').length - baseFds,
          fdLimit,
          conns: nodes.map(d => d.daemon?.node.getConnections().length ?? 0),
          rt: nodes.map(d => (d.daemon?.node.services.dht as any)?.routingTable?.size ?? 0),
          closed
        }
        closed = 0
        loop.reset()
        cpu0 = process.cpuUsage()
        t0 = performance.now()
        return s
      }
      case 'stop':
        return await stop()
      default:
        throw new Error(`unknown command ${String(cmd.cmd)}`)
    }
  }, async () => { await stop() })
}

if (import.meta.main) {
  const a = args()
  if (a.host == null) {
    process.stderr.write('bench/hosts.ts is a library of the benchmarks (bench/names.ts); run as a host by them only\n')
    process.exit(2)
  }
  host(Number(a.host), Number(a.count)).catch((err) => { process.stderr.write(`host ${a.host}: ${err?.stack ?? err}\n`); process.exit(1) })
}
