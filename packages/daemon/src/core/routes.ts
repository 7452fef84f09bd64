/**
 * What a capability offers the local API: one handler per method of the method table (packages/api),
 * typed from the table. Capabilities export their handlers as a `RouteTable` of the methods they own;
 * the daemon's index.ts merges them into `Routes`, and the compiler demands a handler for every method.
 * No handler checks a permission or a parameter: `authorise` and the table's schema did, before it ran.
 */
import type { Socket } from 'node:net'
import type { BytesMethod, MethodName, Params, Result, UpgradeMethod } from '@p2pos/api'
import type { Principal } from './tokens.ts'

export interface CallContext { principal: Principal }

/**
 * A local app's connection that is becoming a channel (an upgrade method). The transport (local-api/)
 * made it and says, in its own protocol, whether the channel opened; after `open`, the socket carries
 * only the apps' frames.
 */
export interface ChannelRequest {
  readonly socket: Socket
  /** Bytes the app sent after its request, already read from the socket. */
  readonly head: Buffer
  /** Tells the app the channel is open. */
  open: (info: ChannelOpened) => void
  /** Tells the app why not (the error's code and message) and ends the connection. */
  refuse: (err: unknown) => void
}

export interface ChannelOpened { channel: string, peer: string, app: string, service?: string, relayed: boolean }

export interface UpgradeContext extends CallContext { channel: ChannelRequest }

export type ContextOf<M extends MethodName> = M extends UpgradeMethod ? UpgradeContext : CallContext
/**
 * Bytes that can also be read by range (storage.cat): iterated, they are what the call's parameters
 * asked for; `total` is the whole length and `slice` reads any part, so the HTTP layer serves `Range`.
 */
export interface RangedBytes extends AsyncIterable<Uint8Array> {
  readonly total: number
  slice: (offset: number, length: number) => AsyncIterable<Uint8Array>
  /** Says no slice will be read (HEAD, a range not satisfiable): what the opening holds is let go. */
  release: () => void
}

/** What a handler answers: its result, or for a bytes method the bytes (streamed to the client as they come). */
export type ResultOf<M extends MethodName> = M extends BytesMethod ? AsyncIterable<Uint8Array> : Result<M>
export type Handler<M extends MethodName> = (params: Params<M>, ctx: ContextOf<M>) => Promise<ResultOf<M>>
export type Routes = { [M in MethodName]: Handler<M> }
export type RouteTable<K extends MethodName> = Pick<Routes, K>

/** For `owner` methods: which app owns the resource the parameters name (undefined: none). */
export type OwnerLookup = { [M in MethodName]?: (params: Params<M>) => string | undefined }
