/**
 * Bulk dead-letter actions: `POST /admin/dead-letters/replay` and
 * `/discard` with a filter — validation (every error with its status and
 * code), filters, dry runs, inline and background jobs (slices driven by the
 * store's alarm, progress on /admin/status), idempotency keys, queue
 * failures, and a restart of the store in the middle of a replay.
 *
 * Route tests use the admin API's store ("global"), shared with the other
 * tests of this file: each test's records carry a reason of their own and
 * every filter names it, so nothing else in the store is selected. Store
 * tests (slicing, alarms) use a fresh store each.
 */
import { abortAllDurableObjects, createExecutionContext, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DeadLetterJob } from '../../src/admin/bulk';
import { parseIsoTime } from '../../src/config/iso-time';
import {
  DISCARD_SLICE,
  JOB_MAX_RETRIES,
  RECONCILE_ENQUEUE_FAILED,
  ROUTER_DESTINATION,
  SWEEP_INTERVAL_MS,
  type DeadLetterInput,
  type DeadLetterSummary,
  deadLetterRecord,
  deadLetterStub,
} from '../../src/deadletters/store';
import type { RouterMessage } from '../../src/queue/message';
import { makeEvent } from '../fixtures/events';
import { deliverSentinel, observeAudit, traceOf } from '../helpers/audit-sentinel';
import { deadLettersFor, watchLogs } from '../helpers/observe';
import { postWebhook } from '../helpers/webhook';

const AUTH = { Authorization: 'Bearer test-admin-token' };
const DAY = 86_400_000;
/** The consumer delivers about a second after a send (batch timeout), plus slack. */
const DELIVERY = { timeout: 15_000, interval: 50 };

afterEach(() => vi.restoreAllMocks());

function admin(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(`https://router.test/admin${path}`, { ...init, headers: { ...AUTH, ...(init.headers ?? {}) } }));
}

function bulk(action: 'replay' | 'discard', body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return admin(`/dead-letters/${action}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers });
}

interface BulkResponse {
  action: string;
  matched: number;
  replayed?: number;
  discarded?: number;
  failed?: number;
  dry_run?: true;
  repeated?: true;
  job?: DeadLetterJob;
}

async function expectError(res: Response, status: number, error: string, message?: RegExp): Promise<string> {
  const body = (await res.json()) as { error: string; message: string };
  expect({ status: res.status, error: body.error }, body.message).toEqual({ status, error });
  if (message !== undefined) expect(body.message).toMatch(message);
  return body.message;
}

/** A reason no other test uses: filters name it so that only this test's records are selected. */
function newTag(): string {
  return `t${crypto.randomUUID().replace(/-/g, '').slice(0, 12)}`;
}

function record(tag: string, overrides: Partial<DeadLetterInput> & { type?: 'user.created' | 'user.deleted' | 'dsync.user.created' | 'connection.activated' } = {}): DeadLetterInput {
  const { type = 'user.created', ...rest } = overrides;
  const e = makeEvent(type);
  return deadLetterRecord({
    event_id: e.id,
    event_type: e.event,
    destination: 'audit',
    rules: ['everything-to-audit'],
    reason: `${tag}_http_500`,
    last_status: 500,
    attempts: 10,
    body: JSON.stringify(e),
    ...rest,
  });
}

type Store = ReturnType<typeof deadLetterStub>;

async function all(store: Store = deadLetterStub(env)): Promise<DeadLetterSummary[]> {
  const out: DeadLetterSummary[] = [];
  for (let after = 0; ; ) {
    const page = await store.list(500, after);
    out.push(...page);
    if (page.length < 500) return out;
    after = page[page.length - 1]!.seq;
  }
}

async function taggedIds(tag: string, store: Store = deadLetterStub(env)): Promise<string[]> {
  return (await all(store)).filter((r) => r.reason.startsWith(tag)).map((r) => r.event_id);
}

/** Moves the time of death of these events `daysAgo` into the past. */
async function backdate(store: Store, ids: string[], daysAgo: number): Promise<void> {
  await runInDurableObject(store, (_i, state) => {
    for (const id of ids) state.storage.sql.exec('UPDATE dead_letters SET dead_at = ? WHERE event_id = ?', Date.now() - daysAgo * DAY, id);
  });
}

async function jobById(id: string): Promise<DeadLetterJob> {
  const res = await admin(`/dead-letters/jobs/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as DeadLetterJob;
}

/** Waits for a job to leave `running`, running the store's alarm meanwhile (it also fires by itself). */
async function finished(id: string, store: Store = deadLetterStub(env)): Promise<DeadLetterJob> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const job = await store.job(id);
    if (job === null) throw new Error(`no job ${id}`);
    if (job.state !== 'running') return job;
    if (Date.now() > deadline) throw new Error(`job ${id} still running: ${JSON.stringify(job)}`);
    await runDurableObjectAlarm(store);
  }
}

