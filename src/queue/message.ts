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
  /** Sent again by an operator (dead-letter or event replay): traced with source `replay`. */
  replay?: true;
  /** The circuit breaker's probe for this destination: tried although its circuit is open. */
  probe?: string;
  /**
   * Which probe (the registry's token, ms): only the destination's latest is
   * tried; an earlier one that arrives late (a queue backlog) is held again.
   * Absent in probes sent by an older release: tried.
   */
  probe_token?: number;
  /** ms since epoch when the router accepted the event. */
  accepted_at: number;
  /** The raw body exactly as WorkOS sent it, when the whole message fits a queue message. */
  body?: string;
  /** A newer event for the same object was already routed (or the object was deleted). */
  stale?: boolean;
  /**
   * When the body is too large to travel inline: the ledger shard that stores
   * it, and until when (ms) it is kept there (extended while deliveries remain).
   */
  body_ref?: { shard: string; until?: number };
  /**
   * The ledger shard that admitted the event, which keeps its body for the
   * retention (the console's payload view and event replays read it there).
   * Carried because the event's shard under the current `dedup_shards` is
   * another one once that count changes. Absent in messages of older
   * releases (and in replays of their dead letters): the event's current shard
   * is assumed.
   */
  ledger_shard?: string;
  /**
   * Absent on the first delivery (route by the rules). On a retry: the
   * destinations still owed, with the attempts already made for each, the
   * rules that routed them (for context in messages) and, when a destination
   * asked to wait longer than the message's delay, the time before which it
   * is not tried again.
   */
  pending?: Record<string, PendingDelivery>;
}

export interface PendingDelivery {
  attempts: number;
  rules: string[];
  /** ms since epoch; absent: due now. */
  not_before?: number;
}

/** The platform limit on one queue message: 128,000 bytes (decimal, not KiB). */
export const QUEUE_MESSAGE_LIMIT = 128_000;

/**
 * A message carries its body inline when the whole serialised message is at
 * most this many bytes. The 8,000-byte margin under the platform limit leaves
 * room for what retries add (`pending`: destination names, rules, attempt
 * counts); a retry that would still not fit moves its body to the ledger.
 */
export const INLINE_MESSAGE_LIMIT = QUEUE_MESSAGE_LIMIT - 8_000;

const encoder = new TextEncoder();

/** UTF-8 size of a string, in bytes. */
export function utf8Length(s: string): number {
  return encoder.encode(s).byteLength;
}

/** UTF-8 size of a message as the queue stores it (JSON). */
export function messageBytes(m: RouterMessage): number {
  return utf8Length(JSON.stringify(m));
}

/**
 * Does `m`, with `body` inline, fit `limit`? A body of `bodyBytes` UTF-8 bytes
 * grows by at most 2× when escaped into a JSON string (valid JSON text holds
 * no raw control characters inside strings; only `"`, `\` and whitespace
 * between tokens are escaped, each to two bytes), so small bodies skip the
 * exact measurement.
 */
export function fitsInline(m: RouterMessage, body: string, bodyBytes: number, limit = INLINE_MESSAGE_LIMIT): boolean {
  if (bodyBytes * 2 + 2_048 <= limit) return true;
  if (bodyBytes > limit) return false;
  return messageBytes({ ...m, body }) <= limit;
}

export function isRouterMessage(v: unknown): v is RouterMessage {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Partial<RouterMessage>;
  return (
    m.v === 1 &&
    typeof m.id === 'string' &&
    typeof m.type === 'string' &&
    (typeof m.body === 'string' || (typeof m.body_ref === 'object' && m.body_ref !== null && typeof m.body_ref.shard === 'string'))
  );
}

/** sendBatch accepts at most 100 messages and 256 KB; keep a margin for per-message overhead. */
const BATCH_MAX_MESSAGES = 100;
const BATCH_MAX_BYTES = 240_000;

/**
 * Splits items into `sendBatch` calls within the platform's limits (count and
 * bytes), in order, packing greedily (next-fit): the consumer reserves its
 * budget with the same packing.
 */
export function chunkForSendBatch<T>(items: readonly T[], messageOf: (item: T) => RouterMessage): T[][] {
  return packNextFit(items.map((item) => ({ item, bytes: messageBytes(messageOf(item)) + 256 }))).map((chunk) => chunk.map((c) => c.item));
}

/** How many sendBatch calls next-fit packing of messages of these sizes takes. */
export function sendBatchCount(sizes: readonly number[]): number {
  return packNextFit(sizes.map((bytes) => ({ item: bytes, bytes }))).length;
}

/**
 * Next-fit packing, in order: a chunk closes when the next item would take it
 * past `maxBytes` or `maxItems`; an item larger than `maxBytes` goes alone.
 */
export function packNextFit<T>(
  items: readonly { item: T; bytes: number }[],
  maxBytes = BATCH_MAX_BYTES,
  maxItems = BATCH_MAX_MESSAGES,
): { item: T; bytes: number }[][] {
  const chunks: { item: T; bytes: number }[][] = [];
  let current: { item: T; bytes: number }[] = [];
  let size = 0;
  for (const it of items) {
    if (current.length > 0 && (current.length >= maxItems || size + it.bytes > maxBytes)) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(it);
    size += it.bytes;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
