/**
 * The ledger's housekeeping (defect 14 of the delivery-promises issue): the
 * sweep used to stop once the ledger table was empty, leaving replay bodies,
 * ordering records and crash-left claims unswept for ever.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { type DedupLedger, SWEEP_INTERVAL_MS } from '../../src/dedup/ledger';

function fresh(): DurableObjectStub<DedupLedger> {
  return env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(`ledger-housekeeping-${crypto.randomUUID()}`)) as DurableObjectStub<DedupLedger>;
}

async function counts(stub: DurableObjectStub<DedupLedger>) {
  return runInDurableObject(stub, async (_i, state) => ({
    ledger: state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM ledger').one().n,
    bodies: state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM bodies').one().n,
    objects: state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM objects').one().n,
    alarm: await state.storage.getAlarm(),
  }));
}

describe('ledger sweep', () => {
  it('keeps sweeping while only a replay body is left, and removes it once expired', async () => {
    const stub = fresh();
    const until = Date.now() + 2 * SWEEP_INTERVAL_MS;
    await stub.storeBody('event_replayed', '{"id":"event_replayed"}', until);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    let c = await counts(stub);
    expect(c).toMatchObject({ ledger: 0, bodies: 1 });
    expect(c.alarm).not.toBeNull(); // the ledger table is empty, yet the sweep continues
    await runInDurableObject(stub, (_i, state) => state.storage.sql.exec('UPDATE bodies SET expires_at = ?', Date.now() - 1));
    await runDurableObjectAlarm(stub);
    c = await counts(stub);
    expect(c).toMatchObject({ bodies: 0, alarm: null });
  });

  it('sweeps ordering records and crash-left claims once they expire', async () => {
    const stub = fresh();
    await runInDurableObject(stub, async (_i, state) => {
      const past = Date.now() - 1;
      state.storage.sql.exec('INSERT INTO objects (key, newest_ms, deleted, expires_at) VALUES (?, ?, ?, ?)', 'user:u1', 1, 0, past);
      state.storage.sql.exec('INSERT INTO objects (key, newest_ms, deleted, expires_at) VALUES (?, ?, ?, ?)', 'user:u2', 1, 0, Date.now() + 86_400_000);
      state.storage.sql.exec("INSERT INTO ledger (id, state, lease_until, expires_at, source) VALUES ('event_crashed', 'pending', ?, ?, 'webhook')", past, past);
      await state.storage.setAlarm(Date.now() + 60_000);
    });
    await runDurableObjectAlarm(stub);
    const c = await counts(stub);
    expect(c).toMatchObject({ ledger: 0, objects: 1 });
    expect(c.alarm).not.toBeNull(); // user:u2 still has to be swept later
  });

  it('extendBody never shortens a body’s life and says when the body is gone', async () => {
    const stub = fresh();
    const far = Date.now() + 10 * 86_400_000;
    await stub.storeBody('event_a', 'x', far);
    expect(await stub.extendBody('event_a', Date.now() + 1_000)).toBe(true);
    expect(await runInDurableObject(stub, (_i, s) => s.storage.sql.exec<{ e: number }>('SELECT expires_at AS e FROM bodies').one().e)).toBe(far);
    expect(await stub.extendBody('event_missing', far)).toBe(false);
  });
});
