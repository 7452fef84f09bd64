import { UsageError, args, client, print } from '../output.ts'

const USAGE = `p2pos group create NAME [--json]                 a new group; you are its first admin
p2pos group invite GROUP PERSON [--role member|admin]   an invitation for PERSON (a code and a link)
p2pos group join CODE                            on the invitee's computer: join with the code
p2pos group members GROUP [--json]
p2pos group remove GROUP PERSON                  admins only; the group key is replaced
p2pos group leave GROUP
p2pos group list [--json]
GROUP is a group id or a group's name; PERSON a name, petname, person or peer id.`

/** Peer groups: a membership log shared by the members, no server. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { role: { type: 'string' } }, USAGE)
  const json = values.json === true
  const [sub, ...rest] = positionals
  const want = (n: number): void => { if (rest.length !== n) throw new UsageError(USAGE) }
  if (values.role != null && values.role !== 'member' && values.role !== 'admin') throw new UsageError(`--role is member or admin\n${USAGE}`)
  const p2p = await client()
  switch (sub) {
    case 'create': {
      want(1)
      const g = await p2p.createGroup(rest[0])
      print(json, g, () => `created ${g.name} (${g.id})`)
      return 0
    }
    case 'invite': {
      want(2)
      const r = await p2p.inviteToGroup(rest[0], rest[1].replace(/^p2pos:\/\/(?!group\/)/, ''), { role: values.role as 'member' | 'admin' | undefined })
      print(json, r, () => `${r.code}\n\nOn the invitee's computer: p2pos group join <the code above>\n(or open ${r.link}; works once, for that person only, until ${r.expires})`)
      return 0
    }
    case 'join': {
      want(1)
      const g = await p2p.joinGroup(rest[0], { timeoutMs: 60_000 })
      print(json, g, () => `joined ${g.name} (${g.id})`)
      return 0
    }
    case 'members': {
      want(1)
      const list = await p2p.groupMembers(rest[0])
      print(json, list, () => list.map(m => `${(m.name ?? m.person).padEnd(40)} ${m.role.padEnd(6)} ${m.online ? 'online' : 'offline'}  ${m.peers.length} computer(s)`).join('\n'))
      return 0
    }
    case 'remove': {
      want(2)
      const r = await p2p.removeFromGroup(rest[0], rest[1])
      print(json, r, () => `removed ${r.removed}; the group has a new key`)
      return 0
    }
    case 'leave': {
      want(1)
      const r = await p2p.leaveGroup(rest[0])
      print(json, r, () => `left ${r.id}`)
      return 0
    }
    case 'list': {
      want(0)
      const list = await p2p.groups()
      print(json, list, () => list.length === 0 ? 'no groups (p2pos group create NAME)' : list.map(g => `${g.name.padEnd(24)} ${g.role.padEnd(6)} ${String(g.members).padStart(4)} members  ${g.id}`).join('\n'))
      return 0
    }
    default:
      throw new UsageError(USAGE)
  }
}
