/**
 * The source allowlist's log line (README "Source allowlist"): requests from
 * outside `allowed_source_ips` are logged as `source_ip_outside_allowlist`
 * with a count, at most once a minute per isolate. The handler keeps the
 * count and the time of its last line in module state and reads the time
 * with `Date.now()`; the tests drive that clock (a spy on `Date.now`, which
 * the signature helper and the verifier share, so signatures stay valid) and
 * reset the module state through the handler itself: a request a whole
 * window after the last line logs and starts a new count.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { app } from '../../src/app';
import { testEnv } from '../helpers/consumer';
import { type LogRecord, watchLogs } from '../helpers/observe';
import { URL_BASE, sampleEvent, signatureHeader } from '../helpers/webhook';

const ROUTE = { destinations: [{ name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' }], rules: [{ name: 'all', events: ['*'], to: ['audit'] }] };
const ALLOW = ['203.0.113.0/24', '2001:db8::/32'];
const INSIDE = '203.0.113.10';
const OUTSIDE = '192.0.2.44';
const SECOND = 1000;
const MINUTE = 60 * SECOND;

/** The clock the router reads (`Date.now`); it only moves when a test moves it. Never goes back within the file. */
let now = Date.now();
function advance(ms: number): void {
  now += ms;
}

interface Sent {
  res: Response;
  body: string;
  signature: string;
}

async function post(ip: string, mode: 'log' | 'enforce' = 'log', marker = 'ada@example.com'): Promise<Sent> {
  const body = JSON.stringify(sampleEvent({ data: { id: `user_allow_${crypto.randomUUID()}`, email: marker, object: 'user' } }));
  const signature = await signatureHeader(body);
  const headers = { 'Content-Type': 'application/json', 'CF-Connecting-IP': ip, 'WorkOS-Signature': signature };
  const res = await app.request(`${URL_BASE}/webhooks/workos`, { method: 'POST', headers, body }, testEnv({ ...ROUTE, allowed_source_ips: ALLOW, source_ip_mode: mode }));
  return { res, body, signature };
}

const outsideLines = (records: LogRecord[]): LogRecord[] => records.filter((r) => r.msg === 'source_ip_outside_allowlist');
const flaggedWebhookLines = (records: LogRecord[]): LogRecord[] => records.filter((r) => r.msg === 'webhook' && r.source_ip_outside_allowlist === true);

