/**
 * People (names.md): what the rest of the daemon may ask about persons. A person is an Ed25519 key that
 * certifies device keys (peer ids) in a signed person record. A person's id is the peer id form of its
 * key; the key is the identity key of the person's first computer, so every daemon is a person of one
 * computer (person id = its own peer id) until it links more. Invitations and groups name people by
 * person id and sign with the *device* key (the node's own key); a receiver checks the signer is one of
 * the person's devices with `isDevice`.
 */
export interface PersonInfo {
  /** The person id (a peer id string: the person key). */
  person: string
  /** The person's first claimed name ("label.suffix"), or null. */
  name: string | null
  /** Every name the person claimed. */
  names: string[]
  /** The person's devices (peer ids), the key holder first. */
  peers: string[]
}

export interface SelfInfo extends PersonInfo {
  /** Whether this computer holds the person key (only it links and unlinks devices, claims names). */
  holder: boolean
}

export interface People {
  /** This daemon's person. */
  self: () => SelfInfo
  /**
   * A PERSON argument: a name ("label.suffix"), a petname, a person id, the peer id of any of the
   * person's devices, or "local". Throws P2posError E_NOT_FOUND (unknown name/petname), E_INVALID_PEER
   * (not a name, petname or id), E_TIMEOUT.
   */
  resolvePerson: (ref: string, options?: { signal?: AbortSignal }) => Promise<PersonInfo>
  /** Whether `peer` is a device of `person` by the newest person record known (fetched if needed). */
  isDevice: (person: string, peer: string, options?: { signal?: AbortSignal }) => Promise<boolean>
  /**
   * Connects to whichever of the person's devices answers first (connected ones first; the others
   * dialled at once) and returns its peer id. E_PEER_UNREACHABLE when none does.
   */
  reach: (person: PersonInfo, options?: { signal?: AbortSignal }) => Promise<string>
}
