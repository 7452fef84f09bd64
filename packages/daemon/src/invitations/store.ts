/**
 * The invitations this computer holds, in the daemon's datastore (LevelDB: a write is journalled before
 * it is acknowledged): received ones (`/p2pos-invitations/in/<id>`) until they expire — which is also what
 * refuses a replay — and sent ones with their delivery state (`/p2pos-invitations/out/<id>`), and the
 * answers still to be delivered to an inviter (`/p2pos-invitations/answer/<id>`). All of it is small and
 * bounded, so it is also kept in memory.
 */
import { Key, type Datastore } from 'interface-datastore'
import type { Answer, Invitation } from './records.ts'

export interface Received { inv: Invitation, fromName?: string | null, state: 'pending' | 'accepted' | 'declined', received: number, decided: number | null }
export interface Sent {
  inv: Invitation
  state: 'waiting' | 'delivered' | 'accepted' | 'declined' | 'refused'
  deliveredTo: string | null
  error?: string
  /** The invited person's computers, as last resolved. */
  peers: string[]
  tries: number
  next: number
}
export interface PendingAnswer { answer: Answer, device: string, expires: number, tries: number, next: number }

type Kind = 'in' | 'out' | 'answer'
const PREFIX = '/p2pos-invitations'

export class InvitationStore {
  readonly received = new Map<string, Received>()
  readonly sent = new Map<string, Sent>()
  readonly answers = new Map<string, PendingAnswer>()
  private readonly ds: Datastore

  constructor (ds: Datastore) {
    this.ds = ds
  }

  async load (): Promise<void> {
    const maps = { in: this.received, out: this.sent, answer: this.answers } as const
    for (const kind of ['in', 'out', 'answer'] as const) {
      for await (const { key, value } of this.ds.query({ prefix: `${PREFIX}/${kind}/` })) {
        try {
          (maps[kind] as Map<string, unknown>).set(key.baseNamespace(), JSON.parse(new TextDecoder().decode(value)))
        } catch {}
      }
    }
  }

  private key (kind: Kind, id: string): Key { return new Key(`${PREFIX}/${kind}/${id}`) }

  async putReceived (r: Received): Promise<void> {
    await this.ds.put(this.key('in', r.inv.id), new TextEncoder().encode(JSON.stringify(r)))
    this.received.set(r.inv.id, r)
  }

  async putSent (s: Sent): Promise<void> {
    await this.ds.put(this.key('out', s.inv.id), new TextEncoder().encode(JSON.stringify(s)))
    this.sent.set(s.inv.id, s)
  }

  async putAnswer (a: PendingAnswer): Promise<void> {
    await this.ds.put(this.key('answer', a.answer.id), new TextEncoder().encode(JSON.stringify(a)))
    this.answers.set(a.answer.id, a)
  }

  async delete (kind: Kind, id: string): Promise<void> {
    await this.ds.delete(this.key(kind, id))
    const map: Map<string, unknown> = kind === 'in' ? this.received : kind === 'out' ? this.sent : this.answers
    map.delete(id)
  }

  /** Forgets what expired more than `graceMs` ago (an expired invitation is refused by its date alone). */
  async prune (now: number, graceMs: number): Promise<void> {
    for (const [id, r] of this.received) if (r.inv.expires + graceMs < now) await this.delete('in', id)
    for (const [id, s] of this.sent) if (s.inv.expires + graceMs < now) await this.delete('out', id)
    for (const [id, a] of this.answers) if (a.expires < now) await this.delete('answer', id)
  }
}
