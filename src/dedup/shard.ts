/**
 * Which ledger shard an event meets, and which object its ordering is kept
 * for.
 *
 * The shard is FNV-1a (32-bit) of the event's shard key: its ordering key when
 * it has one, else its event id. Every delivery of one event carries the same
 * payload, so it always meets the same shard (dedup holds), and all events
 * about one object meet there too (the out-of-order check rides on the same
 * single Durable Object request).
 */
import type { UnknownEvent } from '../events/catalog';

/** `dsync.user.updated` → `dsync.user`; `user.deleted` → `user`. */
export function objectFamily(type: string): string {
  const dot = type.lastIndexOf('.');
  return dot === -1 ? type : type.slice(0, dot);
}

/**
 * How the ledger orders events about one thing:
 * - `object`: a WorkOS object with its own id (`data.id`). Ids are never
 *   reused, so a deletion is final: it is always delivered, and anything about
 *   the object that arrives after it is stale. Otherwise an event older
 *   (`created_at`) than the newest one routed is stale.
 * - `subject`: something named by other ids or a slug, which can come back
 *   after it went away (a group membership, a role slug). The newest
 *   `created_at` wins, removals included: an add older than a removal
 *   already routed is stale, and a later re-add is not.
 */
export interface OrderingKey {
  key: string;
  kind: 'object' | 'subject';
}

const MAX_KEY_PART = 256;

function part(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_KEY_PART ? v : undefined;
}

function idOf(v: unknown): string | undefined {
  return typeof v === 'object' && v !== null ? part((v as { id?: unknown }).id) : undefined;
}

/**
 * The ordering key of an event, or undefined for events that are facts rather
 * than states (authentication attempts, certificate notices, vault access
 * logs, domain verification failures): each of those stands alone.
 */
export function orderingKeyOf(event: UnknownEvent): OrderingKey | undefined {
  const data = event.data as Record<string, unknown>;
  const id = part(data.id);
  if (id !== undefined) return { key: `${objectFamily(event.event)}:${id}`, kind: 'object' };
  const subject = (...parts: (string | undefined)[]): OrderingKey | undefined =>
    parts.every((p) => p !== undefined) ? { key: parts.join(':'), kind: 'subject' } : undefined;
  switch (objectFamily(event.event)) {
    case 'dsync.group': // dsync.group.user_added / user_removed
      return subject('dsync.group_membership', idOf(data.group), idOf(data.user));
    case 'group': // group.member_added / member_removed
      return subject('group_membership', part(data.group_id), part(data.organization_membership_id));
    case 'role':
      return subject('role', part(data.slug));
    case 'organization_role':
      return subject('organization_role', part(data.organization_id), part(data.slug));
    case 'vault.data': // vault.data.created / updated / deleted (read is a fact)
      return event.event === 'vault.data.read' ? undefined : subject('vault.data', part(data.kv_name));
    default:
      return undefined;
  }
}

export function shardKeyOf(event: UnknownEvent): string {
  return orderingKeyOf(event)?.key ?? event.id;
}

export function shardOf(id: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

export function shardName(index: number): string {
  return `ledger-${index}`;
}

export function ledgerStub(env: Env, key: string, shards: number) {
  const name = shardName(shardOf(key, shards));
  return { name, stub: env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(name)) };
}

/** The ledger shard that keeps this event's row and body. */
export function ledgerShardOf(event: UnknownEvent, shards: number): string {
  return shardName(shardOf(shardKeyOf(event), shards));
}

export function ledgerStubByName(env: Env, name: string) {
  return env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(name));
}
