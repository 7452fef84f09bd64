/**
 * The part of the spec an API client needs at run time: constants, error codes, the channel's frames and
 * the default home. It loads no schema library: the method table (methods.ts) and its TypeBox schemas
 * are for the daemon, which checks them, and for types. A client that imported them would keep ~2.4 MB
 * more live heap (measured with `v8.getHeapStatistics()` after importing the SDK), and an app that moves
 * bulk data pays for that in every major GC: V8 runs one each time the socket buffers it has freed add up,
 * and each marks the whole live heap (with the method table loaded, the receiving app of `npm run bench`
 * ran up to twice the CPU per MiB).
 */
export * from './constants.ts'
export * from './errors.ts'
export * from './frames.ts'
export * from './home.ts'
