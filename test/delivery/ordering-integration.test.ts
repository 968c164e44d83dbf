/**
 * Ordering at the edges (defects 3–5 of the delivery-promises issue), through
 * webhooks, the real local queue and the real consumer. `latest` follows a
 * rule with `stale = "drop"`; `history` gets every event, stale ones marked
 * with `X-WorkOS-Stale: true`.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DedupLedger } from '../../src/dedup/ledger';
import { ledgerStub, shardKeyOf } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { traceOf } from '../helpers/audit-sentinel';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { postWebhook, sampleEvent } from '../helpers/webhook';
import { HISTORY, LATEST } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

const T0 = Date.parse('2026-11-20T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

function ev(type: string, data: Record<string, unknown>, second: number): Record<string, unknown> {
  return sampleEvent({ event: type, data, created_at: at(second) });
}

/** Posts events one after another (arrival order), each answered before the next is sent. */
async function arrive(events: Record<string, unknown>[]): Promise<void> {
  for (const e of events) {
    const res = await postWebhook(e);
    expect(res.status, `${String(e.event)} @ ${String(e.created_at)}`).toBe(200);
  }
}

/** Waits until `history` has every event and a later sentinel reached `latest`: the consumer is done with them. */
async function settled(events: Record<string, unknown>[]): Promise<void> {
  await sink.until(() => events.every((e) => sink.about(e.id as string, HISTORY).length >= 1), 'every event at history');
  const sentinel = ev('organization.updated', { id: `org_${crypto.randomUUID()}`, object: 'organization' }, 0);
  await arrive([sentinel]);
  await sink.until(() => sink.about(sentinel.id as string, LATEST).length === 1, 'the sentinel at latest');
}

/** The expected staleness by the README's rule, event by event in arrival order. */
function model(events: Record<string, unknown>[], kind: 'object' | 'subject'): boolean[] {
  let newest = -Infinity;
  let deleted = false;
  return events.map((e) => {
    const t = Date.parse(e.created_at as string);
    const deletion = String(e.event).endsWith('.deleted') && kind === 'object';
    const stale = deletion ? false : (kind === 'object' && deleted) || t < newest;
    newest = Math.max(newest, t);
    deleted ||= deletion;
    return stale;
  });
}

function expectDeliveries(events: Record<string, unknown>[], stale: boolean[]): void {
  events.forEach((e, i) => {
    const id = e.id as string;
    const label = `${String(e.event)} @ ${String(e.created_at)}`;
    expect(sink.about(id, LATEST), `${label} at latest`).toHaveLength(stale[i] ? 0 : 1);
    const h = sink.about(id, HISTORY);
    expect(h, `${label} at history`).toHaveLength(1);
    expect(h[0]?.headers.get('x-workos-stale'), `${label} stale mark`).toBe(stale[i] ? 'true' : null);
  });
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

describe('deletions win, whatever the arrival order', () => {
  it('update / delete / update in all six arrival orders', async () => {
    const runs = permutations([0, 1, 2]).map((order) => {
      const org = { id: `org_${crypto.randomUUID()}`, object: 'organization', name: 'Acme' };
      const byTime = [ev('organization.updated', org, 1), ev('organization.deleted', org, 2), ev('organization.updated', org, 3)];
      return { order, events: order.map((i) => byTime[i] as Record<string, unknown>) };
    });
    await Promise.all(runs.map((r) => arrive(r.events)));
    await settled(runs.flatMap((r) => r.events));
    for (const r of runs) {
      // The deletion is always delivered to the "drop" rule, once, unmarked (whatever arrived before it).
      const deletion = r.events.find((e) => String(e.event).endsWith('.deleted')) as Record<string, unknown>;
      expect(sink.about(deletion.id as string, LATEST), `order ${r.order.join('')}: the deletion at latest`).toHaveLength(1);
      expect(sink.about(deletion.id as string, HISTORY)[0]?.headers.get('x-workos-stale'), `order ${r.order.join('')}: the deletion's stale mark`).toBeNull();
      expectDeliveries(r.events, model(r.events, 'object'));
    }
  });

  it('a deletion arriving after a newer update is delivered (it used to be called stale and dropped)', async () => {
    const org = { id: `org_${crypto.randomUUID()}`, object: 'organization' };
    const newer = ev('organization.updated', org, 5);
    const deletion = ev('organization.deleted', org, 2);
    await arrive([newer, deletion]);
    await settled([newer, deletion]);
    expect(sink.about(deletion.id as string, LATEST)).toHaveLength(1);
    expect(sink.about(deletion.id as string, HISTORY)[0]?.headers.get('x-workos-stale')).toBeNull();
  });
});

describe('the ordering record changes only when an event is committed', () => {
  it('a deletion answered 503 does not mark the object deleted; its retry is then delivered', async () => {
    const org = { id: `org_${crypto.randomUUID()}`, object: 'organization' };
    const first = ev('organization.updated', org, 1);
    const deletion = ev('organization.deleted', org, 2);
    const later = ev('organization.updated', org, 3);
    await arrive([first]);
    const { stub } = ledgerStub(env, shardKeyOf(deletion as unknown as UnknownEvent), 16);
    await runInDurableObject(stub as DurableObjectStub<DedupLedger>, (instance) => {
      vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'send').mockRejectedValueOnce(new Error('queue down'));
    });
    const refused = await postWebhook(deletion);
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: string }).error).toBe('temporarily_unavailable');
    await arrive([later]); // not stale: the refused deletion never happened
    await arrive([deletion]); // WorkOS retries the deletion
    await settled([first, later, deletion]);
    expectDeliveries([first, later, deletion], [false, false, false]);
  });
});

