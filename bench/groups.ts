/**
 * `npm run bench:groups` — peer groups at scale on the in-process testnet (docs/spec/groups.md §11).
 * For each N of BENCH_GROUP_SIZES, in one process:
 *
 *   1. starts N daemons in-process (startTestnet(N, {}, { mode: 'inprocess' })); each connects to the first
 *      (a refused dial is retried, CONNECT_ATTEMPTS in all, as connectAll does)
 *   2. the first creates a group and invites the other N-1, who join (BENCH_JOIN_CONCURRENCY at once),
 *      until every member sees N members and the same key epoch
 *   3. a membership change: the admin removes one member (the call includes the key rotation); measured:
 *      the call's time, the rekey entry's size, and the time until every remaining member has both the
 *      removal and the new key
 *   4. one more rotation alone: time to seal the new key to every device (the remover's own work)
 *
 * Every wait is bounded (BENCH_STEP_S). Figures are printed as measured, one JSON line per N at the end.
 * Environment (defaults): BENCH_GROUP_SIZES=50,100,200 BENCH_JOIN_CONCURRENCY=8 BENCH_STEP_S=900
 * BENCH_PING_ABORT=0 (default: libp2p's connection monitor keeps a connection whose ping failed — the
 * testnet's pingAbort: false, since every in-process daemon pings at the same moment; 1: as real daemons)
 */
import { performance } from 'node:perf_hooks'
import { startTestnet, pool, CONNECT_ATTEMPTS, type InProcessDaemon } from '@p2pos/testnet'
import { newGroupKey, sealKey } from '../packages/daemon/src/groups/keys.ts'
import { envInt } from './common.ts'

const sizes = (process.env.BENCH_GROUP_SIZES ?? '50,100,200').split(',').map(Number)
const STEP_MS = envInt('BENCH_STEP_S', 900) * 1000
const ctx = { principal: { admin: true, apps: new Set<string>(), token: '' } } as any
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const progress = (msg: string): void => { process.stderr.write(`[bench:groups] ${msg}\n`) }

type Routes = Record<string, (p: any, c: any) => Promise<any>>
const routes = (d: InProcessDaemon): Routes => d.daemon!.groups.routes as unknown as Routes

async function waitAll (what: string, nodes: InProcessDaemon[], ok: (d: InProcessDaemon) => Promise<boolean>): Promise<number> {
  const t = performance.now()
  const deadline = Date.now() + STEP_MS
  const pending = new Set(nodes)
  while (pending.size > 0) {
    if (Date.now() > deadline) throw new Error(`${what}: ${pending.size} of ${nodes.length} not there after ${STEP_MS / 1000} s`)
    for (const d of [...pending]) if (await ok(d).catch(() => false)) pending.delete(d)
    if (pending.size > 0) await sleep(20)
  }
  return performance.now() - t
}

