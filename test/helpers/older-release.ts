/**
 * Rows an older release of the router left in a ledger (its single `ledger`
 * table: claims and committed rows). Written straight into the object's
 * SQLite, then the object is restarted, as deploying this release restarts
 * every object: a ledger learns whether it holds such rows when it starts.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import type { DedupLedger } from '../../src/dedup/ledger';

/** Returns a new stub: the one given is broken by the restart. */
export async function asOlderRelease(stub: DurableObjectStub<DedupLedger>, write: (sql: SqlStorage) => void): Promise<DurableObjectStub<DedupLedger>> {
  await runInDurableObject(stub, (_i, state) => write(state.storage.sql));
  await runInDurableObject(stub, (_i, state) => state.abort('restart: the new release is deployed')).catch(() => undefined);
  return env.DEDUP_LEDGER.get(stub.id) as DurableObjectStub<DedupLedger>;
}
