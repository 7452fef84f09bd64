/**
 * Fuzzed surfaces of a daemon (issue: hardening): what fast-check throws at the local API, the channel's
 * frame decoder and every p2pos peer protocol, and what each answer must look like. Shared by
 * test/fuzz.test.ts (a seeded sample in `npm test`) and bench/fuzz.ts (100 000 inputs per surface).
 *
 * The one rule everywhere: a bad input gets a clear error with a stable code (or the stream is closed),
 * never a crash, an E_INTERNAL, a hang, or an unhandled rejection; and the daemon keeps serving.
 */
import fc from 'fast-check'
import { request } from 'node:http'
import { connect } from 'node:net'
import type { Libp2p } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'
import {
  CHANNEL_PROTOCOL, COMPUTE_PROTOCOL, ERROR_CODES, FrameDecoder, FrameType, GROUP_PROTOCOL, INVITE_PROTOCOL, MAX_FRAME_PAYLOAD, METHODS, P2posError,
  PEOPLE_PROTOCOL, REACH_PROTOCOL, SERVICES_PROTOCOL, STORAGE_PROTOCOL, encodeFrame, isErrorCode
} from '@p2pos/api'

export interface Target {
  /** The API's base URL (http://127.0.0.1:PORT). */
  url: string
  token: string
  /** A bare libp2p node that speaks to the daemon, and the daemon's address. */
  peer: Libp2p
  addr: Multiaddr
}

/** What a surface found: inputs run, answers by kind, and failures (each with its input). */
export interface Findings {
  runs: number
  answers: Record<string, number>
  failures: Array<{ input: unknown, why: string }>
}

const newFindings = (): Findings => ({ runs: 0, answers: {}, failures: [] })
const count = (f: Findings, k: string): void => { f.answers[k] = (f.answers[k] ?? 0) + 1 }

/**
 * Methods left out of the API fuzzing: they take a path on this computer's disk (a fuzzed "/" would
 * import or overwrite real files); everything else is called with whatever fast-check makes.
 */
export const PATH_METHODS = new Set(['apps.install', 'storage.put', 'storage.get', 'job.run'])
const METHOD_NAMES = Object.keys(METHODS).filter(m => !PATH_METHODS.has(m) && !('upgrade' in (METHODS as any)[m]))

// ---- the local API ----

export interface ApiInput { method: string, contentType: string | null, body: string }

/** A call: a real method (mostly) or a made-up one; a body that is JSON of any shape, or not JSON. */
export const apiInput: fc.Arbitrary<ApiInput> = fc.record({
  method: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...METHOD_NAMES) }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) }),
  contentType: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', null),
  body: fc.oneof(
    { weight: 6, arbitrary: fc.dictionary(fc.constantFrom('peer', 'app', 'name', 'topic', 'data', 'addr', 'timeoutMs', 'cid', 'id', 'label', 'code', 'group', 'person', 'bytes', 'value', 'x'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }).map(o => JSON.stringify(o)) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map(v => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.constant('') }
  )
})

