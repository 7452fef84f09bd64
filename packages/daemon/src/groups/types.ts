/**
 * Groups (groups.md): what the rest of the daemon may ask about peer groups — membership as a
 * permission (a service offered to a group, storage and compute shared within one), and accepting an
 * invitation delivered by another capability (an OS-wide invitations inbox).
 */
export interface GroupMember { person: string, role: 'admin' | 'member', peers: string[] }

export interface Groups {
  /** Whether `peer` is a registered device of a current member of `group` (false for unknown groups). */
  hasDevice: (group: string, peer: string) => boolean
  /** Whether `peer` is a device of a current member of any group this computer belongs to. */
  isFellowDevice: (peer: string) => boolean
  /** The id of a group this computer belongs to, from its id or name; E_NOT_FOUND, E_CONFLICT (a name of several). */
  resolve: (ref: string) => string
  /** The current members of a group this computer belongs to; E_NOT_FOUND otherwise. */
  membersOf: (group: string) => GroupMember[]
  /** The ids of the groups this computer belongs to. */
  ids: () => string[]
  /** A group's name (its id for a group this computer is not in). */
  groupName: (group: string) => string
  /** The group's current key and its id (storage seals content keys to it); E_NOT_FOUND, E_CONFLICT (no key yet). */
  currentKey: (group: string) => { kid: string, key: Uint8Array }
  /** The group key of rekey entry `kid`, if this computer can open it (undefined otherwise, or not a member). */
  keyById: (group: string, kid: string) => Uint8Array | undefined
  /**
   * Joins the group an invitation code (`p2pos-group:…` or `p2pos://group/…`) admits this computer's
   * person to: contacts one of the members it names, which appends the membership. Errors: E_FORBIDDEN
   * (for another person, expired, used, issuer not an admin), E_CONFLICT (already a member),
   * E_BAD_REQUEST (not an invitation), E_PEER_UNREACHABLE / E_TIMEOUT (no member answered).
   */
  acceptInvite: (code: string, options?: { timeoutMs?: number }) => Promise<{ id: string, name: string }>
}
