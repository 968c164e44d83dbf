/**
 * The optional source allowlist on `POST /webhooks/workos` (defence in depth):
 * `CF-Connecting-IP` is checked before the body is read; `enforce` refuses,
 * `log` logs and counts but still verifies. Matching itself: source-ip-*.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { app } from '../../src/app';
import { parseRouterConfig } from '../../src/config/router-config';
import { testEnv } from '../helpers/consumer';
import { watchLogs } from '../helpers/observe';
import { URL_BASE, sampleEvent, signatureHeader } from '../helpers/webhook';

const ROUTE = { destinations: [{ name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' }], rules: [{ name: 'all', events: ['*'], to: ['audit'] }] };
const ALLOW = ['203.0.113.0/24', '2001:db8::/32', '198.51.100.7'];

async function post(ip: string | null, mode: 'log' | 'enforce', opts: { signed?: boolean; body?: BodyInit } = {}): Promise<Response> {
  const text = JSON.stringify(sampleEvent());
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (ip !== null) headers['CF-Connecting-IP'] = ip;
  if (opts.signed !== false) headers['WorkOS-Signature'] = await signatureHeader(text);
  return app.request(`${URL_BASE}/webhooks/workos`, { method: 'POST', headers, body: opts.body ?? text }, testEnv({ ...ROUTE, allowed_source_ips: ALLOW, source_ip_mode: mode }));
}

async function errorOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: string }).error;
}

describe('source allowlist', () => {
  it('enforce: addresses inside (v4, v6, CIDR edges) go on to the signature check and are accepted', async () => {
    for (const ip of ['203.0.113.0', '203.0.113.255', '198.51.100.7', '2001:db8::1', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '::ffff:203.0.113.9']) {
      const res = await post(ip, 'enforce');
      expect(res.status, ip).toBe(200);
    }
    // Inside but unsigned: the signature is still required.
    const unsigned = await post('203.0.113.1', 'enforce', { signed: false });
    expect(unsigned.status).toBe(401);
    expect(await errorOf(unsigned)).toBe('missing_signature');
  });

  it('enforce: outside, or no CF-Connecting-IP, is 403 source_not_allowed before the body is read', async () => {
    for (const ip of ['203.0.112.255', '203.0.114.0', '198.51.100.8', '2001:db9::', '::ffff:203.0.114.1', 'garbage', null]) {
      let pulled = false;
      const body = new ReadableStream(
        {
          pull(controller) {
            pulled = true;
            controller.enqueue(new TextEncoder().encode('{}'));
            controller.close();
          },
        },
        { highWaterMark: 0 },
      );
      const res = await post(ip, 'enforce', { body });
      expect(res.status, String(ip)).toBe(403);
      expect(await errorOf(res), String(ip)).toBe('source_not_allowed');
      expect(pulled, String(ip)).toBe(false);
    }
  });

  it('log: outside is logged (count, no address) and still verified and accepted', async () => {
    const logs = watchLogs();
    const res = await post('192.0.2.1', 'log');
    expect(res.status).toBe(200);
    const bad = await post('192.0.2.1', 'log', { signed: false });
    expect(bad.status).toBe(401);
    const line = logs.records().find((r) => r.msg === 'webhook' && r.source_ip_outside_allowlist === true);
    expect(line).toBeDefined();
    expect(JSON.stringify(logs.records())).not.toContain('192.0.2.1');
  });

  it('config: bad entries, a mode without a list, an unknown mode are problems naming the entry', () => {
    const problems = (extra: Record<string, unknown>) => {
      const r = parseRouterConfig({ ...ROUTE, ...extra }, () => ({ send() {}, sendBatch() {} }));
      return r.ok ? [] : r.problems;
    };
    expect(problems({ allowed_source_ips: ['10.0.0.1/8'] })).toEqual([expect.stringMatching(/^allowed_source_ips\[0\] "10\.0\.0\.1\/8": host bits set; did you mean 10\.0\.0\.0\/8\?/)]);
    expect(problems({ allowed_source_ips: [] })).toEqual([expect.stringContaining('allowed_source_ips: must be a non-empty list')]);
    expect(problems({ allowed_source_ips: '10.0.0.0/8' })).toEqual([expect.stringContaining('allowed_source_ips: must be a non-empty list')]);
    expect(problems({ source_ip_mode: 'enforce' })).toEqual(['source_ip_mode: set allowed_source_ips too (the addresses to allow)']);
    expect(problems({ allowed_source_ips: ['10.0.0.0/8'], source_ip_mode: 'block' })).toEqual(['source_ip_mode: must be "log" or "enforce"']);
    expect(problems({ allowed_source_ips: ['10.0.0.0/8'] })).toEqual([]);
  });
});
