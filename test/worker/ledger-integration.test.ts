/**
 * The ledger's housekeeping (defect 14 of the delivery-promises issue): the
 * sweep used to stop once the ledger table was empty, leaving replay bodies,
 * ordering records and crash-left claims unswept for ever.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it, vi } from 'vitest';
import { DedupLedger, ORDER_AHEAD_LIMIT_MS, SWEEP_INTERVAL_MS } from '../../src/dedup/ledger';
import { asOlderRelease } from '../helpers/older-release';

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
    const past = Date.now() - 1;
    const stub = await asOlderRelease(fresh(), (sql) => {
      sql.exec('INSERT INTO objects (key, newest_ms, deleted, expires_at) VALUES (?, ?, ?, ?)', 'user:u1', 1, 0, past);
      sql.exec('INSERT INTO objects (key, newest_ms, deleted, expires_at) VALUES (?, ?, ?, ?)', 'user:u2', 1, 0, Date.now() + 86_400_000);
      sql.exec("INSERT INTO ledger (id, state, lease_until, expires_at, source) VALUES ('event_crashed', 'pending', ?, ?, 'webhook')", past, past);
    });
    await runInDurableObject(stub, (_i, state) => state.storage.setAlarm(Date.now() + 60_000));
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

describe('ledger day tables', () => {
  const req = (id: string, created_at: string) => ({
    id,
    type: 'user.created',
    created_at,
    body: JSON.stringify({ id, event: 'user.created', created_at, data: {} }),
    bodyBytes: 64,
    source: 'webhook' as const,
    shard: 'ledger-day-tables',
    retentionMs: 30 * 86_400_000,
  });

  it('files each event under the UTC day of its created_at, and a copy finds it there', async () => {
    const stub = fresh();
    expect(await stub.admit(req('event_day_a', '2026-11-27T23:59:59.000Z'))).toEqual({ status: 'accepted' });
    expect(await stub.admit(req('event_day_b', '2026-11-28T00:00:00.000Z'))).toEqual({ status: 'accepted' });
    expect(await stub.admit(req('event_day_a', '2026-11-27T23:59:59.000Z'))).toEqual({ status: 'duplicate' });
    const days = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql.exec<{ name: string; drop_at: number }>('SELECT name, drop_at FROM ledger_days ORDER BY name').toArray(),
    );
    expect(days).toEqual([
      { name: 'ledger_d20261127', drop_at: Date.UTC(2026, 10, 28) + 30 * 86_400_000 },
      { name: 'ledger_d20261128', drop_at: Date.UTC(2026, 10, 29) + 30 * 86_400_000 },
    ]);
    expect(await stub.getBody('event_day_b')).toContain('event_day_b');
  });

  it('an event whose created_at is not an ISO time is filed under its arrival day, and a copy arriving on a later day is still a duplicate', async () => {
    for (const created_at of ['not a date', '1', 'Sun, 29 Nov 2026 01:00:00 GMT']) {
      const id = `event_undated_${crypto.randomUUID()}`;
      let stub = fresh();
      expect(await stub.admit(req(id, created_at))).toEqual({ status: 'accepted' });
      const today = DedupLedger.dayTable(created_at, Date.now());
      expect(today).toBe(DedupLedger.dayTable(new Date().toISOString(), Date.now()));
      // A day passes: its row now sits in yesterday's table (the object restarts, as it does between days).
      stub = await asOlderRelease(stub, (sql) => {
        sql.exec(`ALTER TABLE ${today} RENAME TO ledger_d20000101`);
        sql.exec("UPDATE ledger_days SET name = 'ledger_d20000101' WHERE name = ?", today);
      });
      expect(await stub.admit(req(id, created_at)), created_at).toEqual({ status: 'duplicate' });
    }
  });

  it('still honours rows an older release wrote to the single `ledger` table', async () => {
    const later = Date.now() + 86_400_000;
    const stub = await asOlderRelease(fresh(), (sql) =>
      sql.exec("INSERT INTO ledger (id, state, lease_until, expires_at, source, body) VALUES ('event_old_release', 'committed', 0, ?, 'webhook', 'old body')", later),
    );
    expect(await stub.admit(req('event_old_release', new Date().toISOString()))).toEqual({ status: 'duplicate' });
    expect(await stub.isCommitted('event_old_release')).toBe(true);
    expect(await stub.getBody('event_old_release')).toBe('old body');
  });

  it('looks in the old `ledger` table only while it holds rows: none after a fresh start, none once the sweep has emptied it', async () => {
    /** The SQL of one admission, observed on the object's own storage. */
    const statementsOf = (stub: DurableObjectStub<DedupLedger>, id: string) =>
      runInDurableObject(stub, async (instance, state) => {
        const exec = vi.spyOn(state.storage.sql, 'exec');
        try {
          expect(await instance.admit(req(id, new Date().toISOString()))).toEqual({ status: 'accepted' });
          return exec.mock.calls.map((c) => String(c[0]));
        } finally {
          exec.mockRestore();
        }
      });
    const readsOld = (sql: string[]) => sql.some((q) => /\bFROM ledger\b/.test(q));
    expect(readsOld(await statementsOf(fresh(), 'event_new_only'))).toBe(false);
    const past = Date.now() - 1;
    const stub = await asOlderRelease(fresh(), (sql) =>
      sql.exec("INSERT INTO ledger (id, state, lease_until, expires_at, source) VALUES ('event_old_claim', 'pending', ?, ?, 'webhook')", past, past),
    );
    expect(readsOld(await statementsOf(stub, 'event_while_old'))).toBe(true);
    await runDurableObjectAlarm(stub);
    expect(await counts(stub)).toMatchObject({ ledger: 0 });
    expect(readsOld(await statementsOf(stub, 'event_after_sweep'))).toBe(false);
  });

  it('drops a day once its retention has passed, keeps the others, and stops sweeping when nothing is left', async () => {
    const stub = fresh();
    await stub.admit(req('event_drop_a', '2026-11-27T12:00:00.000Z'));
    await stub.admit(req('event_drop_b', '2026-11-28T12:00:00.000Z'));
    await runInDurableObject(stub, (_i, state) => state.storage.sql.exec("UPDATE ledger_days SET drop_at = ? WHERE name = 'ledger_d20261127'", Date.now() - 1));
    await runDurableObjectAlarm(stub);
    expect(await stub.isCommitted('event_drop_a')).toBe(false);
    expect(await stub.isCommitted('event_drop_b')).toBe(true);
    let c = await counts(stub);
    expect(c.alarm).not.toBeNull();
    await runInDurableObject(stub, (_i, state) => state.storage.sql.exec('UPDATE ledger_days SET drop_at = ?', Date.now() - 1));
    await runDurableObjectAlarm(stub);
    expect(await stub.isCommitted('event_drop_b')).toBe(false);
    const tables = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name GLOB 'ledger_d[0-9]*'").toArray());
    expect(tables).toEqual([]);
    c = await counts(stub);
    expect(c.alarm).toBeNull();
  });
});

