import { decide } from './decline.ts'

/** `p2pos accept ID`: accepts an invitation; its app is told (and started), the inviter gets the answer. */
export async function run (argv: string[]): Promise<number> {
  return await decide(argv, 'accept')
}
