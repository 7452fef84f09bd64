/**
 * The local address book (names.md §6): petnames this computer's user gave to people. Kept in the
 * daemon's datastore under `/p2pos-contacts/<petname>`; a petname means something only here.
 */
import { Key, type Datastore } from 'interface-datastore'
import { P2posError } from '@p2pos/api'

export interface Contact { petname: string, person: string, added: number, lastSeen: number | null }

const PREFIX = '/p2pos-contacts'
const MAX_CONTACTS = 10_000

export class Contacts {
  private readonly ds: Datastore
  private cache: Map<string, Contact> | undefined

  constructor (ds: Datastore) {
    this.ds = ds
  }

  async all (): Promise<Contact[]> {
    if (this.cache == null) {
      const m = new Map<string, Contact>()
      for await (const { value } of this.ds.query({ prefix: PREFIX })) {
        try {
          const c = JSON.parse(new TextDecoder().decode(value)) as Contact
          m.set(c.petname, c)
        } catch {}
      }
      this.cache = m
    }
    return [...this.cache.values()].sort((a, b) => a.petname.localeCompare(b.petname))
  }

  async get (petname: string): Promise<Contact | undefined> {
    await this.all()
    return this.cache!.get(petname)
  }

  async add (petname: string, person: string): Promise<Contact> {
    const existing = await this.get(petname)
    if (existing != null && existing.person !== person) throw new P2posError('E_CONFLICT', `the petname "${petname}" already names ${existing.person}; pick another (--as) or remove it first`)
    if (existing != null) return existing
    if (this.cache!.size >= MAX_CONTACTS) throw new P2posError('E_LIMIT', `at most ${MAX_CONTACTS} contacts`)
    const c: Contact = { petname, person, added: Date.now(), lastSeen: null }
    await this.write(c)
    return c
  }

  async remove (petname: string): Promise<void> {
    await this.ds.delete(new Key(`${PREFIX}/${petname}`))
    this.cache?.delete(petname)
  }

  /** A computer connected: the contacts it belongs to were seen now. */
  async seen (peer: string, personOf: (peer: string) => string | undefined): Promise<void> {
    const person = personOf(peer) ?? peer
    for (const c of await this.all()) {
      if (c.person === person) await this.write({ ...c, lastSeen: Date.now() })
    }
  }

  private async write (c: Contact): Promise<void> {
    await this.ds.put(new Key(`${PREFIX}/${c.petname}`), new TextEncoder().encode(JSON.stringify(c)))
    this.cache?.set(c.petname, c)
  }
}
