/** Stable shard selection for the dedup ledger: FNV-1a (32-bit) of the event id. */
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

export function ledgerStub(env: Env, id: string, shards: number) {
  const name = shardName(shardOf(id, shards));
  return { name, stub: env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(name)) };
}

export function ledgerStubByName(env: Env, name: string) {
  return env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(name));
}
