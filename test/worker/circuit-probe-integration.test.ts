/**
 * One circuit probe at a time: after sending a probe the registry waits for
 * its report (which sets the next probe), and sends another only if none
 * comes for PROBE_REPORT_WAIT_MS. Before, it sent one every cooldown whether
 * or not the last had reported, so during a queue backlog probes piled up and
 * reached the still-open destination together.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { heldStub } from '../../src/destinations/held';
import { PROBE_REPORT_WAIT_MS, registryStub } from '../../src/destinations/registry';
import { sampleEvent } from '../helpers/webhook';

describe('circuit probes', () => {
  it('a probe that has not reported yet is not followed by another one a cooldown later', async () => {
    const name = `probe-${crypto.randomUUID()}`;
    const reg = registryStub(env);
    await reg.report({ [name]: { delivered: 0, failed: 1, retryable_failures: 1, trailing_failures: 1 } }, { [name]: { failures: 1, cooldownSeconds: 1 } });
    expect((await reg.health([name]))[0]).toMatchObject({ circuit: 'open' });
    const held = heldStub(env, name);
    const items = [0, 1].map(() => {
      const e = sampleEvent();
      return { event_id: e.id as string, event_type: e.event as string, created_at: e.created_at as string, source: 'webhook' as const, stale: false, accepted_at: Date.now(), attempts: 1, rules: ['r'], body: JSON.stringify(e) };
    });
    await held.hold(name, items);
    // The cooldown has passed: the alarm sends the first probe.
    await runInDurableObject(reg, (_i, state) => state.storage.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', Date.now() - 1, name));
    await runDurableObjectAlarm(reg);
    expect(await held.count()).toBe(1);
    const next = Date.parse((await reg.health([name]))[0]?.next_probe_at as string);
    expect(next - Date.now()).toBeGreaterThan(PROBE_REPORT_WAIT_MS - 5_000);
    // A cooldown later, with no report: no second probe.
    await new Promise((r) => setTimeout(r, 1_100));
    await runInDurableObject(reg, (_i, state) => state.storage.setAlarm(Date.now()));
    await runDurableObjectAlarm(reg);
    expect(await held.count()).toBe(1);
  });
});
