/**
 * The destination registry writes a healthy destination's success-only
 * reports at most once per HEALTH_FLUSH_MS (rows written are billed), yet
 * every read of health or counters sees them, and anything about a failure is
 * written at once with what waited.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { type DestinationRegistry, HEALTH_FLUSH_MS } from '../../src/destinations/registry';

function fresh(): DurableObjectStub<DestinationRegistry> {
  return env.DESTINATIONS.get(env.DESTINATIONS.idFromName(`registry-health-${crypto.randomUUID()}`)) as DurableObjectStub<DestinationRegistry>;
}

/** What storage holds (not what health() answers, which first writes what waits). */
async function stored(stub: DurableObjectStub<DestinationRegistry>, name: string) {
  return runInDurableObject(stub, (_i, state) =>
    state.storage.sql
      .exec<{ delivered: number; failed: number; last_success_at: number | null }>('SELECT delivered, failed, last_success_at FROM destinations WHERE name = ?', name)
      .toArray()[0],
  );
}

const ok = (n: number, at: number) => ({ delivered: n, failed: 0, retryable_failures: 0, trailing_failures: 0, last_success_at: at });
const policy = { crm: { failures: 20, cooldownSeconds: 60 } };

describe('destination registry: success reports coalesced', () => {
  it('a new destination is written at once; later success-only batches wait, and a read sees them', async () => {
    const reg = fresh();
    const t0 = Date.now();
    await reg.report({ crm: ok(10, t0) }, policy);
    expect(await stored(reg, 'crm')).toEqual({ delivered: 10, failed: 0, last_success_at: t0 });
    for (let i = 1; i <= 5; i++) await reg.report({ crm: ok(10, t0 + i) }, policy);
    // Nothing more written yet, and an alarm is set for the write.
    expect(await stored(reg, 'crm')).toEqual({ delivered: 10, failed: 0, last_success_at: t0 });
    expect(await runInDurableObject(reg, (_i, state) => state.storage.getAlarm())).not.toBeNull();
    // A read writes what waited first.
    const [h] = await reg.health(['crm']);
    expect(h).toMatchObject({ delivered: 60, failed: 0, last_success_at: new Date(t0 + 5).toISOString() });
    expect(await stored(reg, 'crm')).toEqual({ delivered: 60, failed: 0, last_success_at: t0 + 5 });
  });

  it('the alarm writes what waited once the window has passed', async () => {
    const reg = fresh();
    const t0 = Date.now();
    await reg.report({ crm: ok(1, t0) }, policy);
    await reg.report({ crm: ok(2, t0 + 1) }, policy);
    expect((await stored(reg, 'crm'))?.delivered).toBe(1);
    const alarm = await runInDurableObject(reg, (_i, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThanOrEqual(t0 + HEALTH_FLUSH_MS - 1000);
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    expect((await stored(reg, 'crm'))?.delivered).toBe(3);
  });

  it('a failure is written at once, together with the successes that waited, and counts toward the circuit', async () => {
    const reg = fresh();
    const t0 = Date.now();
    await reg.report({ crm: ok(4, t0) }, policy);
    await reg.report({ crm: ok(4, t0 + 1) }, policy);
    await reg.report({ crm: { delivered: 0, failed: 3, retryable_failures: 3, trailing_failures: 3, last_failure_at: t0 + 2, last_error: 'http_503', failure_classes: { http_5xx: 3 } } }, policy);
    expect(await stored(reg, 'crm')).toEqual({ delivered: 8, failed: 3, last_success_at: t0 + 1 });
    const [h] = await reg.health(['crm']);
    expect(h).toMatchObject({ consecutive_failures: 3, last_error: 'http_503' });
    // With a failure streak, a success is written at once (it resets the streak).
    await reg.report({ crm: ok(1, t0 + 3) }, policy);
    expect(await stored(reg, 'crm')).toMatchObject({ delivered: 9 });
    expect((await reg.health(['crm']))[0]).toMatchObject({ consecutive_failures: 0 });
  });

  it('metrics read through counters() and health() see every success', async () => {
    const t0 = Date.now();
    const waiting = async () => {
      const reg = fresh();
      for (let i = 0; i < 4; i++) await reg.report({ crm: ok(5, t0 + i) }, policy);
      // Only the first report is written: 15 deliveries wait in memory.
      expect((await stored(reg, 'crm'))?.delivered).toBe(5);
      return reg;
    };
    // counters() holds no per-destination delivered count (successes add no
    // counter row): what it sees is storage, which it first brings up to 20,
    // so the /admin/metrics read made with it finds all 20.
    const viaCounters = await waiting();
    await viaCounters.counters();
    expect((await stored(viaCounters, 'crm'))?.delivered).toBe(20);
    expect((await viaCounters.health(['crm']))[0]).toMatchObject({ delivered: 20 });
    // health() on its own answers all 20, and writes them.
    const viaHealth = await waiting();
    expect((await viaHealth.health(['crm']))[0]).toMatchObject({ delivered: 20, failed: 0, last_success_at: new Date(t0 + 3).toISOString() });
    expect((await stored(viaHealth, 'crm'))?.delivered).toBe(20);
    // Read together, as /admin/metrics does.
    const both = await waiting();
    const [, health] = await Promise.all([both.counters(), both.health(['crm'])]);
    expect(health[0]).toMatchObject({ delivered: 20 });
    expect((await stored(both, 'crm'))?.delivered).toBe(20);
  });
});
