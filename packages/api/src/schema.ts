/**
 * The building blocks of the API's schemas, and the one validator. Schemas are TypeBox (@sinclair/typebox
 * 0.34): each schema object *is* a JSON Schema document, so the same declaration gives the daemon's
 * validation (compiled once), the SDK's TypeScript types (`Static`) and the JSON Schema of the spec
 * (docs/spec/local-api.schema.json). Chosen over zod and valibot by measurement: a valid request checks
 * in about 0.26 µs compiled (zod 0.59, valibot 1.2), and no converter stands between the schema and the
 * JSON Schema.
 *
 * Two limits plain JSON Schema cannot state — a UTF-8 *byte* length and a base64 string's *decoded* size —
 * are named formats (`utf8-max-N`, `base64-max-N`), registered here and named in the JSON Schema, so a
 * client in another language can register the same checks. `x-error` on a schema names the error code a
 * failure of that field gets (E_INVALID_PEER for peer ids).
 */
import { FormatRegistry, Type, type Static, type TSchema, type TString, type StringOptions } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors'
import { NAME_PATTERN, PEER_ID_PATTERN } from './constants.ts'
import { P2posError, type ErrorCode } from './errors.ts'

export { Type, type Static, type TSchema }

const PEER_ID_SOURCE = PEER_ID_PATTERN.source
const BASE64_SOURCE = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'

/** An app id, topic, service or record name. */
export const Name = (options: StringOptions = {}) => Type.String({ pattern: NAME_PATTERN.source, description: 'a name: [a-z0-9][a-z0-9._-]{0,127}', ...options })
export const PeerId = (options: StringOptions = {}) => Type.String({ pattern: PEER_ID_SOURCE, 'x-error': 'E_INVALID_PEER', ...options })
/**
 * A PEER argument (names.md §6): a peer id, a person's name ("label.suffix"), a petname from the
 * contacts, or "local" (this daemon). The daemon resolves names and petnames before the handler runs.
 */
export const PeerRef = (options: Record<string, unknown> = {}) =>
  Type.Union([Type.String({ pattern: PEER_ID_SOURCE }), Type.String({ pattern: NAME_PATTERN.source })], { 'x-error': 'E_INVALID_PEER', description: 'a peer id, a name (label.suffix), a petname, or "local"', ...options })
export const Multiaddr = () => Type.String({ pattern: '^/', maxLength: 1023, 'x-error': 'E_BAD_REQUEST', description: 'a multiaddr' })
export const Int = (maximum: number, minimum = 0, options: Record<string, unknown> = {}) => Type.Integer({ minimum, maximum, ...options })

/** A string of at most `maxBytes` UTF-8 bytes. */
export function Utf8 (maxBytes: number, options: StringOptions = {}): TString {
  const format = `utf8-max-${maxBytes}`
  if (!FormatRegistry.Has(format)) FormatRegistry.Set(format, (v) => utf8.encode(v).byteLength <= maxBytes)
  return Type.String({ maxLength: maxBytes, format, ...options })
}

/** Base64 (standard alphabet, padded) of at most `maxBytes` decoded bytes. */
export function Base64 (maxBytes: number, options: StringOptions = {}): TString {
  const format = `base64-max-${maxBytes}`
  if (!FormatRegistry.Has(format)) FormatRegistry.Set(format, (v) => decodedLength(v) <= maxBytes)
  return Type.String({ pattern: BASE64_SOURCE, maxLength: Math.ceil(maxBytes / 3) * 4, format, contentEncoding: 'base64', description: `base64 (standard alphabet, padded) of at most ${maxBytes} bytes`, ...options })
}

function decodedLength (b64: string): number {
  return (b64.length / 4) * 3 - (b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0)
}

/** An object with exactly these properties (unknown ones refused, so a typo never passes silently). */
export const Obj = <P extends Record<string, TSchema>>(properties: P, options: Record<string, unknown> = {}) =>
  Type.Object(properties, { additionalProperties: false, ...options })

const utf8 = new TextEncoder()
const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>()

/**
 * Checks `value` against `schema`; returns it typed, or throws a P2posError naming the first wrong field
 * (`details.field`): E_INVALID_PEER for a peer id, E_TOO_LARGE for an oversized string, else E_BAD_REQUEST.
 * `what` names the thing checked in messages ("peers.ping", "config.json").
 */
export function check<S extends TSchema> (schema: S, value: unknown, what: string, noun = 'parameter'): Static<S> {
  let checker = compiled.get(schema)
  if (checker == null) {
    checker = TypeCompiler.Compile(schema)
    compiled.set(schema, checker)
  }
  if (checker.Check(value)) return value as Static<S>
  const e = checker.Errors(value).First()
  throw toError(e, what, noun)
}

const TOO_LARGE = new Set<ValueErrorType>([ValueErrorType.StringMaxLength, ValueErrorType.ArrayMaxItems])

function toError (e: ValueError | undefined, what: string, noun: string): P2posError {
  if (e == null) return new P2posError('E_BAD_REQUEST', `${what}: invalid`)
  const field = e.path.split('/')[1] ?? ''
  const details = field === '' ? undefined : { field }
  if (field === '') return new P2posError('E_BAD_REQUEST', noun === 'parameter' ? `${what}: params must be a JSON object` : `${what} is invalid: ${e.message}`)
  if (e.type === ValueErrorType.ObjectRequiredProperty) return new P2posError('E_BAD_REQUEST', `missing ${noun} "${field}" for ${what}`, details)
  if (e.type === ValueErrorType.ObjectAdditionalProperties) return new P2posError('E_BAD_REQUEST', `unknown ${noun} "${field}" for ${what}`, details)
  const format = typeof e.schema.format === 'string' ? e.schema.format : ''
  const sized = e.type === ValueErrorType.StringFormat && /^(utf8|base64)-max-\d+$/.test(format)
  const code: ErrorCode = e.schema['x-error'] ?? (sized || TOO_LARGE.has(e.type) ? 'E_TOO_LARGE' : 'E_BAD_REQUEST')
  const limit = /-max-(\d+)$/.exec(format)?.[1]
  const problem = code === 'E_TOO_LARGE' && limit != null ? `is too large (at most ${limit} bytes)` : describe(e)
  // a parameter's method is in the request; a setting's source (which file, or the flags) is not
  return new P2posError(code, `${noun} "${e.path.slice(1)}" ${problem}${noun === 'parameter' ? '' : ` (${what})`}`, details)
}

/** TypeBox's message in our words where its own is unclear. */
function describe (e: ValueError): string {
  if (e.schema['x-error'] === 'E_INVALID_PEER') return e.schema.anyOf != null ? 'is not a peer id, name, petname or "local"' : 'is not a peer id'
  if (e.type === ValueErrorType.StringPattern && e.schema.description != null) return `must be ${String(e.schema.description)}`
  return `is invalid: ${e.message.charAt(0).toLowerCase()}${e.message.slice(1)}`
}