export async function callApi (t: Target, input: ApiInput, timeoutMs = 5000): Promise<{ status: number, body: string }> {
  const u = new URL(t.url)
  const path = `/v0/call/${encodeURIComponent(input.method).replace(/%2E/gi, '.')}`
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${t.token}` }
    if (input.contentType != null) headers['content-type'] = input.contentType
    const req = request({ hostname: u.hostname, port: u.port, method: 'POST', path, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`no answer within ${timeoutMs} ms`)) })
    req.on('error', reject)
    req.end(input.body)
  })
}

/** Checks one API answer: 200 with a result, or the status of a known error code with its JSON body. */
export function judgeApi (status: number, body: string, method?: string): { kind: string, why?: string } {
  // a method whose result is bytes (storage.cat, metrics.prometheus) answers 200 with them, not JSON
  if (status === 200 && method != null && (METHODS as any)[method]?.bytes === true) return { kind: 'ok' }
  let json: any
  try { json = JSON.parse(body) } catch { return { kind: `http ${status}`, why: `answer is not JSON: ${body.slice(0, 120)}` } }
  if (status === 200) return 'result' in json || Object.keys(json).length === 0 ? { kind: 'ok' } : { kind: 'ok', why: 'a 200 without a result' }
  const code = json?.error?.code
  if (!isErrorCode(code)) return { kind: `http ${status}`, why: `no known error code in ${body.slice(0, 120)}` }
  if (code === 'E_INTERNAL') return { kind: code, why: `E_INTERNAL: ${String(json.error.message)}` }
  if (ERROR_CODES[code] !== status) return { kind: code, why: `${code} came with HTTP ${status}, not ${ERROR_CODES[code]}` }
  if (typeof json.error.message !== 'string' || json.error.message === '') return { kind: code, why: 'an error without a message' }
  return { kind: code }
}

/** Calls the API with `input` and judges the answer; a call with no answer within `timeoutMs` is a finding. */
export async function verdictOf (t: Target, input: ApiInput, timeoutMs?: number): Promise<{ kind: string, why?: string }> {
  try {
    const { status, body } = await callApi(t, input, timeoutMs)
    return judgeApi(status, body, input.method)
  } catch (err: any) {
    return { kind: 'no answer', why: String(err?.message ?? err) }
  }
}

export async function fuzzApi (t: Target, numRuns: number, seed: number, findings = newFindings()): Promise<Findings> {
  await fc.assert(fc.asyncProperty(apiInput, async (input) => {
    findings.runs++
    const verdict = await verdictOf(t, input)
    count(findings, verdict.kind)
    if (verdict.why != null) findings.failures.push({ input, why: verdict.why })
  }), { numRuns, seed })
  return findings
}

/**
 * Parameters shaped by the method's own schema (packages/api/src/methods.ts), so that calls get past
 * the checks into the handlers: strings from the schema's pattern (`fc.stringMatching`) or of its
 * length, integers in range, arrays, unions, literals. What the handlers do with valid but meaningless
 * values (a peer nobody knows, a group that does not exist) is what this reaches.
 */
export function fromSchema (schema: any, depth = 0): fc.Arbitrary<unknown> {
  if (schema == null || depth > 4) return fc.jsonValue({ maxDepth: 1 })
  if (schema.const !== undefined) return fc.constant(schema.const)
  if (Array.isArray(schema.anyOf)) return fc.oneof(...schema.anyOf.map((s: any) => fromSchema(s, depth + 1)))
  switch (schema.type) {
    case 'object': {
      const props: Record<string, fc.Arbitrary<unknown>> = {}
      // a fuzzed call may wait for the network, but briefly: the campaign is bounded in time
      for (const [k, v] of Object.entries(schema.properties ?? {})) props[k] = k === 'timeoutMs' ? fc.integer({ min: 1, max: 1500 }) : fromSchema(v, depth + 1)
      return fc.record(props, { requiredKeys: [...(schema.required ?? []), ...('timeoutMs' in props ? ['timeoutMs'] : [])] })
    }
    case 'string':
      if (typeof schema.pattern === 'string') return fc.stringMatching(new RegExp(schema.pattern)).filter(x => x.length <= (schema.maxLength ?? 4096))
      return fc.string({ maxLength: Math.min(schema.maxLength ?? 64, 256) })
    case 'integer': return fc.integer({ min: schema.minimum ?? -1e6, max: Math.min(schema.maximum ?? 1e6, Number.MAX_SAFE_INTEGER) })
    case 'number': return fc.double({ noNaN: true, min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6 })
    case 'boolean': return fc.boolean()
    case 'array': return fc.array(fromSchema(schema.items, depth + 1), { maxLength: Math.min(schema.maxItems ?? 4, 4) })
    case 'null': return fc.constant(null)
    default: return fc.jsonValue({ maxDepth: 1 })
  }
}

/**
 * Methods left out of the schema-shaped calls as well: `peers.connect` (a valid multiaddr may name a
 * host off this computer, and the fuzzing sends traffic only to loopback).
 */
export const NETWORK_METHODS = new Set(['peers.connect'])
const VALID_METHODS = METHOD_NAMES.filter(m => !NETWORK_METHODS.has(m))

export const validApiInput: fc.Arbitrary<ApiInput> = fc.constantFrom(...VALID_METHODS).chain(method =>
  fromSchema((METHODS as any)[method].params).map(params => ({ method, contentType: 'application/json', body: JSON.stringify(params) })))

export async function fuzzValidApi (t: Target, numRuns: number, seed: number, findings = newFindings()): Promise<Findings> {
  await fc.assert(fc.asyncProperty(validApiInput, async (input) => {
    findings.runs++
    const verdict = await verdictOf(t, input, 20_000)
    count(findings, `${input.method}: ${verdict.kind}`)
    if (verdict.why != null) findings.failures.push({ input, why: verdict.why })
  }), { numRuns, seed })
  return findings
}

// ---- raw bytes to the API's HTTP port ----

export async function rawHttp (t: Target, bytes: Uint8Array, waitMs = 3000): Promise<string> {
  const u = new URL(t.url)
  return await new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname)
    let out = ''
    const done = (): void => { clearTimeout(timer); s.destroy(); resolve(out) }
    const timer = setTimeout(done, waitMs)
    s.on('data', d => { out += d.toString('latin1') })
    s.on('close', done)
    s.on('error', done)
    s.end(bytes)
  })
}

/** Bytes that start like a request (so the parser gets past the first line) or are anything at all. */
export const httpBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 512 }),
  fc.tuple(fc.constantFrom('POST /v0/call/node.info HTTP/1.1\r\n', 'GET /v0/version HTTP/1.1\r\n', 'POST /v0/events HTTP/1.1\r\n', 'POST /v0/channels/open?app=a&peer=b HTTP/1.1\r\n'),
    fc.string({ maxLength: 300 })).map(([a, b]) => new TextEncoder().encode(a + b))
)

export async function fuzzHttp (t: Target, numRuns: number, seed: number, findings = newFindings()): Promise<Findings> {
  await fc.assert(fc.asyncProperty(httpBytes, async (bytes) => {
    findings.runs++
    const out = await rawHttp(t, bytes)
    const status = /^HTTP\/1\.1 (\d{3})/.exec(out)?.[1]
    count(findings, status ?? (out === '' ? 'closed' : 'other'))
    if (status != null && status.startsWith('5')) findings.failures.push({ input: Buffer.from(bytes).toString('latin1'), why: `HTTP ${status}: ${out.slice(0, 200)}` })
  }), { numRuns, seed })
  return findings
}

// ---- the channel's frames (pure) ----

/** Byte chunks: whole valid frames, cut anywhere, with garbage mixed in. */
const frameChunks = fc.array(fc.oneof(
  fc.tuple(fc.integer({ min: FrameType.MSG, max: FrameType.CLOSE }), fc.uint8Array({ maxLength: 64 })).map(([type, p]) => encodeFrame(type, p)),
  fc.uint8Array({ maxLength: 16 })
), { maxLength: 12 }).chain(parts => {
  const all = Buffer.concat(parts)
  return fc.array(fc.nat(all.length), { maxLength: 6 }).map(cuts => {
    const at = [...new Set([0, ...cuts, all.length])].sort((a, b) => a - b)
    return at.slice(1).map((end, i) => new Uint8Array(all.subarray(at[i], end)))
  })
})

export function fuzzFrames (numRuns: number, seed: number, findings = newFindings()): Findings {
  fc.assert(fc.property(frameChunks, fc.boolean(), (chunks, streamData) => {
    findings.runs++
    const d = new FrameDecoder({ streamData })
    try {
      for (const c of chunks) {
        for (const f of d.push(c)) {
          if (f.type < FrameType.MSG || f.type > FrameType.CLOSE || f.payload.byteLength > MAX_FRAME_PAYLOAD) {
            findings.failures.push({ input: chunks.map(c => Buffer.from(c).toString('hex')), why: `decoded an impossible frame (type ${f.type})` })
          }
        }
      }
      count(findings, 'decoded')
    } catch (err) {
      if (err instanceof P2posError && (err.code === 'E_PROTOCOL' || err.code === 'E_TOO_LARGE')) count(findings, err.code)
      else findings.failures.push({ input: chunks.map(c => Buffer.from(c).toString('hex')), why: `threw ${String(err)}` })
    }
  }), { numRuns, seed })
  return findings
}

// ---- p2pos's peer protocols ----

export const PROTOCOLS = [CHANNEL_PROTOCOL, SERVICES_PROTOCOL, REACH_PROTOCOL, PEOPLE_PROTOCOL, INVITE_PROTOCOL, GROUP_PROTOCOL, STORAGE_PROTOCOL, COMPUTE_PROTOCOL]

/** A message of the protocols' framing (u32 length + JSON), with a lying length now and then, or raw bytes. */
const framed = (v: unknown, lie: number | null): Uint8Array => {
  const body = Buffer.from(JSON.stringify(v) ?? 'null')
  const out = Buffer.alloc(4 + body.length)
  out.writeUInt32BE(lie ?? body.length, 0)
  body.copy(out, 4)
  return out
}
const typedMessage = fc.record({
  type: fc.constantFrom('hello', 'list', 'dialback', 'lookup', 'invite', 'join', 'sync', 'entries', 'hold', 'release', 'holders', 'share', 'shared', 'answer', 'offer', 'task', 'result', 'ack', 'queue', 'results', 'drop', 'x'),
  app: fc.string({ maxLength: 20 }),
  peer: fc.string({ maxLength: 60 }),
  cid: fc.string({ maxLength: 60 }),
  group: fc.string({ maxLength: 64 }),
  owner: fc.string({ maxLength: 60 }),
  wanted: fc.integer({ min: -2, max: 20 }),
  holders: fc.oneof(fc.array(fc.string({ maxLength: 60 }), { maxLength: 40 }), fc.jsonValue({ maxDepth: 1 })),
  item: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ cid: fc.string({ maxLength: 60 }), name: fc.string({ maxLength: 40 }), size: fc.integer(), group: fc.string({ maxLength: 64 }), by: fc.string(), peer: fc.string(), at: fc.integer() })),
  addrs: fc.array(fc.string({ maxLength: 40 }), { maxLength: 3 }),
  x: fc.jsonValue({ maxDepth: 2 })
}, { requiredKeys: ['type'] })
export const wireInput = fc.record({
  protocol: fc.constantFrom(...PROTOCOLS),
  bytes: fc.oneof(
    { weight: 3, arbitrary: fc.tuple(typedMessage, fc.option(fc.nat(1 << 20), { freq: 8 })).map(([m, lie]) => framed(m, lie)) },
    { weight: 1, arbitrary: fc.tuple(fc.jsonValue({ maxDepth: 3 }), fc.constant(null)).map(([m, lie]) => framed(m, lie)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) }
  )
})

/**
 * Opens a stream of `protocol`, writes `bytes`, closes its writing side and reads what comes back until
 * the daemon closes the stream. Resolves with the bytes read, or 'hang' if the daemon held the stream
 * open past `waitMs` (a protocol waits at most its own timeout for a peer's message).
 */
export async function speak (t: Target, protocol: string, bytes: Uint8Array, waitMs = 15_000): Promise<{ read: number, outcome: string }> {
  let stream
  try {
    stream = await t.peer.dialProtocol(t.addr, protocol, { signal: AbortSignal.timeout(5000) })
  } catch (err: any) {
    return { read: 0, outcome: `refused: ${String(err?.name ?? err)}` }
  }
  let read = 0
  const ended = new Promise<string>((resolve) => {
    stream.addEventListener('message', (e: any) => { read += e.data.byteLength })
    stream.addEventListener('close', (e: any) => { resolve(e.error != null ? 'reset' : 'closed') }, { once: true })
  })
  try {
    stream.send(bytes)
    await stream.close({ signal: AbortSignal.timeout(waitMs) }).catch(() => {})
  } catch {}
  const timer = new Promise<string>(resolve => setTimeout(() => resolve('hang'), waitMs).unref())
  const outcome = await Promise.race([ended, timer])
  if (outcome === 'hang') stream.abort(new Error('fuzz: no answer'))
  return { read, outcome }
}

export async function fuzzWire (t: Target, numRuns: number, seed: number, findings = newFindings()): Promise<Findings> {
  await fc.assert(fc.asyncProperty(wireInput, async ({ protocol, bytes }) => {
    findings.runs++
    const { outcome } = await speak(t, protocol, bytes)
    count(findings, `${protocol.split('/')[2]}: ${outcome.startsWith('refused') ? 'refused' : outcome}`)
    if (outcome === 'hang' || outcome.startsWith('refused')) {
      findings.failures.push({ input: { protocol, bytes: Buffer.from(bytes).toString('hex') }, why: outcome === 'hang' ? 'the daemon held the stream open' : outcome })
    }
  }), { numRuns, seed })
  return findings
}