describe('ledger admitMany (a reconciliation page for one shard)', () => {
  const about = (id: string, type: string, createdAtMs: number) => ({
    id,
    type,
    created_at: new Date(createdAtMs).toISOString(),
    body: JSON.stringify({ id, event: type, created_at: new Date(createdAtMs).toISOString(), data: { id: 'user_many' } }),
    bodyBytes: 96,
    source: 'reconcile' as const,
    shard: 'ledger-admit-many',
    retentionMs: 30 * 86_400_000,
    ordering: { key: 'user:user_many', kind: 'object' as const, createdAtMs, deletion: type.endsWith('.deleted') },
  });

  it('judges events about one object in the order given, answers each, and a copy within the call is a duplicate', async () => {
    const stub = fresh();
    const t = Date.now() - 60_000;
    const results = await stub.admitMany([
      about('event_many_1', 'user.created', t),
      about('event_many_2', 'user.updated', t + 1_000),
      about('event_many_3', 'user.deleted', t + 2_000),
      about('event_many_2', 'user.updated', t + 1_000),
      about('event_many_4', 'user.updated', t + 3_000),
    ]);
    expect(results).toEqual([
      { status: 'accepted' },
      { status: 'accepted' },
      { status: 'accepted' },
      { status: 'duplicate' },
      { status: 'accepted', stale: true }, // after the deletion
    ]);
    for (const id of ['event_many_1', 'event_many_2', 'event_many_3', 'event_many_4']) expect(await stub.isCommitted(id)).toBe(true);
  });

  it('answers unavailable for an event whose enqueue fails, and accepts the others', async () => {
    const stub = fresh();
    const t = Date.now() - 60_000;
    await runInDurableObject(stub, (instance) => {
      const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
      const original = queue.send.bind(queue);
      vi.spyOn(queue, 'send').mockImplementation(async (message, options) => {
        if ((message as { id: string }).id === 'event_many_fail') throw new Error('queue unavailable');
        return original(message, options);
      });
    });
    const results = await stub.admitMany([
      { ...about('event_many_ok', 'user.created', t), ordering: undefined },
      { ...about('event_many_fail', 'user.created', t), ordering: undefined },
    ]);
    vi.restoreAllMocks();
    expect(results).toEqual([{ status: 'accepted' }, { status: 'unavailable' }]);
    expect(await stub.isCommitted('event_many_ok')).toBe(true);
    expect(await stub.isCommitted('event_many_fail')).toBe(false);
  });

  it('an admission that throws answers unavailable for its event only, logged without its body', async () => {
    const stub = fresh();
    const t = Date.now() - 60_000;
    const errors = vi.spyOn(console, 'error');
    // A simulated storage failure, at the platform's SQL API: the write of
    // that one event's ledger row fails (the disk is full), after its enqueue
    // (at-least-once: a retry is enqueued again); every other statement,
    // including the other event's row, really runs.
    const failedWrites: string[] = [];
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      const exec = sql.exec.bind(sql);
      vi.spyOn(sql, 'exec').mockImplementation(((query: string, ...bindings: SqlStorageValue[]) => {
        if (/^\s*INSERT\b[^(]*\bledger_d\d{8}\b/i.test(query) && bindings[0] === 'event_many_throws') {
          failedWrites.push(query);
          throw new Error('SQLITE_FULL');
        }
        return exec(query, ...bindings);
      }) as typeof sql.exec);
    });
    const results = await stub.admitMany([
      { ...about('event_many_throws', 'user.created', t), ordering: undefined },
      { ...about('event_many_fine', 'user.created', t), ordering: undefined },
    ]);
    vi.restoreAllMocks();
    expect(failedWrites).toHaveLength(1); // the failure did come from storage
    expect(results).toEqual([{ status: 'unavailable' }, { status: 'accepted' }]);
    const line = errors.mock.calls.map((c) => String(c[0])).find((l) => l.includes('"msg":"ledger_admit_failed"'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ level: 'error', event_id: 'event_many_throws', error: 'Error: SQLITE_FULL' });
    expect(line).not.toContain('user_many'); // nothing of the payload
    expect(await stub.isCommitted('event_many_throws')).toBe(false);
  });
});

