/**
 * Constants of the p2pos open spec. Each is described in docs/spec/local-api.md or docs/spec/wire.md;
 * change the document in the same commit as the number.
 */

/** Major version of the local API; it is the path prefix `/v0/`. See local-api.md §Versioning. */
export const API_VERSION = 0
export const API_PREFIX = `/v${API_VERSION}`

/** The software version reported by `node.info` and `GET /v0/version`. */
export const SOFTWARE_VERSION = '0.1.0'

/** Wire protocol for app-to-app channels between daemons (wire.md §Channel protocol). */
export const CHANNEL_PROTOCOL = '/p2pos/channel/1.0.0'

/** Wire protocol of dial-back reachability checks (wire.md §Reach protocol). */
export const REACH_PROTOCOL = '/p2pos/reach/1.0.0'

/** Wire protocol listing the services a peer offers to the asker (wire.md §Services listing). */
/** People: device linking, person records pushed and asked for (wire.md §8). */
export const PEOPLE_PROTOCOL = '/p2pos/people/1.0.0'
/** Invitations: a signed invitation delivered to a person, and the invitee's signed answer (wire.md §9). */
export const INVITE_PROTOCOL = '/p2pos/invite/1.0.0'

export const SERVICES_PROTOCOL = '/p2pos/services/1.0.0'

/** Storage: asking a computer that offered space to hold content, and releasing it (wire.md §11, storage.md). */
export const STORAGE_PROTOCOL = '/p2pos/storage/1.0.0'

/** Compute: asking a computer that offered CPU what it takes, and running a task on it (wire.md §12, compute.md). */
export const COMPUTE_PROTOCOL = '/p2pos/compute/1.0.0'

/** Groups: membership log replication, joining by invitation (wire.md §10, groups.md). */
export const GROUP_PROTOCOL = '/p2pos/group/1.0.0'

/** libp2p's Direct Connection Upgrade through Relay, spoken by p2pos's hole punching (wire.md §Hole punching). */
export const DCUTR_PROTOCOL = '/libp2p/dcutr'

/** libp2p's circuit relay v2 hop protocol: a peer that lists it in identify can relay for us. */
export const RELAY_HOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/hop'

/** Its stop protocol: the relay's side of a relayed connection, at the peer being reached. */
export const RELAY_STOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/stop'

/** The Kad-DHT protocol id (the public libp2p DHT). */
export const DHT_PROTOCOL = '/ipfs/kad/1.0.0'

/** DHT record namespace for p2pos signed records: keys are `/p2pos/<peerId>/<name>`. */
export const DHT_NAMESPACE = 'p2pos'

/** TCP port of the local API on 127.0.0.1 unless configured (local-api.md §10, `apiPort`). */
export const DEFAULT_API_PORT = 5151

/**
 * libp2p port unless configured (local-api.md §10, `listen`): TCP and QUIC; WebSockets on the next
 * port, TCP dials from the one after (wire.md §5.2).
 */
export const DEFAULT_P2P_PORT = 4151

/** HTTP header and upgrade token used to turn an HTTP request into a channel (local-api.md §Channels). */
export const CHANNEL_UPGRADE = 'p2pos-channel'

