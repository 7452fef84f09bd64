/**
 * `node.info` and `node.reach`: what this node is and how it can be reached.
 */
import { API_VERSION, SOFTWARE_VERSION, type NodeInfo } from '@p2pos/api'
import type { RouteTable } from '../core/routes.ts'
import type { P2posNode } from './index.ts'

export interface InfoComponents {
  node: P2posNode
  /** The local API's loopback URL (known once it listens). */
  apiUrl: () => string
  socketPath: string
}

export function nodeInfo ({ node, apiUrl, socketPath }: InfoComponents): NodeInfo {
  const reach = node.services.reach
  return {
    peerId: node.peerId.toString(),
    addrs: node.getMultiaddrs().map(a => a.toString()),
    reachability: reach.getReachability(),
    api: apiUrl(),
    socket: socketPath,
    peers: new Set(node.getConnections().map(c => c.remotePeer.toString())).size,
    relayedPeers: reach.relayedOnly().length,
    version: SOFTWARE_VERSION,
    apiVersion: API_VERSION,
    protocols: node.getProtocols()
  }
}

export function nodeRoutes (c: InfoComponents): RouteTable<'node.info' | 'node.reach'> {
  return {
    'node.info': async () => nodeInfo(c),
    'node.reach': async () => c.node.services.reach.report()
  }
}
