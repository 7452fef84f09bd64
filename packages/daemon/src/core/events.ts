/**
 * How capabilities tell local apps what happened (local-api.md §Events), without knowing who listens
 * or how the event travels: they publish to an EventBus; `Sessions` is the implementation that writes
 * each event to the event sessions allowed to see it.
 */
import type { ApiEvent } from '@p2pos/api'

export interface EventBus {
  /** Node-wide events (no `app`) go to every session; app-scoped ones only to sessions allowed that app. */
  broadcast: (ev: ApiEvent, app?: string) => void
}
