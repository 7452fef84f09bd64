/**
 * People, names, devices and contacts (names.md). PROVISIONAL: every daemon is a person of one computer
 * (person id = peer id); names, linked devices and contacts land next.
 */
import type { Libp2p } from '@libp2p/interface'
import { P2posError, PEER_ID_PATTERN } from '@p2pos/api'
import { dialError, ensureKnown, parsePeer, type PeerFinder } from '../node/dial.ts'
import type { People, PersonInfo, SelfInfo } from './types.ts'

export type { People, PersonInfo, SelfInfo } from './types.ts'

export interface PeopleComponents { node: Libp2p }

export class PeopleService implements People {
  readonly name = 'people'
  private readonly c: PeopleComponents

  private readonly finder: PeerFinder

  constructor (c: PeopleComponents) {
    this.c = c
    const node = c.node
    this.finder = { getConnections: (p) => node.getConnections(p), peerStore: node.peerStore, peerRouting: node.peerRouting, events: node }
  }

  self (): SelfInfo {
    const id = this.c.node.peerId.toString()
    return { person: id, name: null, names: [], peers: [id], holder: true }
  }

  async resolvePerson (ref: string): Promise<PersonInfo> {
    if (ref === 'local') return this.self()
    if (!PEER_ID_PATTERN.test(ref)) throw new P2posError('E_INVALID_PEER', `"${ref}" is not a name, petname, person id or peer id`)
    return { person: ref, name: null, names: [], peers: [ref] }
  }

  async isDevice (person: string, peer: string): Promise<boolean> {
    return person === peer
  }

  async reach (person: PersonInfo, options: { signal?: AbortSignal } = {}): Promise<string> {
    const signal = options.signal ?? AbortSignal.timeout(30_000)
    const connected = person.peers.find(p => this.c.node.getConnections(parsePeer(p)).length > 0)
    if (connected != null) return connected
    const self = this.c.node.peerId.toString()
    const others = person.peers.filter(p => p !== self)
    if (others.length === 0) throw new P2posError('E_PEER_UNREACHABLE', `no other computer of ${person.person} to reach`)
    try {
      return await Promise.any(others.map(async (p) => {
        const id = parsePeer(p)
        await ensureKnown(this.finder, id, signal)
        await this.c.node.dial(id, { signal }) // libp2p's own user-dial priority (USER_DIAL_PRIORITY)
        return p
      }))
    } catch (err: any) {
      const first = err?.errors?.[0] ?? err
      throw dialError(first, person.name ?? person.person, 30_000)
    }
  }
}