describe('validation: 400 invalid_request, nothing changed', () => {
  const cases: [string, string, RegExp][] = [
    ['an empty body', '', /"filter": \{\}/],
    ['invalid JSON', '{"filter": {', /must be JSON/],
    ['an array', '[]', /must be a JSON object/],
    ['a string', '"everything"', /must be a JSON object/],
    ['null', 'null', /must be a JSON object/],
    ['a number', '42', /must be a JSON object/],
    ['a bare {} (the filter must be explicit)', '{}', /"filter" is required.*"filter": \{\}/],
    ['dry_run without a filter', '{"dry_run": true}', /"filter" is required/],
    ['a filter that is not an object (array)', '{"filter": []}', /"filter" must be an object/],
    ['a filter that is not an object (string)', '{"filter": "crm"}', /"filter" must be an object/],
    ['a filter that is null', '{"filter": null}', /"filter" must be an object/],
    ['an unknown body field', '{"filter": {}, "dryrun": true}', /Unknown field "dryrun" \(did you mean "dry_run"\?\)/],
    ['an unknown filter field', '{"filter": {"destinaton": "crm"}}', /Unknown filter field "destinaton" \(did you mean "destination"\?\)/],
    ['an unknown filter field, no suggestion', '{"filter": {"limit": 10}}', /Unknown filter field "limit": a filter takes/],
    ['a destination that is not a string', '{"filter": {"destination": 5}}', /filter.destination must be a non-empty string/],
    ['an empty destination', '{"filter": {"destination": ""}}', /filter.destination must be a non-empty string/],
    ['an empty event_type', '{"filter": {"event_type": ""}}', /filter.event_type: empty pattern/],
    ['a lone "!"', '{"filter": {"event_type": "!"}}', /filter.event_type: empty pattern/],
    ['an empty event_type list', '{"filter": {"event_type": []}}', /non-empty list of patterns/],
    ['an event_type that is an object', '{"filter": {"event_type": {"in": ["user.*"]}}}', /non-empty list of patterns/],
    ['a pattern that is not a string', '{"filter": {"event_type": ["user.*", 5]}}', /filter.event_type\[1\]: empty pattern/],
    ['a pattern with a space', '{"filter": {"event_type": "user created"}}', /filter.event_type: invalid pattern/],
    ['a pattern with another character', '{"filter": {"event_type": ["user.*", "dsync.$"]}}', /filter.event_type\[1\]: invalid pattern/],
    ['"!" inside a pattern', '{"filter": {"event_type": "user.!deleted"}}', /invalid pattern/],
    ['an empty reason', '{"filter": {"reason": ""}}', /filter.reason must be a non-empty string/],
    ['a reason that is not a string', '{"filter": {"reason": 500}}', /filter.reason must be a non-empty string/],
    ['"*" inside a reason', '{"filter": {"reason": "http_*_x"}}', /"\*" may only end a reason prefix/],
    ['since that is not a time', '{"filter": {"since": "yesterday"}}', /filter.since must be an ISO 8601 time/],
    ['since on a day that does not exist', '{"filter": {"since": "2026-02-30"}}', /filter.since must be an ISO 8601 time/],
    ['since without a zone', '{"filter": {"since": "2026-01-01T00:00:00"}}', /filter.since must be an ISO 8601 time with its zone/],
    ['since as a number', '{"filter": {"since": 1767225600000}}', /filter.since must be an ISO 8601 time/],
    ['until at hour 24', '{"filter": {"until": "2026-01-01T24:00:00Z"}}', /filter.until must be an ISO 8601 time/],
    ['until before since', '{"filter": {"since": "2026-06-01T00:00:00Z", "until": "2026-05-01T00:00:00Z"}}', /filter.since must be earlier than filter.until/],
    ['until equal to since', '{"filter": {"since": "2026-06-01T00:00:00Z", "until": "2026-06-01T02:00:00+02:00"}}', /earlier than/],
    ['dry_run as a string', '{"filter": {}, "dry_run": "true"}', /"dry_run" must be true or false/],
    ['dry_run as a number', '{"filter": {}, "dry_run": 1}', /"dry_run" must be true or false/],
    ['dry_run null', '{"filter": {}, "dry_run": null}', /"dry_run" must be true or false/],
  ];

  for (const action of ['replay', 'discard'] as const) {
    it(`${action}: every malformed request is refused with a message naming the problem`, async () => {
      const tag = newTag();
      const records = [record(tag), record(tag)];
      await deadLetterStub(env).add(records);
      const before = await deadLetterStub(env).count();
      const audit = observeAudit();
      for (const [what, body, message] of cases) {
        const res = await bulk(action, body);
        expect(res.status, what).toBe(400);
        await expectError(res, 400, 'invalid_request', message);
      }
      // Nothing was enqueued: a sentinel sent after these requests is delivered, and neither record before it.
      await deliverSentinel(audit.deliveredFor, DELIVERY);
      expect(await audit.deliveredForEach(records.map((r) => r.event_id))).toEqual([0, 0]);
      expect(await deadLetterStub(env).count()).toBe(before);
      expect(await taggedIds(tag)).toHaveLength(2);
      expect((await deadLetterStub(env).jobs()).filter((j) => j.filter.reason === `${tag}*`)).toEqual([]);
    }, 2 * DELIVERY.timeout);
  }

  it('error messages do not echo long or hostile input', async () => {
    const key = `x${'\u0000'.repeat(3)}${'k'.repeat(500)}`;
    const message = await expectError(await bulk('discard', { filter: { [key]: 1 } }), 400, 'invalid_request');
    expect(message.length).toBeLessThan(300);
    expect(message).not.toContain('\u0000');
  });

  it('an Idempotency-Key that is empty, too long or not printable ASCII: 400', async () => {
    for (const key of [' ', 'a b', 'a\tb', 'k'.repeat(256)]) {
      await expectError(await bulk('replay', { filter: { reason: 'none' } }, { 'Idempotency-Key': key }), 400, 'invalid_request', /Idempotency-Key/);
    }
  });

  it('parses ISO times strictly: dates, zones and fractions; no rolled-over calendar fields', () => {
    expect(parseIsoTime('2026-11-01')).toBe(Date.UTC(2026, 10, 1));
    expect(parseIsoTime('2026-11-01T08:30Z')).toBe(Date.UTC(2026, 10, 1, 8, 30));
    expect(parseIsoTime('2026-11-01T08:30:15.250+02:00')).toBe(Date.UTC(2026, 10, 1, 6, 30, 15, 250));
    expect(parseIsoTime('2024-02-29T00:00:00Z')).toBe(Date.UTC(2024, 1, 29));
    expect(parseIsoTime('0099-01-01')).toBe(-59042995200000); // not 1999: years below 100 stay themselves
    for (const bad of ['2026-02-29', '2026-13-01', '2026-04-31', '2026-01-01T23:60:00Z', '2026-01-01T00:00:60Z', '2026-01-01T00:00:00+24:00', '26-01-01', '2026-1-1', 'now']) {
      expect(parseIsoTime(bad), bad).toBeNull();
    }
  });
});

