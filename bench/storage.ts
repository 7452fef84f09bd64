/**
 * npm run bench:storage — storage (docs/spec/storage.md) on loopback with real daemon processes:
 *
 * 1. get: `cat` of a BENCH_MIB file (64 MiB; BENCH_MIB=256 for the issue's figure) by a daemon that does
 *    not hold it, from 1 holder and from 3 holders, against a raw js-libp2p stream (bench/libp2p-peer.ts,
 *    the same bytes one way) and a stock Helia node's Bitswap (bench/helia-peer.ts, the same file, the same
 *    CID) in the same run, BENCH_RUNS interleaved runs, medians; time to first byte of each; then disk and
 *    memory of a holder against what it holds. Each run reads with another daemon: a daemon reading the
 *    same content a second time, right after its cached copy was swept, often stalls in @helia/bitswap
 *    (storage.md §10; the daemon asks again after 5 s), which is a bug to fix, not what this measures;
 * 2. repair: a holder of content put with 2 replicas killed (SIGKILL) with the owner off: time until a
 *    third computer confirmed holding it (storageLostAfterMs = BENCH_LOST_MS, 5000);
 * 3. availability: BENCH_AVAIL_DAEMONS daemons (20), BENCH_ITEMS items (100) of 64 KiB put with 3
 *    replicas, then BENCH_KILL_PERCENT % of the daemons (30; the owner among them) killed: how many items a
 *    survivor still gets (each within 20 s).
 *
 * BENCH_PARTS (get,repair,avail) picks parts; BENCH_DEADLINE_S (1800) bounds the whole run: past it,
 * everything started is stopped and the run fails.
 */