describe('memberships and slug-named subjects are ordered too', () => {
  const cases: [string, (n: number) => Record<string, unknown>[]][] = [
    [
      'dsync.group.user_added / user_removed (group id + user id)',
      (n) => {
        const data = { directory_id: 'directory_1', user: { id: `directory_user_${n}` }, group: { id: `directory_group_${n}` } };
        return [ev('dsync.group.user_removed', data, 2), ev('dsync.group.user_added', data, 1), ev('dsync.group.user_added', data, 3)];
      },
    ],
    [
      'group.member_added / member_removed (group id + membership id)',
      (n) => {
        const data = { group_id: `group_${n}`, organization_membership_id: `om_${n}` };
        return [ev('group.member_removed', data, 2), ev('group.member_added', data, 1), ev('group.member_added', data, 3)];
      },
    ],
    [
      'role.* (slug; a slug can be created again after its deletion)',
      (n) => {
        const data = { object: 'role', slug: `auditor-${n}`, permissions: [] };
        return [ev('role.deleted', data, 2), ev('role.updated', data, 1), ev('role.created', data, 3)];
      },
    ],
    [
      'organization_role.* (organization id + slug)',
      (n) => {
        const data = { object: 'organization_role', organization_id: `org_${n}`, slug: 'billing-admin', permissions: [] };
        return [ev('organization_role.deleted', data, 2), ev('organization_role.updated', data, 1), ev('organization_role.created', data, 3)];
      },
    ],
  ];

  it.each(cases)('%s: a late, older add is stale; a newer one is not', async (_name, make) => {
    const events = make(Date.now() + Math.floor(Math.random() * 1e6));
    await arrive(events);
    await settled(events);
    expectDeliveries(events, [false, true, false]);
  });
});

describe('Vault: data by its KV name, access logs and key notices stand alone', () => {
  it('vault.data.* about one KV name: an older update arriving after a newer one is stale; a deletion then a re-creation is not', async () => {
    const kv = `kv_${crypto.randomUUID()}`;
    const data = (n: number) => ({ kv_name: kv, key_id: `key_${n}`, actor_id: 'user_1', actor_name: 'Ada' });
    const events = [
      ev('vault.data.updated', data(2), 20),
      ev('vault.data.updated', data(1), 10), // older, arrives later: stale
      ev('vault.data.deleted', data(3), 30),
      ev('vault.data.created', data(4), 40), // the name comes back: not stale (a subject, not an object)
    ];
    await arrive(events);
    await settled(events);
    expectDeliveries(events, [false, true, false, false]);
  });

  it('vault.data.read and vault.byok_key.* are facts: in reversed arrival order, none is stale', async () => {
    const kv = `kv_${crypto.randomUUID()}`;
    const events = [
      ev('vault.data.read', { kv_name: kv, key_id: 'key_1', actor_id: 'user_1', actor_name: 'Ada' }, 50),
      ev('vault.data.read', { kv_name: kv, key_id: 'key_1', actor_id: 'user_1', actor_name: 'Ada' }, 40),
      ev('vault.byok_key.verification_completed', { organization_id: 'org_1', key_provider: 'AWS_KMS', verified: true }, 30),
      ev('vault.byok_key.verification_completed', { organization_id: 'org_1', key_provider: 'AWS_KMS', verified: false }, 20),
    ];
    await arrive(events);
    await settled(events);
    expectDeliveries(events, [false, false, false, false]);
  });
});

describe('what the trace and the log say of a stale event a rule drops', () => {
  it('the dropping rule\'s destination is traced stale_dropped with that rule; the destination another rule routes it to, delivered', async () => {
    const org = `org_${crypto.randomUUID()}`;
    const newer = ev('organization.updated', { id: org, object: 'organization', name: 'New' }, 20);
    const older = ev('organization.updated', { id: org, object: 'organization', name: 'Old' }, 10);
    const logs = watchLogs();
    await arrive([newer, older]);
    await settled([newer, older]);
    expectDeliveries([newer, older], [false, true]);
    const trace = await traceOf(older.id as string);
    expect(trace?.stale).toBe(true);
    expect(trace?.deliveries).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ destination: 'latest', state: 'stale_dropped', rules: ['latest-state'] }),
        expect.objectContaining({ destination: 'history', state: 'delivered' }),
      ]),
    );
    expect(logs.about(older.id as string, 'stale_dropped')).toMatchObject([{ rules: ['latest-state'] }]);
  });

  it('an event every matching rule drops is not "unrouted": traced stale_dropped per destination, logged stale_dropped only', async () => {
    const ONLY_DROP = {
      destinations: [{ name: 'latest', type: 'http', url: LATEST, max_attempts: 3, retry_delay_seconds: 1 }],
      rules: [{ name: 'latest-state', events: ['organization.*'], to: ['latest'], stale: 'drop' }],
    };
    const e = ev('organization.updated', { id: `org_${crypto.randomUUID()}`, object: 'organization' }, 5);
    const logs = watchLogs();
    const { result } = await runBatch([routerMessage(e, { stale: true })], testEnv(ONLY_DROP));
    expect(result.explicitAcks).toHaveLength(1);
    expect(sink.about(e.id as string, LATEST)).toEqual([]);
    const trace = await traceOf(e.id as string);
    expect(trace?.deliveries).toEqual([expect.objectContaining({ destination: 'latest', state: 'stale_dropped', rules: ['latest-state'] })]);
    expect(logs.about(e.id as string, 'stale_dropped')).toHaveLength(1);
    expect(logs.about(e.id as string, 'unrouted')).toEqual([]);
  });
});