describe('errors besides validation', () => {
  it('401 unauthorized without the admin token; nothing happens', async () => {
    const tag = newTag();
    await deadLetterStub(env).add([record(tag)]);
    for (const action of ['replay', 'discard']) {
      const res = await exports.default.fetch(
        new Request(`https://router.test/admin/dead-letters/${action}`, { method: 'POST', body: JSON.stringify({ filter: { reason: `${tag}*` } }), headers: { Authorization: 'Bearer nope' } }),
      );
      await expectError(res, 401, 'unauthorized');
    }
    expect(await taggedIds(tag)).toHaveLength(1);
  });

  it('replay: 500 config_invalid while ROUTER is invalid (a dry run still counts; discard still works)', async () => {
    const tag = newTag();
    await deadLetterStub(env).add([record(tag), record(tag)]);
    const { default: worker } = await import('../../src/index');
    const broken = { ...env, ROUTER: '{not json' } as unknown as Env;
    const call = (action: string, body: unknown) =>
      worker.fetch(new Request(`https://router.test/admin/dead-letters/${action}`, { method: 'POST', headers: AUTH, body: JSON.stringify(body) }), broken, createExecutionContext());
    await expectError(await call('replay', { filter: { reason: `${tag}*` } }), 500, 'config_invalid');
    expect(await taggedIds(tag)).toHaveLength(2);
    const dry = await call('replay', { filter: { reason: `${tag}*` }, dry_run: true });
    expect(dry.status).toBe(200);
    expect(await dry.json()).toEqual({ action: 'replay', dry_run: true, matched: 2, replayed: 0 });
    const discarded = await call('discard', { filter: { reason: `${tag}*` } });
    expect(discarded.status).toBe(200);
    expect(await taggedIds(tag)).toEqual([]);
  });

  it('a replay repeated with its Idempotency-Key while ROUTER has become invalid gets its first job, not 500', async () => {
    const tag = newTag();
    await deadLetterStub(env).add([record(tag)]);
    const key = crypto.randomUUID();
    const first = await bulk('replay', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key });
    expect(first.status).toBe(200);
    const job = ((await first.json()) as BulkResponse).job;
    const { default: worker } = await import('../../src/index');
    const broken = { ...env, ROUTER: '{not json' } as unknown as Env;
    const again = await worker.fetch(
      new Request('https://router.test/admin/dead-letters/replay', { method: 'POST', headers: { ...AUTH, 'Idempotency-Key': key }, body: JSON.stringify({ filter: { reason: `${tag}*` } }) }),
      broken,
      createExecutionContext(),
    );
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ repeated: true, job: { id: job?.id } });
    // A new key is still refused while ROUTER is invalid.
    const fresh = await worker.fetch(
      new Request('https://router.test/admin/dead-letters/replay', { method: 'POST', headers: { ...AUTH, 'Idempotency-Key': crypto.randomUUID() }, body: JSON.stringify({ filter: { reason: `${tag}*` } }) }),
      broken,
      createExecutionContext(),
    );
    await expectError(fresh, 500, 'config_invalid');
  });

  it('422 idempotency_key_reused: one key, another request (other filter or other action)', async () => {
    const tag = newTag();
    await deadLetterStub(env).add([record(tag)]);
    const key = crypto.randomUUID();
    expect((await bulk('discard', { filter: { reason: `${tag}_nothing` } }, { 'Idempotency-Key': key })).status).toBe(200);
    await expectError(await bulk('discard', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key }), 422, 'idempotency_key_reused', /different request/);
    await expectError(await bulk('replay', { filter: { reason: `${tag}_nothing` } }, { 'Idempotency-Key': key }), 422, 'idempotency_key_reused');
    expect(await taggedIds(tag)).toHaveLength(1);
  });

  it('404 not_found for an unknown job', async () => {
    await expectError(await admin('/dead-letters/jobs/dlj_nope'), 404, 'not_found');
  });
});

describe('filters and dry runs', () => {
  it('counts exactly what each filter selects, and a dry run changes nothing', async () => {
    const tag = newTag();
    const store = deadLetterStub(env);
    const records = [
      record(tag, { destination: 'crm', type: 'user.created' }),
      record(tag, { destination: 'crm', type: 'user.deleted', reason: `${tag}_http_404` }),
      record(tag, { destination: 'crm', type: 'dsync.user.created', reason: `${tag}_timeout` }),
      record(tag, { destination: 'audit', type: 'user.created', reason: `${tag}_http_404` }),
      record(tag, { destination: 'audit', type: 'connection.activated', reason: `${tag}_message_too_large` }),
      record(tag, { destination: ROUTER_DESTINATION, type: 'user.created', reason: `${tag}_body_expired` }),
    ];
    await store.add(records);
    await backdate(store, [records[0]!.event_id, records[3]!.event_id], 10);
    await backdate(store, [records[1]!.event_id], 3);
    const before = await all(store);
    const dry = async (filter: Record<string, unknown>, action: 'replay' | 'discard' = 'replay') => {
      const res = await bulk(action, { filter: { reason: `${tag}*`, ...filter }, dry_run: true });
      expect(res.status).toBe(200);
      return ((await res.json()) as BulkResponse).matched;
    };
    expect(await dry({})).toBe(6);
    expect(await dry({}, 'discard')).toBe(6);
    expect(await dry({ destination: 'crm' })).toBe(3);
    expect(await dry({ destination: 'audit' })).toBe(2);
    expect(await dry({ destination: ROUTER_DESTINATION })).toBe(1);
    expect(await dry({ destination: 'nowhere' })).toBe(0);
    // Event-type patterns, as in rules.
    expect(await dry({ event_type: 'user.*' })).toBe(4);
    expect(await dry({ event_type: 'user.created' })).toBe(3);
    expect(await dry({ event_type: ['user.*', '!user.deleted'] })).toBe(3);
    expect(await dry({ event_type: ['!user.*'] })).toBe(2); // only exclusions: every other type
    expect(await dry({ event_type: '*' })).toBe(6);
    expect(await dry({ event_type: ['*.created'] })).toBe(4);
    expect(await dry({ event_type: 'user' })).toBe(0);
    expect(await dry({ destination: 'crm', event_type: ['dsync.*', 'user.deleted'] })).toBe(2);
    // Reasons: exact, or a prefix (case-sensitive).
    expect(await dry({ reason: `${tag}_http_404` })).toBe(2);
    expect(await dry({ reason: `${tag}_http_*` })).toBe(3);
    expect(await dry({ reason: `${tag}_http` })).toBe(0);
    expect(await dry({ reason: `${tag.toUpperCase()}_HTTP_*` })).toBe(0);
    // Times of death: since inclusive, until exclusive.
    const now = Date.now();
    expect(await dry({ since: new Date(now - 5 * DAY).toISOString() })).toBe(4);
    expect(await dry({ until: new Date(now - 5 * DAY).toISOString() })).toBe(2);
    expect(await dry({ since: new Date(now - 5 * DAY).toISOString(), until: new Date(now - DAY).toISOString() })).toBe(1);
    expect(await dry({ since: new Date(now - 11 * DAY).toISOString().slice(0, 10), destination: 'audit', event_type: 'user.*' })).toBe(1);
    expect(await all(store)).toEqual(before);
    expect((await store.jobs()).filter((j) => j.filter.reason?.startsWith(tag))).toEqual([]);
  });
});

