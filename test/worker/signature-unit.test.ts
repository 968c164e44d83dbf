import { describe, expect, it } from 'vitest';
import { parseSignatureHeader, signWorkOSPayload, verifyWorkOSSignature } from '../../src/webhook/signature';
import { hmacHex } from '../helpers/webhook';

const enc = new TextEncoder();
const BODY = '{"id":"event_1","event":"user.created","data":{},"created_at":"2026-01-01T00:00:00Z"}';
const NOW = 1_790_000_000_000;

async function header(t: number, secret = 's1', body = BODY): Promise<string> {
  return `t=${t}, v1=${await hmacHex(secret, `${t}.${body}`)}`;
}

function verify(h: string | null, opts: { secrets?: string[]; body?: string; now?: number; tol?: number } = {}) {
  return verifyWorkOSSignature({
    header: h,
    body: enc.encode(opts.body ?? BODY),
    secrets: opts.secrets ?? ['s1'],
    toleranceSeconds: opts.tol ?? 180,
    nowMs: opts.now ?? NOW,
  });
}

describe('parseSignatureHeader', () => {
  it.each([
    ['', 'empty'],
    ['garbage', 'no key/value'],
    ['t=123', 'no v1'],
    [`v1=${'a'.repeat(64)}`, 'no t'],
    [`t=abc, v1=${'a'.repeat(64)}`, 'non-numeric t'],
    [`t=1, t=2, v1=${'a'.repeat(64)}`, 'two t'],
    ['t=1, v1=zz', 'non-hex v1'],
    [`t=1, v1=${'a'.repeat(63)}`, 'short v1'],
    [`t=1, =x, v1=${'a'.repeat(64)}`, 'empty key'],
    [`t=1,${' '.repeat(5000)}`, 'oversized'],
    ['t=1, v1=' + 'a'.repeat(64) + ', v1=' + '\u0000', 'control bytes'],
  ])('returns null and never throws for %j (%s)', (h) => {
    expect(parseSignatureHeader(h)).toBeNull();
  });

  it('accepts any order, spaces, several v1 and unknown keys', () => {
    const p = parseSignatureHeader(`v1=${'a'.repeat(64)} ,  v0=old,t=42 ,v1=${'B'.repeat(64)}`);
    expect(p).not.toBeNull();
    expect(p?.timestampMs).toBe(42);
    expect(p?.digests).toHaveLength(2);
  });
});

describe('verifyWorkOSSignature', () => {
  it('accepts a valid signature', async () => {
    expect(await verify(await header(NOW))).toEqual({ ok: true, timestampMs: NOW });
  });

  it('accepts v1 before t and extra whitespace', async () => {
    const t = NOW;
    const mac = await hmacHex('s1', `${t}.${BODY}`);
    expect((await verify(`v1=${mac},   t=${t}`)).ok).toBe(true);
  });

  it('accepts when any one of several v1 values matches', async () => {
    const t = NOW;
    const mac = await hmacHex('s1', `${t}.${BODY}`);
    expect((await verify(`t=${t}, v1=${'0'.repeat(64)}, v1=${mac}`)).ok).toBe(true);
  });

  it.each([
    [null, 'missing_signature'],
    ['   ', 'missing_signature'],
    ['t=1', 'malformed_signature'],
    ['v1=abc, t=x', 'malformed_signature'],
  ])('refuses %j with %s', async (h, reason) => {
    expect(await verify(h)).toEqual({ ok: false, reason });
  });

  it('refuses a wrong secret and a tampered body with signature_mismatch', async () => {
    expect(await verify(await header(NOW, 'other'))).toEqual({ ok: false, reason: 'signature_mismatch' });
    expect(await verify(await header(NOW), { body: BODY.replace('user', 'usur') })).toEqual({
      ok: false,
      reason: 'signature_mismatch',
    });
  });

  describe('secret rotation', () => {
    it('verifies with either the new or the old secret', async () => {
      const secrets = ['new', 'old'];
      expect((await verify(await header(NOW, 'new'), { secrets })).ok).toBe(true);
      expect((await verify(await header(NOW, 'old'), { secrets })).ok).toBe(true);
      expect((await verify(await header(NOW, 'neither'), { secrets })).ok).toBe(false);
    });
  });

  describe('timestamp tolerance (180 s, both directions)', () => {
    it.each([
      [-179_000, true],
      [179_000, true],
      [-180_000, true],
      [180_000, true],
      [-181_000, false],
      [181_000, false],
    ])('offset %d ms → ok=%s', async (offset, ok) => {
      const result = await verify(await header(NOW + offset));
      if (ok) expect(result.ok).toBe(true);
      else expect(result).toEqual({ ok: false, reason: 'timestamp_out_of_tolerance' });
    });

    it('honours a configured tolerance', async () => {
      expect((await verify(await header(NOW - 10_000), { tol: 5 })).ok).toBe(false);
      expect((await verify(await header(NOW - 4_000), { tol: 5 })).ok).toBe(true);
    });
  });

  it('signs in the WorkOS scheme (round trip through the independent HMAC)', async () => {
    const h = await signWorkOSPayload('dest-secret', BODY, NOW);
    expect(h).toBe(`t=${NOW}, v1=${await hmacHex('dest-secret', `${NOW}.${BODY}`)}`);
  });
});

describe('key cache', () => {
  it('imports each secret once per isolate, not per request', async () => {
    const { vi } = await import('vitest');
    const secret = `fresh-${crypto.randomUUID()}`;
    const headers = await Promise.all([0, 1, 2, 3, 4].map((i) => header(NOW + i, secret)));
    const importKey = vi.spyOn(crypto.subtle, 'importKey');
    for (const [i, h] of headers.entries()) {
      expect((await verify(h, { secrets: [secret], now: NOW + i })).ok).toBe(true);
    }
    const forSecret = importKey.mock.calls.filter((c) => new TextDecoder().decode(c[1] as Uint8Array) === secret);
    expect(forSecret).toHaveLength(1);
    importKey.mockRestore();
  });

  it("the destinations' signing secrets never push the webhook's own secrets out (a config with many HTTP destinations)", async () => {
    const { vi } = await import('vitest');
    const secrets = [`new-${crypto.randomUUID()}`, `old-${crypto.randomUUID()}`];
    const h = await header(NOW, secrets[1] as string);
    expect((await verify(h, { secrets, now: NOW })).ok).toBe(true);
    // A consumer batch re-signing for 200 destinations, each with its own signing_secret.
    for (let i = 0; i < 200; i++) await signWorkOSPayload(`dest-${i}-${crypto.randomUUID()}`, BODY, NOW);
    const importKey = vi.spyOn(crypto.subtle, 'importKey');
    expect((await verify(h, { secrets, now: NOW })).ok).toBe(true);
    expect(importKey).not.toHaveBeenCalled();
    importKey.mockRestore();
  });
});
