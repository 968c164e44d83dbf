/**
 * The router's internal queue message: one per accepted event, whatever the
 * number of destinations. Retries of failed destinations travel as new
 * messages carrying only those destinations and their attempt counts.
 */
export interface RouterMessage {
  v: 1;
  id: string;
  type: string;
  created_at: string;
  source: 'webhook' | 'reconcile';
  /** ms since epoch when the router accepted the event. */
  accepted_at: number;
  /** The raw body exactly as WorkOS sent it, when small enough to travel inline. */
  body?: string;
  /** A newer event for the same object was already routed (or the object was deleted). */
  stale?: boolean;
  /** When the body is too large for a queue message: the ledger shard that stores it. */
  body_ref?: { shard: string };
  /**
   * Absent on the first delivery (route by the rules). On a retry: the
   * destinations still owed, with the attempts already made for each, and the
   * rules that routed them (for context in messages).
   */
  pending?: Record<string, { attempts: number; rules: string[] }>;
}

/** Queue messages are limited to 128 KB; keep a margin for the envelope fields. */
export const INLINE_BODY_LIMIT = 120 * 1024;

export function isRouterMessage(v: unknown): v is RouterMessage {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Partial<RouterMessage>;
  return m.v === 1 && typeof m.id === 'string' && typeof m.type === 'string' && (typeof m.body === 'string' || typeof m.body_ref === 'object');
}