describe('POST /admin/dead-letters/discard', () => {
  it('a small set: deleted at once (200), only the matching records, one log line with counts and never a body', async () => {
    const tag = newTag();
    const secret = 'do-not-log-this-payload';
    const keep = record(tag, { destination: 'audit' });
    const drop = [record(tag, { destination: 'crm', body: JSON.stringify({ secret }) }), record(tag, { destination: 'crm' }), record(tag, { destination: 'crm' })];
    await deadLetterStub(env).add([keep, ...drop]);
    const logs = watchLogs();
    const res = await bulk('discard', { filter: { destination: 'crm', reason: `${tag}*` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as BulkResponse;
    expect(body).toMatchObject({ action: 'discard', matched: 3, discarded: 3, failed: 0, job: { action: 'discard', state: 'done', matched: 3, done: 3, failed: 0 } });
    expect(body.job?.finished_at).not.toBeNull();
    expect(await taggedIds(tag)).toEqual([keep.event_id]);
    const lines = logs.records().filter((r) => r.msg === 'dead_letters_discarded');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'info', job_id: body.job?.id, state: 'done', matched: 3, discarded: 3, failed: 0, filter: { destination: 'crm', reason: `${tag}*` } });
    expect(JSON.stringify(logs.records())).not.toContain(secret);
  });

  it('nothing matched: 200, a finished job with zeros', async () => {
    const res = await bulk('discard', { filter: { reason: `${newTag()}*` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ matched: 0, discarded: 0, job: { state: 'done', matched: 0, done: 0 } });
  });

  it('a large set: 202 with the job, deleted in slices by the alarm, progress on /admin/status; later records are not part of it', async () => {
    const tag = newTag();
    const total = DISCARD_SLICE * 2 + 100;
    await deadLetterStub(env).add(Array.from({ length: total }, () => record(tag, { body: '{}' })));
    const logs = watchLogs();
    const res = await bulk('discard', { filter: { reason: `${tag}*` } });
    expect(res.status).toBe(202);
    const body = (await res.json()) as BulkResponse;
    const id = body.job!.id;
    expect(res.headers.get('location')).toBe(`/admin/dead-letters/jobs/${id}`);
    expect(body).toMatchObject({ matched: total, discarded: DISCARD_SLICE, job: { state: 'running', matched: total, done: DISCARD_SLICE, finished_at: null } });
    // A record added now is not part of the job.
    const late = record(tag);
    await deadLetterStub(env).add([late]);
    const status = (await (await admin('/status')).json()) as { dead_letter_jobs: DeadLetterJob[] };
    const listed = status.dead_letter_jobs.find((j) => j.id === id);
    expect(listed).toMatchObject({ id, action: 'discard', matched: total });
    expect(Object.keys(listed ?? {})).toEqual(expect.arrayContaining(['id', 'action', 'matched', 'done', 'failed', 'state', 'started_at', 'finished_at']));
    const job = await finished(id);
    expect(job).toMatchObject({ state: 'done', matched: total, done: total, failed: 0 });
    expect(await taggedIds(tag)).toEqual([late.event_id]);
    expect(await jobById(id)).toEqual(job);
    const lines = logs.records().filter((r) => r.msg === 'dead_letters_discarded' && r.job_id === id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ matched: total, discarded: total });
  });
});

describe('POST /admin/dead-letters/replay', () => {
  it('a small set: each matching record replayed once through the real queue (200), removed; the others stay', async () => {
    const tag = newTag();
    const audit = observeAudit();
    const matching = [record(tag), record(tag, { type: 'user.deleted' }), record(tag, { stale: true, source: 'reconcile' })];
    // Too large for the audit queue: its delivery fails again, and the dead letter it leaves shows the marks the replay carried.
    const big = makeEvent('user.created');
    (big.data as unknown as Record<string, unknown>).notes = 'n'.repeat(200 * 1024);
    const tooLarge = record(tag, { event_id: big.id, body: JSON.stringify(big), stale: true, source: 'reconcile' });
    const other = record(tag, { type: 'dsync.user.created' });
    await deadLetterStub(env).add([...matching, tooLarge, other]);
    const res = await bulk('replay', { filter: { reason: `${tag}*`, event_type: 'user.*' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ action: 'replay', matched: 4, replayed: 4, failed: 0, job: { action: 'replay', state: 'done', matched: 4, done: 4, failed: 0, uncertain: 0 } });
    expect(await taggedIds(tag)).toEqual([other.event_id]);
    await vi.waitFor(async () => expect(await audit.deliveredForEach(matching.map((r) => r.event_id))).toEqual([1, 1, 1]), DELIVERY);
    // The stale record: the destination sees the mark; the trace shows a first attempt for the record's rules.
    expect((await audit.deliveriesOf(matching[2]!.event_id))[0]).toEqual({ ...JSON.parse(matching[2]!.body), stale: true });
    await vi.waitFor(async () => {
      expect(await traceOf(matching[2]!.event_id)).toMatchObject({
        source: 'replay',
        stale: true,
        deliveries: [{ destination: 'audit', state: 'delivered', rules: ['everything-to-audit'], attempts: [{ status: 200, error: null }] }],
      });
    }, DELIVERY);
    await vi.waitFor(async () => {
      expect(await deadLettersFor(big.id)).toEqual([
        expect.objectContaining({ destination: 'audit', reason: 'message_too_large', rules: ['everything-to-audit'], stale: true, source: 'reconcile' }),
      ]);
    }, DELIVERY);
    // Once each, and the record the filter left out not at all: a sentinel sent after them is delivered first.
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    expect(await audit.deliveredForEach(matching.map((r) => r.event_id))).toEqual([1, 1, 1]);
    expect(await audit.deliveredFor(big.id)).toBe(0);
    expect(await audit.deliveredFor(other.event_id)).toBe(0);
  }, 4 * DELIVERY.timeout);

  it('records that cannot be replayed are kept and counted failed; the rest are replayed', async () => {
    const tag = newTag();
    const good = record(tag);
    const empty = record(tag, { body: '' });
    const notAnEvent = record(tag, { body: '{"hello":"world"}' });
    await deadLetterStub(env).add([empty, good, notAnEvent]);
    const logs = watchLogs();
    const res = await bulk('replay', { filter: { reason: `${tag}*` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ matched: 3, replayed: 1, failed: 2, job: { state: 'done', done: 1, failed: 2 } });
    expect((await taggedIds(tag)).sort()).toEqual([empty.event_id, notAnEvent.event_id].sort());
    expect(logs.records().filter((r) => r.msg === 'dead_letter_not_replayable')).toHaveLength(2);
    expect(logs.records().filter((r) => r.msg === 'dead_letters_replayed')).toEqual([
      expect.objectContaining({ level: 'info', state: 'done', matched: 3, replayed: 1, failed: 2, uncertain: 0 }),
    ]);
  });

  it('events reconciliation could not enqueue go through the dedup ledger: admitted once, or found already delivered', async () => {
    const tag = newTag();
    const audit = observeAudit();
    const fresh = makeEvent('user.created');
    const arrived = makeEvent('user.created', { data: { id: `user_${tag}` } });
    expect((await postWebhook(arrived)).status).toBe(200);
    await deadLetterStub(env).add(
      [fresh, arrived].map((e) =>
        deadLetterRecord({ event_id: e.id, event_type: e.event, destination: ROUTER_DESTINATION, reason: RECONCILE_ENQUEUE_FAILED, body: JSON.stringify(e), source: 'reconcile' }),
      ),
    );
    const res = await bulk('replay', { filter: { destination: ROUTER_DESTINATION, reason: RECONCILE_ENQUEUE_FAILED, event_type: 'user.created' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ replayed: 2, failed: 0 });
    const left = (await all()).filter((r) => r.event_id === fresh.id || r.event_id === arrived.id);
    expect(left).toEqual([]);
    // Each delivered once: the fresh one by its replay, the one that arrived by its webhook only (a duplicate is not
    // enqueued again) — a sentinel sent after the replay is delivered with no second copy of either before it.
    await vi.waitFor(async () => expect(await audit.deliveredForEach([fresh.id, arrived.id])).toEqual([1, 1]), DELIVERY);
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    expect(await audit.deliveredFor(fresh.id)).toBe(1);
    expect(await audit.deliveredFor(arrived.id)).toBe(1);
  }, 3 * DELIVERY.timeout);

  it('a large set: 202, then the alarm replays the rest in slices; every record enqueued exactly once', async () => {
    const tag = newTag();
    const audit = observeAudit();
    const records = Array.from({ length: 120 }, () => record(tag));
    await deadLetterStub(env).add(records);
    const res = await bulk('replay', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': `k-${tag}` });
    expect(res.status).toBe(202);
    const first = (await res.json()) as BulkResponse;
    // The first slice ran in the request, bounded by the subrequest budget (45 by default).
    expect(first.replayed).toBeGreaterThan(0);
    expect(first.replayed).toBeLessThanOrEqual(45);
    expect(first.job).toMatchObject({ state: 'running', matched: 120 });
    const job = await finished(first.job!.id);
    expect(job).toMatchObject({ state: 'done', matched: 120, done: 120, failed: 0 });
    expect(await taggedIds(tag)).toEqual([]);
    const counts = () => audit.deliveredForEach(records.map((r) => r.event_id));
    await vi.waitFor(async () => expect(await counts()).toEqual(records.map(() => 1)), DELIVERY);
    // Exactly once: a sentinel sent after the job is delivered with no second copy before it.
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    expect(await counts()).toEqual(records.map(() => 1));
  }, 4 * DELIVERY.timeout);

  it('a retried request with the same Idempotency-Key returns the same job and replays nothing again (even records added since)', async () => {
    const tag = newTag();
    const audit = observeAudit();
    const key = crypto.randomUUID();
    const firstSet = [record(tag), record(tag)];
    await deadLetterStub(env).add(firstSet);
    const first = (await (await bulk('replay', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key })).json()) as BulkResponse;
    expect(first).toMatchObject({ matched: 2, replayed: 2 });
    expect(first).not.toHaveProperty('repeated');
    const later = record(tag);
    await deadLetterStub(env).add([later]);
    const again = await bulk('replay', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key });
    expect(again.status).toBe(200);
    const repeated = (await again.json()) as BulkResponse;
    expect(repeated).toEqual({ ...first, repeated: true });
    expect(await taggedIds(tag)).toEqual([later.event_id]);
    // The first set delivered once, the later record not at all: a sentinel sent after the repeat is delivered first.
    await vi.waitFor(async () => expect(await audit.deliveredForEach(firstSet.map((r) => r.event_id))).toEqual([1, 1]), DELIVERY);
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    expect(await audit.deliveredForEach(firstSet.map((r) => r.event_id))).toEqual([1, 1]);
    expect(await audit.deliveredFor(later.event_id)).toBe(0);
    // A new key is a new request.
    const next = (await (await bulk('replay', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': crypto.randomUUID() })).json()) as BulkResponse;
    expect(next).toMatchObject({ matched: 1, replayed: 1 });
    expect(next.job?.id).not.toBe(first.job?.id);
    await vi.waitFor(async () => expect(await audit.deliveredFor(later.event_id)).toBe(1), DELIVERY);
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    expect(await audit.deliveredForEach([...firstSet, later].map((r) => r.event_id))).toEqual([1, 1, 1]);
  }, 4 * DELIVERY.timeout);

  it('an Idempotency-Key of 255 characters is taken, and remembered for 7 days after its job finished (then a new request)', async () => {
    const tag = newTag();
    const key = `${crypto.randomUUID()}${'k'.repeat(255 - 36)}`;
    expect(key).toHaveLength(255);
    await deadLetterStub(env).add([record(tag)]);
    const res = await bulk('discard', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key });
    expect(res.status).toBe(200);
    const first = (await res.json()) as BulkResponse;
    expect(first).toMatchObject({ matched: 1, job: { state: 'done' } });
    /** Moves the job's end back by `ms`, then runs the retention sweep. */
    const ageAndSweep = (ms: number) =>
      runInDurableObject(deadLetterStub(env), (instance, state) => {
        state.storage.sql.exec('UPDATE dead_letter_jobs SET finished_at = finished_at - ? WHERE idempotency_key = ?', ms, key);
        (instance as unknown as { sweep(now: number): void }).sweep(Date.now());
      });
    await ageAndSweep(6 * DAY);
    expect(await (await bulk('discard', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key })).json()).toMatchObject({ repeated: true, job: { id: first.job?.id } });
    await ageAndSweep(DAY + 1000);
    const after = (await (await bulk('discard', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key })).json()) as BulkResponse;
    expect(after).not.toHaveProperty('repeated');
    expect(after.job?.id).not.toBe(first.job?.id);
  });

  it('two simultaneous requests with one key start one job', async () => {
    const tag = newTag();
    const audit = observeAudit();
    const records = Array.from({ length: 5 }, () => record(tag));
    await deadLetterStub(env).add(records);
    const key = crypto.randomUUID();
    const [a, b] = await Promise.all([0, 1].map(async () => (await bulk('replay', { filter: { reason: `${tag}*` } }, { 'Idempotency-Key': key })).json() as Promise<BulkResponse>));
    expect(a?.job?.id).toBe(b?.job?.id);
    await finished(a!.job!.id);
    // Each record delivered, and once: a sentinel sent after the job is delivered with no second copy before it.
    const counts = () => audit.deliveredForEach(records.map((r) => r.event_id));
    await vi.waitFor(async () => expect((await counts()).filter((n) => n === 0)).toEqual([]), DELIVERY);
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    expect(await counts()).toEqual(records.map(() => 1));
  }, 3 * DELIVERY.timeout);

  it('the queue failing: records kept under their seqs, the job retries with backoff, then fails; a new request replays them', async () => {
    const tag = newTag();
    const records = [record(tag), record(tag), record(tag)];
    await deadLetterStub(env).add(records);
    const before = (await all()).filter((r) => r.reason.startsWith(tag));
    const send = vi.spyOn(env.EVENTS_QUEUE, 'send').mockRejectedValue(new Error('queue down'));
    const logs = watchLogs();
    const res = await bulk('replay', { filter: { reason: `${tag}*` } });
    expect(res.status).toBe(202);
    const body = (await res.json()) as BulkResponse;
    expect(body).toMatchObject({ replayed: 0, job: { state: 'running', done: 0, error: 'could not enqueue (Error)' } });
    const job = await finished(body.job!.id);
    expect(job).toMatchObject({ state: 'failed', done: 0, failed: 0, error: 'could not enqueue (Error)' });
    expect(job.finished_at).not.toBeNull();
    expect(send.mock.calls.filter((c) => (c[0] as RouterMessage).id === records[0]!.event_id)).toHaveLength(JOB_MAX_RETRIES);
    for (const r of records.slice(1)) expect(send.mock.calls.some((c) => (c[0] as RouterMessage).id === r.event_id)).toBe(false);
    expect((await all()).filter((r) => r.reason.startsWith(tag))).toEqual(before);
    expect(logs.records().filter((r) => r.msg === 'dead_letters_replayed')).toEqual([expect.objectContaining({ level: 'warn', state: 'failed', replayed: 0 })]);
    send.mockRestore();
    const retry = await bulk('replay', { filter: { reason: `${tag}*` } });
    expect(await retry.json()).toMatchObject({ matched: 3, replayed: 3 });
    expect(await taggedIds(tag)).toEqual([]);
  });

  it('a transient queue failure: the job waits, then carries on where it stopped', async () => {
    const tag = newTag();
    const records = [record(tag), record(tag), record(tag)];
    await deadLetterStub(env).add(records);
    const original = env.EVENTS_QUEUE.send.bind(env.EVENTS_QUEUE);
    let failures = 2;
    const send = vi.spyOn(env.EVENTS_QUEUE, 'send').mockImplementation(async (message, options) => {
      if ((message as RouterMessage).id === records[1]!.event_id && failures-- > 0) throw new Error('blip');
      return original(message, options);
    });
    const res = await bulk('replay', { filter: { reason: `${tag}*` } });
    expect(res.status).toBe(202);
    const body = (await res.json()) as BulkResponse;
    expect(body).toMatchObject({ replayed: 1, job: { state: 'running', error: 'could not enqueue (Error)' } });
    const job = await finished(body.job!.id);
    expect(job).toMatchObject({ state: 'done', matched: 3, done: 3, failed: 0 });
    expect(job).not.toHaveProperty('error');
    for (const [i, r] of records.entries()) expect(send.mock.calls.filter((c) => (c[0] as RouterMessage).id === r.event_id)).toHaveLength(i === 1 ? 3 : 1);
    expect(await taggedIds(tag)).toEqual([]);
  });

  it('a job waits while ROUTER is invalid (no retries spent), and carries on once it is valid again', async () => {
    const store = deadLetterStub(env);
    const tag = newTag();
    const records = Array.from({ length: 60 }, () => record(tag));
    await store.add(records);
    // The store sees an invalid config (the Worker's own is valid, so the request is accepted).
    const original = await runInDurableObject(store, (instance) => {
      const holder = instance as unknown as { env: Env };
      const before = holder.env;
      holder.env = { ...before, ROUTER: '{broken' } as unknown as Env;
      return before;
    });
    let id = '';
    try {
      const res = await bulk('replay', { filter: { reason: `${tag}*` } });
      expect(res.status).toBe(202);
      const body = (await res.json()) as BulkResponse;
      id = body.job!.id;
      expect(body).toMatchObject({ replayed: 0, job: { state: 'running', done: 0, error: 'config_invalid: waiting for a valid ROUTER' } });
      const alarm = await runInDurableObject(store, (_i, state) => state.storage.getAlarm());
      expect(alarm! - Date.now()).toBeGreaterThan(50_000);
      for (let i = 0; i < JOB_MAX_RETRIES + 2; i++) await runDurableObjectAlarm(store);
      expect(await store.job(id)).toMatchObject({ state: 'running', done: 0 });
    } finally {
      await runInDurableObject(store, (instance) => {
        (instance as unknown as { env: Env }).env = original;
      });
    }
    const job = await finished(id);
    expect(job).toMatchObject({ state: 'done', done: 60, failed: 0 });
    expect(job).not.toHaveProperty('error');
    expect(await taggedIds(tag)).toEqual([]);
  });

  it('a dead letter whose destination is no longer configured is not replayable: 409, kept under its seq; a bulk replay counts it failed', async () => {
    const tag = newTag();
    const gone = record(tag, { destination: 'gone-destination' });
    await deadLetterStub(env).add([gone]);
    const seq = (await all()).find((r) => r.event_id === gone.event_id)?.seq;
    await expectError(await admin(`/dead-letters/${seq}/replay`, { method: 'POST' }), 409, 'not_replayable', /no longer in the configuration/);
    expect((await all()).find((r) => r.event_id === gone.event_id)?.seq).toBe(seq);
    const res = await bulk('replay', { filter: { reason: `${tag}*` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ matched: 1, replayed: 0, failed: 1 });
    expect(await taggedIds(tag)).toEqual([gone.event_id]);
  });

  it('a restart of the store mid-job: no record replayed twice, none lost — the one in flight is kept and reported', { timeout: 20_000 }, async () => {
    const tag = newTag();
    const store = deadLetterStub(env);
    const records = Array.from({ length: 5 }, () => record(tag));
    await store.add(records);
    const seqs = new Map((await all()).filter((r) => r.reason.startsWith(tag)).map((r) => [r.event_id, r.seq]));
    const stuck = records[2]!;
    const original = env.EVENTS_QUEUE.send.bind(env.EVENTS_QUEUE);
    const sends: string[] = [];
    vi.spyOn(env.EVENTS_QUEUE, 'send').mockImplementation(async (message, options) => {
      const id = (message as RouterMessage).id;
      if (seqs.has(id)) sends.push(id);
      if (id === stuck.event_id) return new Promise<QueueSendResponse>(() => {}); // the store dies while this is in flight
      return original(message, options);
    });
    const logs = watchLogs();
    const request = bulk('replay', { filter: { reason: `${tag}*` } }).catch((err: unknown) => err);
    await vi.waitFor(() => expect(sends).toContain(stuck.event_id));
    // Meanwhile the record in flight cannot be taken by a single replay.
    await expectError(await admin(`/dead-letters/${seqs.get(stuck.event_id)}/replay`, { method: 'POST' }), 409, 'in_progress');
    // Nor deleted: the delete would not stop the delivery being enqueued.
    await expectError(await admin(`/dead-letters/${seqs.get(stuck.event_id)}`, { method: 'DELETE' }), 409, 'in_progress', /being enqueued/);
    const id = (await store.jobs()).find((j) => j.filter.reason === `${tag}*`)!.id;
    await abortAllDurableObjects();
    void request; // the request that started the job dies with the store (never answered here)
    // A fresh instance finds the note: the record is kept, counted uncertain, and the job carries on after it.
    const job = await finished(id);
    expect(job).toMatchObject({ state: 'done', matched: 5, done: 4, failed: 1, uncertain: 1 });
    expect(sends.filter((s) => s === stuck.event_id)).toHaveLength(1);
    for (const r of records) expect(sends.filter((s) => s === r.event_id), r.event_id).toHaveLength(1);
    expect(await taggedIds(tag)).toEqual([stuck.event_id]);
    expect((await all()).find((r) => r.event_id === stuck.event_id)?.seq).toBe(seqs.get(stuck.event_id));
    expect(logs.records().filter((r) => r.msg === 'dead_letter_replay_uncertain')).toEqual([
      expect.objectContaining({ level: 'warn', job_id: id, seq: seqs.get(stuck.event_id), kept: true, event_id: stuck.event_id, destination: 'audit' }),
    ]);
  });
});

describe('the store: slices, alarm and index', () => {
  function freshStore(): Store {
    return env.DEAD_LETTERS.get(env.DEAD_LETTERS.idFromName(`bulk-${crypto.randomUUID()}`));
  }

  it('after a background job the alarm goes back to the hourly sweep; with nothing left, no alarm', async () => {
    const store = freshStore();
    const tag = newTag();
    const keep = record(tag, { destination: 'audit' });
    await store.add([keep, ...Array.from({ length: DISCARD_SLICE + 1 }, () => record(tag, { destination: 'crm', body: '{}' }))]);
    const started = await store.startJob('discard', { filter: { destination: 'crm' }, dry_run: false }, null);
    expect(started.kind).toBe('started');
    const id = started.kind === 'started' ? started.job.id : '';
    // The first slice ran within the request (as answered: reading the job again could race the alarm's next slice).
    expect(started.kind === 'started' && started.job).toMatchObject({ state: 'running', done: DISCARD_SLICE });
    expect(await finished(id, store)).toMatchObject({ state: 'done', done: DISCARD_SLICE + 1 });
    const alarm = await runInDurableObject(store, (_i, state) => state.storage.getAlarm());
    expect(alarm! - Date.now()).toBeGreaterThan(SWEEP_INTERVAL_MS - 120_000);
    const all2 = await store.startJob('discard', { filter: {}, dry_run: false }, null);
    expect(all2.kind === 'started' && all2.job).toMatchObject({ state: 'done', done: 1 });
    expect(await runInDurableObject(store, (_i, state) => state.storage.getAlarm())).toBeNull();
  });

  it('jobs share the alarm with the retention sweep: old records are still swept while a job runs', async () => {
    const store = freshStore();
    const tag = newTag();
    const old = record(tag, { destination: 'audit' });
    await store.add([old, ...Array.from({ length: DISCARD_SLICE * 2 }, () => record(tag, { destination: 'crm', body: '{}' }))]);
    await backdate(store, [old.event_id], 31);
    // The hourly sweep is due as the job starts (its first slice runs in the request; the rest in the alarm).
    await runInDurableObject(store, (instance) => {
      (instance as unknown as { sweepAt: number }).sweepAt = Date.now() - 1;
    });
    const logs = watchLogs();
    const started = await store.startJob('discard', { filter: { destination: 'crm' }, dry_run: false }, null);
    expect(started.kind === 'started' && started.job).toMatchObject({ state: 'running', done: DISCARD_SLICE });
    const id = started.kind === 'started' ? started.job.id : '';
    await finished(id, store);
    expect(logs.records().filter((r) => r.msg === 'dead_letter_sweep')).toEqual([expect.objectContaining({ removed: 1 })]);
    expect(await store.count()).toBe(0);
  });

  it('pages by seq through an index: by destination, or by primary key — never a sort of the matches', async () => {
    const store = freshStore();
    await store.count();
    const plans = await runInDurableObject(store, (_i, state) => {
      const plan = (q: string, ...args: SqlStorageValue[]) =>
        state.storage.sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${q}`, ...args)
          .toArray()
          .map((r) => r.detail)
          .join(' | ');
      const page = (where: string) => `SELECT seq FROM dead_letters WHERE seq <= ? ${where} AND seq > ? ORDER BY seq LIMIT ?`;
      return {
        destination: plan(page("AND destination = ? AND dead_at >= ? AND event_type IN (SELECT value FROM json_each(?))"), 10, 'crm', 0, '["a"]', 0, 100),
        none: plan(page('AND instr(reason, ?) = 1'), 10, 'http_', 0, 100),
        count: plan('SELECT event_type, COUNT(*) AS n FROM dead_letters WHERE seq <= ? AND destination = ? GROUP BY event_type', 10, 'crm'),
        indexes: state.storage.sql
          .exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'dead_letters' AND name NOT LIKE 'sqlite_%'`)
          .toArray()
          .map((r) => r.name),
      };
    });
    // The other index, on the record's key (partial: keyed records only), serves only the writes that repeat one.
    expect(plans.indexes.sort()).toEqual(['dead_letters_by_destination', 'dead_letters_by_key']);
    expect(plans.destination).toMatch(/SEARCH dead_letters USING INDEX dead_letters_by_destination \(destination=\? AND rowid>\? AND rowid<\?\)/);
    expect(plans.none).toMatch(/SEARCH dead_letters USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)/);
    expect(plans.count).toMatch(/USING (COVERING )?INDEX dead_letters_by_destination/);
    for (const p of [plans.destination, plans.none]) expect(p).not.toMatch(/TEMP B-TREE/);
  });

  it('measures the rows one record costs to add and to remove', async () => {
    const store = freshStore();
    await store.count();
    const written = await runInDurableObject(store, (_i, state) => {
      const sql = state.storage.sql;
      const insert = sql.exec(
        `INSERT INTO dead_letters (event_id, event_type, destination, rules, reason, last_status, attempts, body, dead_at) VALUES ('e', 't', 'd', '[]', 'r', NULL, 0, '{}', 1)`,
      ).rowsWritten;
      const remove = sql.exec(`DELETE FROM dead_letters WHERE event_id = 'e'`).rowsWritten;
      const keyed = sql.exec(
        `INSERT INTO dead_letters (event_id, event_type, destination, rules, reason, last_status, attempts, body, dead_at, dedup_key) VALUES ('k', 't', 'd', '[]', 'r', NULL, 0, '{}', 1, 'msg:1:d')`,
      ).rowsWritten;
      return { insert, remove, keyed };
    });
    // The row, its destination index entry, and the AUTOINCREMENT counter (2 before the index); a keyed record
    // (every one the router writes) adds its key's index entry.
    // workerd reports 1 for the delete (the row); the index entry it removes is not in that count.
    expect(written).toEqual({ insert: 3, remove: 1, keyed: 4 });
  });
});