async function one (n: number): Promise<Record<string, unknown>> {
  let t = performance.now()
  const net = await startTestnet(n, {}, { mode: 'inprocess', concurrency: 8, pingAbort: process.env.BENCH_PING_ABORT === '1' })
  const nodes = net.nodes as InProcessDaemon[]
  try {
    const [admin, ...rest] = nodes
    // a star on the admin; a dial refused by a busy daemon ("Remote closed connection during opening")
    // is retried as connectAll() does: CONNECT_ATTEMPTS in all, 1, 2, then 4 s apart
    let connectRetries = 0
    await pool(rest, 16, async (d) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await d.client.connectPeer(admin.addr)
          return
        } catch (err: any) {
          if (attempt >= CONNECT_ATTEMPTS) throw new Error(`connecting ${d.peerId} to the admin: ${err?.message ?? String(err)}`)
          connectRetries++
          await sleep(Math.min(1000 * 2 ** (attempt - 1), 4000) + Math.random() * 500)
        }
      }
    })
    progress(`${n}: started and connected in ${((performance.now() - t) / 1000).toFixed(1)} s (${connectRetries} dials retried)`)
    t = performance.now()
    const { id } = await routes(admin)['groups.create']({ name: 'bench' }, ctx)
    let retries = 0
    let joined = 0
    const joinProgress = setInterval(() => { progress(`${n}: ${joined} of ${n - 1} joined after ${((performance.now() - t) / 1000).toFixed(0)} s (${retries} retried)`) }, 30_000)
    await pool(rest, envInt('BENCH_JOIN_CONCURRENCY', 8), async (d) => {
      // under load an invitation or a join may time out: up to 3 tries, counted
      for (let i = 0; ; i++) {
        try {
          const { code } = await routes(admin)['groups.invite']({ group: id, person: d.peerId }, ctx)
          await routes(d)['groups.join']({ code, timeoutMs: 120_000 }, ctx)
          joined++
          return
        } catch (err: any) {
          if (i >= 2 || err?.code === 'E_CONFLICT') { if (err?.code === 'E_CONFLICT') { joined++; return } throw err }
          retries++
        }
      }
    }).finally(() => { clearInterval(joinProgress) })
    const epochOf = async (d: InProcessDaemon): Promise<number> => (await routes(d)['groups.list']({}, ctx)).find((g: any) => g.id === id)?.epoch ?? -1
    await waitAll('everyone sees every member', nodes, async d => d.daemon!.groups.membersOf(id).length === n)
    await sleep(8000) // the rekeys of the joins settle
    await waitAll('one key epoch', nodes, async d => await epochOf(d) === await epochOf(admin))
    const buildMs = performance.now() - t
    progress(`${n}: group of ${n} built in ${(buildMs / 1000).toFixed(1)} s (epoch ${await epochOf(admin)})`)

    // a membership change with its key rotation
    const victim = rest[rest.length - 1]
    const remaining = nodes.filter(d => d !== victim)
    const epoch0 = await epochOf(admin)
    t = performance.now()
    await routes(admin)['groups.remove']({ group: id, person: victim.peerId }, ctx)
    const removeCallMs = performance.now() - t
    const seenMs = await waitAll('every member saw the removal', remaining, async d => d.daemon!.groups.membersOf(id).length === n - 1)
    const changeMs = performance.now() - t
    await waitAll('every member has the new key', remaining, async d => await epochOf(d) === epoch0 + 1)
    const keyMs = performance.now() - t
    const log = (admin.daemon!.groups as any).groups.get(id)
    const rekey = log.entries.get(log.state.key)
    const rekeyBytes = Buffer.byteLength(JSON.stringify(rekey))
    const devices = new Map<string, string>([...log.state.members.values()].flatMap((m: any) => [...m.devices]))
    t = performance.now()
    const sealed = sealKey(newGroupKey(), id, devices)
    const sealMs = performance.now() - t
    const result = {
      members: n,
      connectRetries,
      joinRetries: retries,
      buildS: +(buildMs / 1000).toFixed(1),
      removeCallMs: Math.round(removeCallMs),
      removalAtAllMs: Math.round(changeMs),
      removalAtAllAfterCallMs: Math.round(seenMs),
      newKeyAtAllMs: Math.round(keyMs),
      rekeyEntryBytes: rekeyBytes,
      sealOnlyMs: +sealMs.toFixed(1),
      sealedBytesPerDevice: Math.round(Buffer.byteLength(JSON.stringify(sealed.keys)) / devices.size),
      logEntries: log.entries.size
    }
    progress(`${n}: ${JSON.stringify(result)}`)
    return result
  } finally {
    t = performance.now()
    await net.stop()
    progress(`${n}: stopped in ${((performance.now() - t) / 1000).toFixed(1)} s`)
  }
}

const results = []
for (const n of sizes) results.push(await one(n))
for (const r of results) console.log(JSON.stringify(r))
process.exit(0)