beforeEach(async () => {
  vi.spyOn(Date, 'now').mockImplementation(() => now);
  // Whatever an earlier test left: a request a whole window later logs it and starts a new count (at 0 after it)...
  advance(10 * MINUTE);
  expect((await post(OUTSIDE)).res.status).toBe(200);
  // ...and another whole window later, the next request from outside opens a new line.
  advance(10 * MINUTE);
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('source allowlist: the source_ip_outside_allowlist line', () => {
  it('a burst from outside within a minute is logged once, at warn, with its count; requests from inside are not counted', async () => {
    const logs = watchLogs();
    for (let i = 0; i < 5; i++) {
      expect((await post(OUTSIDE)).res.status).toBe(200);
      expect((await post(INSIDE)).res.status).toBe(200);
      advance(5 * SECOND);
    }
    // The positive signal: every request from outside was handled and its webhook line marked.
    await vi.waitFor(() => expect(flaggedWebhookLines(logs.records())).toHaveLength(5));
    expect(logs.records().filter((r) => r.msg === 'webhook')).toHaveLength(10);
    // The first request of the burst opened the line (count: itself); the other four wait for the next line.
    expect(outsideLines(logs.records())).toEqual([{ level: 'warn', msg: 'source_ip_outside_allowlist', mode: 'log', count: 1 }]);
  });

  it('a minute after the last line, the next request from outside logs again, counting every request from outside since (enforce mode included)', async () => {
    const logs = watchLogs();
    // t = 0: opens the line (count 1), then three more within the minute.
    for (let i = 0; i < 4; i++) {
      expect((await post(OUTSIDE)).res.status).toBe(200);
      advance(10 * SECOND);
    }
    // t = 40 s, 50 s: refused in enforce mode, counted all the same.
    for (let i = 0; i < 2; i++) {
      expect((await post(OUTSIDE, 'enforce')).res.status).toBe(403);
      advance(10 * SECOND);
    }
    // t = 60 s - 1 ms: still within the minute.
    advance(-1);
    expect((await post(OUTSIDE)).res.status).toBe(200);
    await vi.waitFor(() => expect(logs.records().filter((r) => r.msg === 'webhook')).toHaveLength(7));
    expect(logs.records().filter((r) => r.msg === 'webhook' && r.outcome === 'source_not_allowed')).toHaveLength(2);
    expect(outsideLines(logs.records())).toHaveLength(1);

    // t = 60 s: a minute after the line. The requests from outside in between (3 + 2 + 1) and this one.
    advance(1);
    expect((await post(OUTSIDE)).res.status).toBe(200);
    await vi.waitFor(() => expect(logs.records().filter((r) => r.msg === 'webhook')).toHaveLength(8));
    expect(outsideLines(logs.records())).toEqual([
      { level: 'warn', msg: 'source_ip_outside_allowlist', mode: 'log', count: 1 },
      { level: 'warn', msg: 'source_ip_outside_allowlist', mode: 'log', count: 7 },
    ]);

    // Right after it, the count starts again and waits for the next minute; the line names the mode of the request that opened it.
    advance(SECOND);
    expect((await post(OUTSIDE)).res.status).toBe(200);
    advance(MINUTE);
    expect((await post(OUTSIDE, 'enforce')).res.status).toBe(403);
    await vi.waitFor(() => expect(logs.records().filter((r) => r.msg === 'webhook')).toHaveLength(10));
    expect(outsideLines(logs.records()).slice(2)).toEqual([{ level: 'warn', msg: 'source_ip_outside_allowlist', mode: 'enforce', count: 2 }]);
  });

  it('the line carries no body, signature or address, and neither does any line about those requests', async () => {
    const logs = watchLogs();
    const marker = `body-marker-${crypto.randomUUID()}@example.com`;
    const sent = [await post(OUTSIDE, 'log', marker), await post(OUTSIDE, 'log', marker)];
    advance(MINUTE);
    sent.push(await post(OUTSIDE, 'log', marker));
    for (const s of sent) expect(s.res.status).toBe(200);
    await vi.waitFor(() => expect(flaggedWebhookLines(logs.records())).toHaveLength(3));
    const lines = outsideLines(logs.records());
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(Object.keys(line).sort()).toEqual(['count', 'level', 'mode', 'msg']);

    const all = JSON.stringify(logs.records());
    expect(all).not.toContain(marker);
    expect(all).not.toContain(OUTSIDE);
    for (const s of sent) {
      const mac = /v1=([0-9a-f]+)/.exec(s.signature)?.[1];
      expect(mac).toMatch(/^[0-9a-f]{64}$/);
      expect(all).not.toContain(mac);
      expect(all).not.toContain(s.signature);
      expect(all).not.toContain(s.body);
    }
  });

  it('an IPv6 client outside the allowlist, in log and in enforce mode: the lines carry a count, never the address', async () => {
    const logs = watchLogs();
    const v6 = '2001:db9::44';
    expect((await post(v6, 'log')).res.status).toBe(200);
    advance(MINUTE);
    expect((await post(v6, 'enforce')).res.status).toBe(403);
    // The positive signal: both requests were handled and their webhook lines written.
    await vi.waitFor(() => expect(logs.records().filter((r) => r.msg === 'webhook')).toHaveLength(2));
    expect(flaggedWebhookLines(logs.records())).toHaveLength(1);
    expect(logs.records().filter((r) => r.msg === 'webhook' && r.outcome === 'source_not_allowed')).toHaveLength(1);
    expect(outsideLines(logs.records())).toEqual([
      { level: 'warn', msg: 'source_ip_outside_allowlist', mode: 'log', count: 1 },
      { level: 'warn', msg: 'source_ip_outside_allowlist', mode: 'enforce', count: 1 },
    ]);
    // In no spelling, in no line.
    const all = JSON.stringify(logs.records()).toLowerCase();
    for (const spelling of [v6, '2001:db9:', '2001:0db9', 'db9::44', ':44"']) expect(all).not.toContain(spelling);
  });
});