describe('ordering: an event dated far ahead of the clock', () => {
  const about = (id: string, createdAtMs: number) => ({
    id,
    type: 'user.updated',
    created_at: new Date(createdAtMs).toISOString(),
    body: JSON.stringify({ id, event: 'user.updated', created_at: new Date(createdAtMs).toISOString(), data: { id: 'user_ahead', email: 'ahead@example.com' } }),
    bodyBytes: 128,
    source: 'webhook' as const,
    shard: 'ledger-ahead',
    retentionMs: 30 * 86_400_000,
    ordering: { key: 'user:user_ahead', kind: 'object' as const, createdAtMs, deletion: false },
  });

  it('moves the ordering record at most ORDER_AHEAD_LIMIT_MS past its arrival, so later events are not stale until that date, older ones still are', async () => {
    const stub = fresh();
    const warnings = vi.spyOn(console, 'warn');
    const before = Date.now();
    const [ahead] = await stub.admitMany([about('event_ahead_year', before + 365 * 86_400_000)]);
    const after = Date.now();
    expect(ahead).toEqual({ status: 'accepted' }); // itself delivered, unmarked
    const newest = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT newest_ms AS n FROM objects WHERE key = 'user:user_ahead'").one().n,
    );
    expect(newest).toBeGreaterThanOrEqual(before + ORDER_AHEAD_LIMIT_MS);
    expect(newest).toBeLessThanOrEqual(after + ORDER_AHEAD_LIMIT_MS);
    const line = warnings.mock.calls.map((c) => String(c[0])).find((l) => l.includes('"msg":"created_at_ahead"'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ level: 'warn', event_id: 'event_ahead_year', event: 'user.updated' });
    expect(JSON.parse(line ?? '{}').ahead_seconds).toBeGreaterThan(364 * 86_400);
    expect(line).not.toContain('ahead@example.com');
    warnings.mockRestore();
    const results = await stub.admitMany([
      about('event_after_window', after + ORDER_AHEAD_LIMIT_MS + 1_000), // dated after the bounded record: a later event
      about('event_hour_ago', before - 3_600_000), // older than the far-ahead event's arrival: still stale
    ]);
    expect(results).toEqual([{ status: 'accepted' }, { status: 'accepted', stale: true }]);
  });
});
