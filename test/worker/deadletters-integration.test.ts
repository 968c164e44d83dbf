/**
 * The dead-letter store Durable Object: the record builder, stale/source
 * marks through add/list/take/restore, deletion, the column migration of a
 * table created by an older release, and the retention sweep run by its
 * alarm. Each test uses its own store instance (the admin API's is "global").
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeadLetterStore, type DeadLetterInput, SWEEP_INTERVAL_MS, deadLetterRecord } from '../../src/deadletters/store';
import { makeEvent } from '../fixtures/events';
import { WORKERS_ROUTER } from './router';

const DAY = 86_400_000;

afterEach(() => vi.restoreAllMocks());

function freshStore() {
  return env.DEAD_LETTERS.get(env.DEAD_LETTERS.idFromName(`test-${crypto.randomUUID()}`));
}

function record(overrides: Partial<DeadLetterInput> = {}): DeadLetterInput {
  const e = makeEvent('user.created');
  return deadLetterRecord({ event_id: e.id, event_type: e.event, destination: 'audit', reason: 'http_404', last_status: 404, attempts: 1, body: JSON.stringify(e), ...overrides });
}

/** Moves a record's time of death `daysAgo` into the past. */
async function backdate(stub: ReturnType<typeof freshStore>, eventId: string, daysAgo: number) {
  await runInDurableObject(stub, (_i, state) => {
    const n = state.storage.sql.exec('UPDATE dead_letters SET dead_at = ? WHERE event_id = ?', Date.now() - daysAgo * DAY, eventId).rowsWritten;
    expect(n).toBe(1);
  });
}

/** Runs the store's alarm with `router` as its ROUTER configuration. */
async function sweepWith(stub: ReturnType<typeof freshStore>, router: unknown): Promise<boolean> {
  const swapped = { ...env, ROUTER: router } as unknown as Env;
  const original = await runInDurableObject(stub, (instance) => {
    const holder = instance as unknown as { env: Env };
    const before = holder.env;
    holder.env = swapped;
    return before;
  });
  try {
    return await runDurableObjectAlarm(stub);
  } finally {
    await runInDurableObject(stub, (instance) => {
      (instance as unknown as { env: Env }).env = original;
    });
  }
}

async function idsIn(stub: ReturnType<typeof freshStore>): Promise<string[]> {
  return (await stub.list(500, 0)).map((i) => i.event_id);
}

describe('deadLetterRecord', () => {
  it('fills the defaults: no rules, no status, no attempts; marks only when given', () => {
    const r = deadLetterRecord({ event_id: 'event_1', event_type: 'user.created', destination: 'audit', reason: 'http_404', body: '{}' });
    expect(r).toEqual({ event_id: 'event_1', event_type: 'user.created', destination: 'audit', rules: [], reason: 'http_404', last_status: null, attempts: 0, body: '{}' });
    expect(r).not.toHaveProperty('stale');
    expect(r).not.toHaveProperty('source');
    const full = deadLetterRecord({ event_id: 'e', event_type: 't', destination: 'd', reason: 'r', body: 'b', rules: ['x'], last_status: 500, attempts: 3, stale: true, source: 'reconcile' });
    expect(full).toMatchObject({ rules: ['x'], last_status: 500, attempts: 3, stale: true, source: 'reconcile' });
  });
});

