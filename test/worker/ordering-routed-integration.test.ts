/**
 * Out-of-order protection counts the newest event *routed* about an object
 * (README). An event no rule routes reached nobody: it is deduplicated, but
 * it must not make an older event that is routed stale — under
 * `stale = "drop"` that event would be dropped, and its destination would
 * never learn what it says. Before, every committed event moved the record,
 * routed or not (README's own example excludes `dsync.group.updated`).
 * Through the real webhook handler and ledger, with a ROUTER of this test's.
 */
import { createExecutionContext, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { app } from '../../src/app';
import type { UnknownEvent } from '../../src/events/catalog';
import { ledgerShardOf, ledgerStubByName } from '../../src/dedup/shard';
import { testEnv } from '../helpers/consumer';
import { watchLogs } from '../helpers/observe';
import { webhookRequest } from '../helpers/webhook';

afterEach(() => vi.restoreAllMocks());

const ROUTER = {
  destinations: [{ name: 'latest', type: 'http', url: 'https://latest.example.test/groups' }],
  rules: [{ name: 'groups', events: ['dsync.group.*', '!dsync.group.updated'], to: ['latest'], stale: 'drop' }],
};

function groupEvent(type: string, group: string, createdAt: number): Record<string, unknown> {
  return {
    id: `event_${crypto.randomUUID().replace(/-/g, '').toUpperCase().slice(0, 26)}`,
    event: type,
    data: { id: group, object: 'directory_group', directory_id: 'directory_01', organization_id: 'org_01', name: 'Engineering' },
    created_at: new Date(createdAt).toISOString(),
  };
}

async function post(e: Record<string, unknown>): Promise<{ status: number; stale: boolean }> {
  const logs = watchLogs();
  const res = await app.request(await webhookRequest(e), undefined, testEnv(ROUTER), createExecutionContext());
  const line = logs.records().find((r) => r.msg === 'webhook' && r.event_id === e.id);
  return { status: res.status, stale: line?.stale === true };
}

async function newestMs(e: Record<string, unknown>): Promise<number | undefined> {
  const shard = ledgerShardOf(e as unknown as UnknownEvent, 16);
  return runInDurableObject(ledgerStubByName(env, shard), (_i, state) =>
    state.storage.sql.exec<{ newest_ms: number }>('SELECT newest_ms FROM objects WHERE key = ?', `dsync.group:${(e.data as { id: string }).id}`).toArray()[0]?.newest_ms,
  );
}

describe('out-of-order protection counts routed events only', () => {
  it('an update no rule routes, then an older created that is routed: the created is not stale (it was, and dropped)', async () => {
    const group = `directory_group_${crypto.randomUUID().slice(0, 8)}`;
    const t = Date.now() - 60_000;
    const updated = groupEvent('dsync.group.updated', group, t + 2_000);
    expect(await post(updated)).toEqual({ status: 200, stale: false });
    // Deduplicated all the same, but the object's record did not move.
    expect(await newestMs(updated)).toBeUndefined();
    const created = groupEvent('dsync.group.created', group, t);
    expect(await post(created)).toEqual({ status: 200, stale: false });
    expect(await newestMs(created)).toBe(t);
  });

  it('the same order with both routed: the older one is stale (the record moves for routed events)', async () => {
    const group = `directory_group_${crypto.randomUUID().slice(0, 8)}`;
    const t = Date.now() - 60_000;
    expect(await post(groupEvent('dsync.group.created', group, t + 2_000))).toEqual({ status: 200, stale: false });
    expect(await post(groupEvent('dsync.group.created', group, t))).toEqual({ status: 200, stale: true });
  });
});
