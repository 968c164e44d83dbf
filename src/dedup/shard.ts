/**
 * Stable shard selection for the dedup ledger: FNV-1a (32-bit) of the event's
 * shard key. The key is the object the event is about (`<family>:<data.id>`)
 * when the payload names one, else the event id. Every delivery of one event
 * carries the same payload, so it always meets the same shard (dedup holds),
 * and all events about one object meet there too (the out-of-order check).
 */
import type { UnknownEvent } from '../events/catalog';

/** `dsync.user.updated` → `dsync.user`; `user.deleted` → `user`. */
export function objectFamily(type: string): string {
  const dot = type.lastIndexOf('.');
  return dot === -1 ? type : type.slice(0, dot);
}

/** The object an event is about, or undefined when its payload has no `data.id`. */
export function objectKeyOf(event: UnknownEvent): string | undefined {
  const id = (event.data as { id?: unknown }).id;
  return typeof id === 'string' && id.length > 0 && id.length <= 256 ? `${objectFamily(event.event)}:${id}` : undefined;
}

export function shardKeyOf(event: UnknownEvent): string {
  return objectKeyOf(event) ?? event.id;
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

export function ledgerStubByName(env: Env, name: string) {
  return env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(name));
}