/** Limits (local-api.md §Limits). */
export const LIMITS = {
  /** Largest JSON request body of a method call. */
  requestBodyBytes: 1024 * 1024,
  /**
   * Time for a request's headers, and separately for a call's whole body, to arrive (E_REQUEST_TIMEOUT,
   * HTTP 408). A local client sends both in well under a millisecond; the limit only stops a client
   * that would hold a connection by sending nothing.
   */
  requestTimeoutMs: 10_000,
  /** Largest payload of one MSG frame (the message itself, without its 5-byte header). */
  messageBytes: 1024 * 1024,
  /** Largest payload of one DATA frame. */
  dataFrameBytes: 1024 * 1024,
  /** Largest hello or hello-reply on the wire channel protocol. */
  helloBytes: 4096,
  /** Largest pubsub message (decoded bytes). */
  pubsubBytes: 64 * 1024,
  /**
   * Messages a second one remote peer's publications on one app topic are delivered at; more are dropped
   * and reported to gossipsub as invalid, which lowers that peer's score (wire.md §4).
   */
  pubsubPerPeerPerSecond: 50,
  /** Largest DHT record value (UTF-8 bytes). */
  dhtValueBytes: 8 * 1024,
  /** Longest app id or topic. */
  nameChars: 128,
  /** How long an inbound channel waits for the app to accept it. */
  acceptTimeoutMs: 10_000,
  /** Default time allowed to reach a peer and its app when opening a channel. */
  openTimeoutMs: 15_000,
  /**
   * Most inbound channels (waiting to be accepted or open) one remote peer may hold at this daemon, over
   * all apps and services; more are refused with E_LIMIT (each holds a socket here and at the app).
   */
  channelsPerPeer: 128,
  /** Most event sessions one token may hold open. */
  sessionsPerToken: 64,
  /** Most buffered events per session before the session is closed as too slow (E_SLOW_CONSUMER). */
  sessionEventBacklog: 10_000,
  /** Largest context of an invitation (its JSON text, UTF-8). */
  invitationContextBytes: 16 * 1024,
  /** How long an invitation stays valid unless its sender says otherwise, and the longest allowed. */
  invitationTtlMs: 7 * 24 * 3600_000,
  invitationTtlMaxMs: 30 * 24 * 3600_000,
  /** Most invitations one person may have waiting (undecided) at another's computer. */
  invitationsPendingPerSender: 64,
  /** Most replicas one put may ask for (storage.md §5). */
  storageReplicas: 16,
  /** Default time a get waits for a computer that holds the content (storage.md §3). */
  storageGetTimeoutMs: 60_000,
  /** Default time a put waits for its replicas (storage.md §5). */
  storagePutTimeoutMs: 300_000,
  /** Largest task program (a WebAssembly module) and task input (compute.md §1). */
  computeModuleBytes: 16 * 1024 * 1024,
  computeInputBytes: 4 * 1024 * 1024,
  /** A task's output limit: its default and the largest a job may set (compute.md §1). */
  computeOutputBytes: 1024 * 1024,
  computeOutputMaxBytes: 16 * 1024 * 1024,
  /** Most tasks in one job, and most replicas (results) asked for one task (compute.md §1, §4). */
  computeTasks: 10_000,
  computeReplicas: 16,
  /** A task's CPU (wall-clock) limit: default and most (compute.md §2.2). */
  computeCpuMs: 60_000,
  computeCpuMaxMs: 3_600_000,
  /** A task's memory limit: default and most (a wasm32 memory is at most 4 GiB). */
  computeMemoryBytes: 64 * 1024 * 1024,
  computeMemoryMaxBytes: 4 * 1024 * 1024 * 1024,
  /** How long a job waits for any worker to take one of its tasks before it fails with E_NO_WORKERS (compute.md §5). */
  computeJobTimeoutMs: 600_000
} as const

/**
 * A peer id in text (local-api.md §5, parameter type *peer*; wire.md §1): base58btc `12D3KooW…` (an
 * Ed25519 key inlined, what p2pos nodes have) or `Qm…` (a SHA-256 multihash), or a CIDv1 in base32
 * (`b…`). Only the form is checked; decoding can still fail.
 */
export const PEER_ID_PATTERN = /^(12D3Koo[1-9A-HJ-NP-Za-km-z]{40,50}|Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{50,70})$/

/** App ids: reverse-DNS style, lower case; topics use the same alphabet. */
/** A name's label (names.md §3): 1–32 of a-z, 0-9 and hyphens, not first or last. */
export const LABEL_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/

export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/

/**
 * Domain separation for `identity.sign` (local-api.md §5): the node signs
 *   APP_SIGNATURE_PREFIX + app + "\n" + data
 * so an app can never obtain a signature that means anything to another app or to libp2p itself.
 */
export const APP_SIGNATURE_PREFIX = 'p2pos-app-signature/1\n'
