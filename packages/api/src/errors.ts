/**
 * Stable error codes of the local API and the wire protocols (local-api.md §Errors).
 * A code never changes meaning; new codes may be added. Clients match on `code`, never on the message.
 */
export const ERROR_CODES = {
  E_BAD_REQUEST: 400,
  E_UNAUTHORIZED: 401,
  E_FORBIDDEN: 403,
  E_UNKNOWN_METHOD: 404,
  E_NOT_FOUND: 404,
  E_TOO_LARGE: 413,
  E_REQUEST_TIMEOUT: 408,
  E_UNSUPPORTED_MEDIA_TYPE: 415,
  E_BAD_ORIGIN: 403,
  E_BAD_HOST: 403,
  E_METHOD_NOT_ALLOWED: 405,
  E_INVALID_PEER: 400,
  E_INVALID_ADDR: 400,
  E_UNKNOWN_PEER: 404,
  E_PEER_UNREACHABLE: 502,
  E_NO_APP: 404,
  E_APP_REJECTED: 409,
  E_TIMEOUT: 504,
  E_NOT_CONNECTED: 409,
  E_PROTOCOL: 502,
  E_CHANNEL_CLOSED: 410,
  E_SLOW_CONSUMER: 429,
  E_LIMIT: 429,
  E_ABORTED: 499,
  E_DAEMON_NOT_RUNNING: 503,
  E_BAD_MANIFEST: 400,
  E_CONFLICT: 409,
  E_NO_SERVICE: 404,
  E_NOT_RUNNING: 409,
  E_BAD_SIGNATURE: 403,
  E_EXPIRED: 410,
  E_NOT_ADDRESSED: 403,
  E_ALREADY_DECIDED: 409,
  E_NOT_MEMBER: 403,
  E_NO_SPACE: 507,
  E_TOO_FEW_HOLDERS: 503,
  E_BAD_MODULE: 400,
  E_TRAP: 422,
  E_EXIT: 422,
  E_CPU_LIMIT: 422,
  E_MEMORY_LIMIT: 422,
  E_NO_QUORUM: 502,
  E_NO_WORKERS: 503,
  E_INTERNAL: 500
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export function isErrorCode (code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)
}

/** The JSON shape of an error on the API: `{"error": {"code": ..., "message": ...}}`. */
export interface ErrorBody {
  code: ErrorCode
  message: string
  details?: Record<string, unknown>
}

/**
 * The one error class of p2pos. `name` is derived from the code (`E_NO_APP` → `NoAppError`), so a
 * caller can test `err.code === 'E_NO_APP'` or `err.name === 'NoAppError'`.
 */
export class P2posError extends Error {
  readonly code: ErrorCode
  readonly details?: Record<string, unknown>

  constructor (code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message)
    this.code = code
    this.details = details
    this.name = errorName(code)
  }

  get status (): number {
    return ERROR_CODES[this.code]
  }

  toJSON (): ErrorBody {
    return this.details == null
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details }
  }

  static from (body: unknown): P2posError {
    const b = body as Partial<ErrorBody> | null
    if (b != null && isErrorCode(b.code)) {
      return new P2posError(b.code, String(b.message ?? b.code), b.details)
    }
    return new P2posError('E_PROTOCOL', `malformed error body: ${JSON.stringify(body)}`)
  }
}

/** `E_NO_APP` → `NoAppError`. */
export function errorName (code: ErrorCode): string {
  return code.slice(2).toLowerCase().split('_').map(w => w[0].toUpperCase() + w.slice(1)).join('') + 'Error'
}
