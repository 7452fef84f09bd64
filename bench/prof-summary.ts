/**
 * Summarises a V8 .cpuprofile (as written by `node --cpu-prof`, e.g. with `BENCH_PROF=<dir> npm run bench`):
 * the functions with the most self time and the most inclusive time, and self time by package.
 *
 *   node bench/prof-summary.ts <file.cpuprofile> [top=25] [filter substring of a function or url]
 *
 * PROF_FROM_US / PROF_TO_US restrict it to a window of the profile's clock (CLOCK_MONOTONIC µs), such as
 * the message phase that `BENCH_PROF=<dir> npm run bench:conference` logs.
 */
import { readFileSync } from 'node:fs'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const [file, topArg, filter] = process.argv.slice(2)
if (file == null) {
  process.stderr.write('usage: prof-summary.ts <file.cpuprofile> [top] [filter]\n')
  process.exit(2)
}
const top = Number(topArg ?? 25)
const prof: Profile = JSON.parse(readFileSync(file, 'utf8'))
const from = process.env.PROF_FROM_US != null ? Number(process.env.PROF_FROM_US) : -Infinity
const to = process.env.PROF_TO_US != null ? Number(process.env.PROF_TO_US) : Infinity

const byId = new Map<number, ProfileNode>()
const parent = new Map<number, number>()
for (const n of prof.nodes) {
  byId.set(n.id, n)
  for (const c of n.children ?? []) parent.set(c, n.id)
}

/** Where a function comes from: the npm package, node's internals, or the repo's own files. */
function origin (url: string): string {
  if (url === '') return '(native/vm)'
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0]
  const m = /\/(packages|apps)\/([^/]+)\//.exec(url)
  if (m != null) return m[1] === 'apps' ? `app ${m[2]}` : `@p2pos/${m[2]}`
  return url.split('/').slice(-2).join('/')
}

function key (f: CallFrame): string {
  const file = f.url === '' ? '' : ` ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`
  return `${f.functionName === '' ? '(anonymous)' : f.functionName}${file}`
}

const self = new Map<string, number>()
const incl = new Map<string, number>()
const byOrigin = new Map<string, number>()
let t = prof.startTime
let total = 0
let idle = 0
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0
  t += dt
  if (t < from || t > to) continue
  const node = byId.get(prof.samples[i])
  if (node == null) continue
  total += dt
  const fn = node.callFrame.functionName
  if (fn === '(idle)') { idle += dt; continue }
  const k = key(node.callFrame)
  self.set(k, (self.get(k) ?? 0) + dt)
  const o = fn === '(garbage collector)' ? '(gc)' : fn === '(program)' ? '(program)' : origin(node.callFrame.url)
  byOrigin.set(o, (byOrigin.get(o) ?? 0) + dt)
  const seen = new Set<string>()
  for (let id: number | undefined = node.id; id != null; id = parent.get(id)) {
    const kk = key(byId.get(id)!.callFrame)
    if (seen.has(kk)) continue
    seen.add(kk)
    incl.set(kk, (incl.get(kk) ?? 0) + dt)
  }
}

if (total === 0) {
  console.log(`${file}: no samples in the window (the profile runs ${prof.startTime}..${prof.endTime} µs)`)
  process.exit(1)
}
const busy = total - idle
const pct = (x: number): string => `${(100 * x / busy).toFixed(1)}%`.padStart(6)
const ms = (x: number): string => `${(x / 1000).toFixed(0)} ms`.padStart(9)
const show = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title}`)
  const rows = [...m].filter(([k]) => filter == null || k.includes(filter)).sort((a, b) => b[1] - a[1]).slice(0, top)
  for (const [k, v] of rows) console.log(`${ms(v)} ${pct(v)}  ${k}`)
}

console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled, busy ${(busy / 1e6).toFixed(2)} s (${(100 * busy / total).toFixed(0)}%); percentages are of busy time`)
show('self time by origin', byOrigin)
show('self time by function', self)
show('inclusive time by function', incl)