import { randomFillSync } from 'node:crypto'
import { cpus, loadavg, tmpdir } from 'node:os'
import { mkdtemp, open, readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { startTestnet, until, mulberry32, type Testnet, type TestDaemon } from '@p2pos/testnet'
import { Helper, envInt, killAllHelpers, median } from './common.ts'

const MIB = envInt('BENCH_MIB', 64)
const RUNS = envInt('BENCH_RUNS', 3)
const LOST_MS = envInt('BENCH_LOST_MS', 5000, 1000)
const AVAIL_DAEMONS = envInt('BENCH_AVAIL_DAEMONS', 20, 4)
const ITEMS = envInt('BENCH_ITEMS', 100)
const KILL_PERCENT = envInt('BENCH_KILL_PERCENT', 30, 0)
const DEADLINE_S = envInt('BENCH_DEADLINE_S', 1800)
const PARTS = new Set((process.env.BENCH_PARTS ?? 'get,repair,avail').split(',').map(x => x.trim()))
const HERE = new URL('.', import.meta.url).pathname

const nets: Testnet[] = []
const f = (n: number, d = 1): string => n.toFixed(d)
const log = (msg: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`) }

async function randomFile (path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w')
  const buf = new Uint8Array(1 << 20)
  try {
    for (let done = 0; done < bytes; done += buf.length) {
      randomFillSync(buf)
      await fh.write(buf, 0, Math.min(buf.length, bytes - done))
    }
  } finally {
    await fh.close()
  }
}

/** A daemon's `cat` of cid, counted as it arrives: seconds and time to the first byte. */
async function cat (d: TestDaemon, cid: string, expect: number): Promise<{ seconds: number, ttfbMs: number }> {
  const t0 = performance.now()
  const it = (await d.client.cat(cid, { timeoutMs: 120_000 }))[Symbol.asyncIterator]()
  let next = await it.next()
  const ttfbMs = performance.now() - t0
  let bytes = 0
  while (next.done !== true) {
    bytes += next.value.byteLength
    next = await it.next()
  }
  if (bytes !== expect) throw new Error(`cat of ${cid} gave ${bytes} bytes, not ${expect}`)
  return { seconds: (performance.now() - t0) / 1000, ttfbMs }
}

async function duBytes (dir: string): Promise<number> {
  let n = 0
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    n += e.isDirectory() ? await duBytes(p) : (await stat(p)).size
  }
  return n
}

async function rssMiB (pid: number | undefined): Promise<number> {
  if (pid == null) return NaN
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return m == null ? NaN : Number(m[1]) / 1024
}

async function partGet (dir: string): Promise<void> {
  const bytes = MIB * 1024 * 1024
  log(`get: starting ${3 + RUNS} daemons, writing two files of ${MIB} MiB`)
  const net = await startTestnet(3 + RUNS)
  nets.push(net)
  const [owner, h1, h2, ...readers] = net.nodes
  await net.connectAll()
  for (const h of [h1, h2]) await h.client.storageOffer(4 * bytes)
  const one = join(dir, 'one-holder.bin')
  const three = join(dir, 'three-holders.bin')
  await randomFile(one, bytes)
  await randomFile(three, bytes)
  let t = performance.now()
  const y = await owner.client.put(one)
  const putSeconds = (performance.now() - t) / 1000
  t = performance.now()
  const x = await owner.client.put(three, { replicas: 2, timeoutMs: 1_800_000 }).catch((err) => {
    for (const d of [owner, h1, h2]) process.stderr.write(`--- ${d.peerId.slice(-8)}\n${d.log.split('\n').filter(l => l.includes('storage')).slice(-8).join('\n')}\n`)
    throw err
  })
  const replicateSeconds = (performance.now() - t) / 1000
  log(`put ${MIB} MiB: ${f(putSeconds, 2)} s; with 2 replicas: ${f(replicateSeconds, 2)} s`)

  const libServer = new Helper('libp2p-server', join(HERE, 'libp2p-peer.ts'), ['--role=server'])
  const libClient = new Helper('libp2p-client', join(HERE, 'libp2p-peer.ts'), ['--role=client'])
  const heliaServer = new Helper('helia-server', join(HERE, 'helia-peer.ts'), ['--role=server'])
  const heliaClient = new Helper('helia-client', join(HERE, 'helia-peer.ts'), ['--role=client'])
  const libAddr = (await libServer.waitReady(60_000)).addr as string
  await libClient.waitReady(60_000)
  const heliaAddr = (await heliaServer.waitReady(60_000)).addr as string
  await heliaClient.waitReady(60_000)
  const heliaCid = (await heliaServer.request('add', { path: one }, 600_000)).cid as string
  console.log(`the Helia node's CID of the 1-holder file ${heliaCid === y.cid ? 'equals' : 'DIFFERS from'} p2pos's (${y.cid})`)

  const failures: Record<string, number> = {}
  const res: Record<string, Array<{ seconds: number, ttfbMs: number }>> = { 'p2pos, 1 holder': [], 'p2pos, 3 holders': [], 'raw js-libp2p stream': [], 'Helia Bitswap, 1 holder': [] }
  try {
    for (let r = 1; r <= RUNS; r++) {
      const reader = readers[r - 1]
      // a read that fails (the Bitswap stall of storage.md §10 past its time) is counted, not timed
      for (const [k, cid] of [['p2pos, 1 holder', y.cid], ['p2pos, 3 holders', x.cid]] as const) {
        try {
          res[k].push(await cat(reader, cid, bytes))
        } catch (err: any) {
          failures[k] = (failures[k] ?? 0) + 1
          log(`${k}: failed: ${String(err?.code ?? '')} ${String(err?.message ?? err)}`)
        }
      }
      const raw = await libClient.request('bulk', { addr: libAddr, bytes, chunk: 65_536, timeoutMs: 600_000 }, 620_000)
      res['raw js-libp2p stream'].push({ seconds: raw.seconds, ttfbMs: NaN })
      const h = await heliaClient.request('get', { addr: heliaAddr, cid: heliaCid, timeoutMs: 600_000 }, 620_000)
      if (h.bytes !== bytes) throw new Error(`Helia got ${String(h.bytes)} bytes`)
      res['Helia Bitswap, 1 holder'].push({ seconds: h.seconds, ttfbMs: h.ttfbMs })
      log(`run ${r}/${RUNS}: ${Object.entries(res).map(([k, v]) => `${k} ${v.length === 0 ? '—' : f(bytes / 1e6 / v[v.length - 1].seconds)} MB/s`).join(', ')}`)
    }
  } finally {
    await Promise.all([libServer, libClient, heliaServer, heliaClient].map(async h => await h.stop()))
  }
  const mbps = (k: string): number => res[k].length === 0 ? NaN : bytes / 1e6 / median(res[k].map(v => v.seconds))
  const ttfb = (k: string): number => res[k].length === 0 ? NaN : median(res[k].map(v => v.ttfbMs))
  const raw = mbps('raw js-libp2p stream')
  const helia = mbps('Helia Bitswap, 1 holder')
  console.log(`\n1. get of ${MIB} MiB on loopback by a daemon that does not hold it (median of ${RUNS} interleaved runs; MB/s = 10^6 bytes/s)`)
  console.log('path                      MB/s   × raw stream   × Helia   first byte, ms')
  for (const k of Object.keys(res)) {
    console.log(`${k.padEnd(24)} ${f(mbps(k)).padStart(6)}   ${f(mbps(k) / raw, 2).padStart(12)}   ${f(mbps(k) / helia, 2).padStart(7)}   ${Number.isNaN(ttfb(k)) ? '—' : f(ttfb(k), 0)}` +
      `   (${res[k].length} runs timed${failures[k] != null ? `, ${failures[k]} failed` : ''}; each: ${res[k].map(v => f(bytes / 1e6 / v.seconds)).join(', ')})`)
  }
  // a holder's disk and memory against what it holds
  const held = (await h1.client.storageStatus()).used
  const disk = await duBytes(join(h1.home, 'blocks'))
  console.log(`\na holder of ${f(held / 2 ** 20)} MiB: blockstore ${f(disk / 2 ** 20)} MiB on disk (${f(disk / held, 3)} × what it holds), RSS ${f(await rssMiB(h1.process?.pid), 0)} MiB` +
    ` (a reader: ${f(await rssMiB(readers[0].process?.pid), 0)} MiB)`)
  await net.stop()
}

async function partRepair (dir: string): Promise<void> {
  log(`repair: starting 4 daemons, storageLostAfterMs ${LOST_MS}`)
  const net = await startTestnet(4, { storageLostAfterMs: LOST_MS })
  nets.push(net)
  const [owner, ...others] = net.nodes
  await net.connectAll()
  for (const h of others) await h.client.storageOffer(64 << 20)
  const file = join(dir, 'repair.bin')
  await randomFile(file, 4 << 20)
  const put = await owner.client.put(file, { replicas: 2 })
  const [gone] = others.filter(d => put.replicas.includes(d.peerId))
  const spare = others.find(d => !put.replicas.includes(d.peerId))!
  await owner.kill('SIGTERM')
  await gone.kill('SIGKILL')
  const t0 = performance.now()
  await until('the replica count restored', async () => (await spare.client.storageStatus()).heldForOthers === 1, 120_000)
  const ms = performance.now() - t0
  console.log(`\n2. repair: 4 MiB with 2 replicas, owner off, one holder killed: a new replica confirmed after ${f(ms / 1000, 2)} s` +
    ` (lost after ${f(LOST_MS / 1000, 1)} s; detection and placement beyond that: ${f((ms - LOST_MS) / 1000, 2)} s)`)
  await net.stop()
}

async function partAvailability (dir: string): Promise<void> {
  log(`availability: starting ${AVAIL_DAEMONS} daemons`)
  const net = await startTestnet(AVAIL_DAEMONS)
  nets.push(net)
  const [owner, ...others] = net.nodes
  const stats = await net.connectAll()
  log(`connected (${stats.dials} dials, ${stats.retries} retried)`)
  for (const h of others) await h.client.storageOffer(256 << 20)
  const items: Array<{ cid: string, replicas: string[] }> = []
  const t0 = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < ITEMS) {
      const i = next++
      const file = join(dir, `item-${i}.bin`)
      await randomFile(file, 64 * 1024)
      const p = await owner.client.put(file, { replicas: 3, timeoutMs: 300_000 })
      items.push({ cid: p.cid, replicas: p.replicas })
    }
  }))
  log(`${ITEMS} items put with 3 replicas in ${f((performance.now() - t0) / 1000)} s`)
  const rand = mulberry32(20261202)
  const victims = new Set<TestDaemon>([owner])
  const kill = Math.round(AVAIL_DAEMONS * KILL_PERCENT / 100)
  while (victims.size < kill) victims.add(others[Math.floor(rand() * others.length)])
  for (const v of victims) await v.kill('SIGKILL')
  const dead = new Set([...victims].map(v => v.peerId))
  const survivors = net.nodes.filter(d => !victims.has(d))
  const noneLeft = items.filter(i => i.replicas.every(r => dead.has(r))).length
  let ok = 0
  let k = 0
  const failed: string[] = []
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (k < items.length) {
      const item = items[k++]
      const reader = survivors[Math.floor(rand() * survivors.length)]
      try {
        let n = 0
        for await (const c of await reader.client.cat(item.cid, { timeoutMs: 20_000 })) n += c.byteLength
        if (n === 64 * 1024) ok++
        else failed.push(`${item.cid}: ${n} bytes`)
      } catch (err: any) {
        failed.push(`${item.cid}: ${String(err?.code ?? err)}`)
      }
    }
  }))
  console.log(`\n3. availability: ${ITEMS} items of 64 KiB put with 3 replicas on ${AVAIL_DAEMONS} daemons; ${kill} killed (the owner among them):` +
    ` ${ok} of ${ITEMS} got by survivors (${f(ok / ITEMS * 100)} %); ${noneLeft} items had all 3 replicas on killed daemons` +
    (failed.length > 0 ? `\n   not got: ${failed.slice(0, 5).join('; ')}` : ''))
  await net.stop()
}

async function main (): Promise<void> {
  const started = Date.now()
  console.log(`p2pos storage benchmark — loopback, Node ${process.version}, ${cpus().length} cores, load ${loadavg().map(x => f(x, 2)).join(' ')}, ${new Date().toISOString()}`)
  console.log(`settings: BENCH_MIB=${MIB} BENCH_RUNS=${RUNS} BENCH_LOST_MS=${LOST_MS} BENCH_AVAIL_DAEMONS=${AVAIL_DAEMONS} BENCH_ITEMS=${ITEMS} BENCH_KILL_PERCENT=${KILL_PERCENT} BENCH_PARTS=${[...PARTS].join(',')}`)
  const dir = await mkdtemp(join(tmpdir(), 'p2pos-bench-storage-'))
  try {
    if (PARTS.has('get')) await partGet(dir)
    if (PARTS.has('repair')) await partRepair(dir)
    if (PARTS.has('avail')) await partAvailability(dir)
  } finally {
    for (const n of nets) await n.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
  console.log(`\n(${f((Date.now() - started) / 1000, 0)} s in all)`)
}

const deadline = setTimeout(() => {
  log(`time limit of ${DEADLINE_S} s reached: stopping everything`)
  killAllHelpers()
  void Promise.all(nets.map(async n => await n.stop().catch(() => {}))).finally(() => process.exit(1))
}, DEADLINE_S * 1000)
process.on('exit', killAllHelpers)
main().then(() => { clearTimeout(deadline) }, (err) => {
  clearTimeout(deadline)
  console.error(err)
  killAllHelpers()
  void Promise.all(nets.map(async n => await n.stop().catch(() => {}))).finally(() => process.exit(1))
})