describe('dead-letter store', () => {
  it('carries stale and source through add, list and take; absent marks stay absent', async () => {
    const stub = freshStore();
    const marked = record({ stale: true, source: 'reconcile' });
    const unmarked = record();
    const fresh = record({ stale: false, source: 'webhook' });
    await stub.add([marked, unmarked, fresh]);
    const items = await stub.list(500, 0);
    expect(items.map((i) => i.event_id)).toEqual([marked.event_id, unmarked.event_id, fresh.event_id]);
    expect(items[0]).toMatchObject({ stale: true, source: 'reconcile' });
    expect(items[0]).not.toHaveProperty('body');
    expect(items[1]).not.toHaveProperty('stale');
    expect(items[1]).not.toHaveProperty('source');
    expect(items[2]).toMatchObject({ stale: false, source: 'webhook' });
    const taken = await stub.take(items[0]!.seq);
    expect(taken).toMatchObject({ ...marked, seq: items[0]!.seq });
    expect(await stub.take(items[0]!.seq)).toBeNull();
  });

  it('a record written again under its key (a call made again after its answer was lost) is kept once, and alerted once', async () => {
    const stub = freshStore();
    const a = record({ key: 'held:audit:7' });
    const b = record({ key: 'held:audit:8' });
    const unkeyed = record();
    const logs = vi.spyOn(console, 'warn');
    await stub.add([a, b, unkeyed]);
    // The same call again, with a record it did not carry before; and the unkeyed record once more (no key: kept again).
    const c = record({ key: 'held:audit:9' });
    await stub.add([{ ...a }, { ...b }, c, { ...unkeyed }]);
    expect((await stub.list(500, 0)).map((d) => d.event_id)).toEqual([a.event_id, b.event_id, unkeyed.event_id, c.event_id, unkeyed.event_id]);
    const lines = logs.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('"msg":"dead_letters_already_stored"'));
    expect(lines.map((l) => JSON.parse(l))).toEqual([{ level: 'warn', msg: 'dead_letters_already_stored', count: 2 }]);
    // A key is the record's while it is stored: once it is gone, the key may be used again.
    const [first] = await stub.list(1, 0);
    expect(await stub.remove(first!.seq)).toBe('deleted');
    await stub.add([{ ...a }]);
    expect((await stub.list(500, 0)).filter((d) => d.event_id === a.event_id)).toHaveLength(1);
  });

  it('remove deletes one record and says whether there was one', async () => {
    const stub = freshStore();
    const a = record();
    const b = record();
    await stub.add([a, b]);
    const [first] = await stub.list(1, 0);
    expect(await stub.remove(first!.seq)).toBe('deleted');
    expect(await stub.remove(first!.seq)).toBe('not_found');
    expect(await stub.remove(123_456_789)).toBe('not_found');
    expect(await idsIn(stub)).toEqual([b.event_id]);
    expect(await stub.count()).toBe(1);
  });

  it('adds the stale and source columns to a table created by an older release, keeping its rows', async () => {
    const stub = freshStore();
    await stub.count(); // instantiate
    const old = makeEvent('user.created');
    const columns = await runInDurableObject(stub, async (_instance, state) => {
      const sql = state.storage.sql;
      // The first release's table, with one record in it.
      sql.exec('DROP TABLE dead_letters');
      sql.exec(`CREATE TABLE dead_letters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, event_type TEXT NOT NULL, destination TEXT NOT NULL,
        rules TEXT NOT NULL, reason TEXT NOT NULL, last_status INTEGER, attempts INTEGER NOT NULL, body TEXT NOT NULL, dead_at INTEGER NOT NULL)`);
      sql.exec(
        'INSERT INTO dead_letters (event_id, event_type, destination, rules, reason, last_status, attempts, body, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        old.id, old.event, 'audit', '["everything-to-audit"]', 'http_500', 500, 10, JSON.stringify(old), Date.now(),
      );
      // A new release's object starting on that storage; twice, as every wake-up does.
      const upgraded = new DeadLetterStore(state, env);
      new DeadLetterStore(state, env);
      const cols = sql.exec<{ name: string }>('PRAGMA table_info(dead_letters)').toArray().map((c) => c.name);
      const listed = await upgraded.list(500, 0);
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({ event_id: old.id, rules: ['everything-to-audit'], reason: 'http_500', last_status: 500, attempts: 10 });
      expect(listed[0]).not.toHaveProperty('stale');
      expect(listed[0]).not.toHaveProperty('source');
      const added = record({ stale: true, source: 'reconcile' });
      await upgraded.add([added]);
      expect((await upgraded.list(500, 0))[1]).toMatchObject({ event_id: added.event_id, stale: true, source: 'reconcile' });
      expect((await upgraded.take(listed[0]!.seq))?.body).toBe(JSON.stringify(old));
      return cols;
    });
    expect(columns).toEqual(expect.arrayContaining(['stale', 'source', 'dead_at', 'body']));
  });
});

describe('dead-letter retention', () => {
  it('adding records schedules the hourly sweep once; the sweep removes records older than the retention (default 30 days) and logs counts only', async () => {
    const stub = freshStore();
    const start = Date.now();
    const old = record({ body: '{"secret_payload":"do-not-log"}' });
    const young = record();
    await stub.add([old, young]);
    const alarmAt = await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    expect(alarmAt).not.toBeNull();
    expect(alarmAt! - start).toBeGreaterThanOrEqual(SWEEP_INTERVAL_MS - 1_000);
    expect(alarmAt! - start).toBeLessThanOrEqual(SWEEP_INTERVAL_MS + 60_000);
    await backdate(stub, old.event_id, 30.5);
    await backdate(stub, young.event_id, 29.5);
    const info = vi.spyOn(console, 'log');
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await idsIn(stub)).toEqual([young.event_id]);
    const lines = info.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('dead_letter_sweep'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual({ level: 'info', msg: 'dead_letter_sweep', removed: 1, left: 1, retention_days: 30 });
    expect(lines[0]).not.toContain('do-not-log');
    // Records remain: the next sweep is an hour away, not sooner.
    const next = await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    expect(next! - Date.now()).toBeGreaterThan(SWEEP_INTERVAL_MS - 60_000);
  });

  it('stops the alarm once the store is empty, and schedules it again on the next add', async () => {
    const stub = freshStore();
    const r = record();
    await stub.add([r]);
    await backdate(stub, r.event_id, 31);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.count()).toBe(0);
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(false);
    await stub.add([record()]);
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).not.toBeNull();
  });

  it('reads the alarm state once per instance, not on every add', async () => {
    const stub = freshStore();
    const reads = await runInDurableObject(stub, async (instance, state) => {
      const getAlarm = vi.spyOn(state.storage, 'getAlarm');
      await instance.add([record()]);
      await instance.add([record()]);
      await instance.add([record(), record()]);
      return getAlarm.mock.calls.length;
    });
    expect(reads).toBeLessThanOrEqual(1);
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).not.toBeNull();
  });

  it('an alarm that failed (and that the platform then dropped) is set again by the next add: the sweep does not stop until a restart', async () => {
    const stub = freshStore();
    await stub.add([record()]);
    // The sweep's storage fails (a simulated storage error), every retry of the alarm alike.
    const failing = await runInDurableObject(stub, (_i, state) => {
      const sql = state.storage.sql;
      const exec = sql.exec.bind(sql);
      return vi.spyOn(sql, 'exec').mockImplementation(((query: string, ...bindings: SqlStorageValue[]) => {
        if (query.startsWith('DELETE FROM dead_letters WHERE dead_at')) throw new Error('SQLITE_IOERR');
        return exec(query, ...bindings);
      }) as typeof sql.exec);
    });
    await expect(runDurableObjectAlarm(stub)).rejects.toThrow(/SQLITE_IOERR/);
    failing.mockRestore();
    // The platform gives up on it: no alarm is left.
    await runInDurableObject(stub, (_i, state) => state.storage.deleteAlarm());
    await stub.add([record()]);
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).not.toBeNull();
  });

  it('an instance waking up with records but no alarm (written before the sweep existed) schedules one', async () => {
    const stub = freshStore();
    await stub.add([record()]);
    await runInDurableObject(stub, async (_i, state) => {
      await state.storage.deleteAlarm();
      new DeadLetterStore(state, env);
      await vi.waitFor(async () => expect(await state.storage.getAlarm()).not.toBeNull());
    });
  });

  it('honours dead_letter_retention_days', async () => {
    const stub = freshStore();
    const older = record();
    const newer = record();
    await stub.add([older, newer]);
    await backdate(stub, older.event_id, 7.5);
    await backdate(stub, newer.event_id, 6.5);
    const router = { ...WORKERS_ROUTER, dead_letter_retention_days: 7 };
    const log = vi.spyOn(console, 'log');
    expect(await sweepWith(stub, router)).toBe(true);
    expect(await idsIn(stub)).toEqual([newer.event_id]);
    expect(log.mock.calls.map((c) => String(c[0])).find((l) => l.includes('dead_letter_sweep'))).toContain('"retention_days":7');
  });

  it('with an invalid config, sweeps with the default 30 days, never faster', async () => {
    const stub = freshStore();
    const past = record();
    const within = record();
    await stub.add([past, within]);
    await backdate(stub, past.event_id, 31);
    await backdate(stub, within.event_id, 10);
    // Broken JSON: the default applies.
    expect(await sweepWith(stub, '{not json')).toBe(true);
    expect(await idsIn(stub)).toEqual([within.event_id]);
    // Invalid elsewhere, with a shorter retention set: still not swept sooner than the default.
    const base: Record<string, unknown> = WORKERS_ROUTER;
    expect(await sweepWith(stub, { ...base, dead_letter_retention_days: 2, no_such_knob: true })).toBe(true);
    expect(await idsIn(stub)).toEqual([within.event_id]);
    // Invalid elsewhere, with a longer retention set: kept for the longer time.
    await backdate(stub, within.event_id, 45);
    expect(await sweepWith(stub, { ...base, dead_letter_retention_days: 60, no_such_knob: true })).toBe(true);
    expect(await idsIn(stub)).toEqual([within.event_id]);
    // The same as a string of digits, which the config itself accepts (`= "60"` in TOML).
    expect(await sweepWith(stub, { ...base, dead_letter_retention_days: '60', no_such_knob: true })).toBe(true);
    expect(await idsIn(stub)).toEqual([within.event_id]);
    expect(await sweepWith(stub, JSON.stringify({ ...base, dead_letter_retention_days: 'sixty', no_such_knob: true }))).toBe(true);
    expect(await idsIn(stub)).toEqual([]);
  });
});
