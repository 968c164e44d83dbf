/**
 * The console's session cookie, CSRF token and cookie helpers
 * (src/console/session.ts): round trips, every typed failure, exhaustive
 * one-character mutations of a genuine value, key derivation checked against
 * an oracle written here with plain Web Crypto, cookie parsing and the exact
 * Set-Cookie strings.
 */
import { describe, expect, it } from 'vitest';
import {
  CSRF_COOKIE,
  SESSION_COOKIE,
  SESSION_TTL_SECONDS,
  clearedCookie,
  createSession,
  csrfCookie,
  csrfMatches,
  newCsrfToken,
  readCookie,
  sessionCookie,
  verifySession,
} from '../../src/console/session';

const TOKEN = 'test-admin-token';
const NOW = 1_790_000_000_000;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const VALUE_SHAPE = /^v1\.[1-9][0-9]*\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/;

const enc = new TextEncoder();

/** Oracle: HMAC-SHA256(HMAC-SHA256(token, label), "v1.<exp>.<sid>") as base64url, written independently. */
async function oracleSig(adminToken: string, signed: string): Promise<string> {
  const hmac = { name: 'HMAC', hash: 'SHA-256' } as const;
  const root = await crypto.subtle.importKey('raw', enc.encode(adminToken), hmac, false, ['sign']);
  const derived = await crypto.subtle.sign('HMAC', root, enc.encode('workos-event-router console session v1'));
  const key = await crypto.subtle.importKey('raw', derived, hmac, false, ['sign']);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, enc.encode(signed)));
  return btoa(String.fromCharCode(...mac)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

describe('createSession / verifySession', () => {
  it('round trip: the value verifies and gives back the session', async () => {
    const { value, session } = await createSession(TOKEN, NOW);
    expect(value).toMatch(VALUE_SHAPE);
    expect(session.expiresAt).toBe(NOW + SESSION_TTL_SECONDS * 1000);
    expect(value.split('.')[1]).toBe(String(session.expiresAt));
    expect(value.split('.')[2]).toBe(session.sid);
    expect(await verifySession(TOKEN, value, NOW)).toEqual({ ok: true, session });
    expect(await verifySession(TOKEN, value, session.expiresAt - 1)).toEqual({ ok: true, session });
  });

  it('a custom TTL sets the expiry', async () => {
    const { value, session } = await createSession(TOKEN, NOW, 60);
    expect(session.expiresAt).toBe(NOW + 60_000);
    expect(await verifySession(TOKEN, value, NOW + 59_999)).toMatchObject({ ok: true });
    expect(await verifySession(TOKEN, value, NOW + 60_000)).toEqual({ ok: false, reason: 'expired' });
  });

  it('the signature is HMAC-SHA256 under the key derived from the token (oracle), never under the token itself', async () => {
    const { value } = await createSession(TOKEN, NOW);
    const signed = value.slice(0, value.lastIndexOf('.'));
    const sig = value.slice(value.lastIndexOf('.') + 1);
    expect(sig).toBe(await oracleSig(TOKEN, signed));
    // Not the token as MAC key:
    const hmac = { name: 'HMAC', hash: 'SHA-256' } as const;
    const direct = await crypto.subtle.importKey('raw', enc.encode(TOKEN), hmac, false, ['verify']);
    const sigBytes = Uint8Array.from(atob(sig.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    expect(await crypto.subtle.verify('HMAC', direct, sigBytes, enc.encode(signed))).toBe(false);
  });

  it('a value forged with the oracle (same derivation) verifies: the format is exactly the documented one', async () => {
    const signed = `v1.${NOW + 1000}.AAAAAAAAAAAAAAAAAAAAAA`;
    const value = `${signed}.${await oracleSig(TOKEN, signed)}`;
    expect(await verifySession(TOKEN, value, NOW)).toEqual({ ok: true, session: { sid: 'AAAAAAAAAAAAAAAAAAAAAA', expiresAt: NOW + 1000 } });
  });

  it('sids are random: two sessions never share one', async () => {
    const sids = new Set<string>();
    for (let i = 0; i < 50; i++) sids.add((await createSession(TOKEN, NOW)).session.sid);
    expect(sids.size).toBe(50);
  });

  it('expired: now at or past expiresAt', async () => {
    const { value, session } = await createSession(TOKEN, NOW);
    expect(await verifySession(TOKEN, value, session.expiresAt)).toEqual({ ok: false, reason: 'expired' });
    expect(await verifySession(TOKEN, value, session.expiresAt + 86_400_000)).toEqual({ ok: false, reason: 'expired' });
  });

  it('a clock that is not a number fails closed (expired)', async () => {
    const { value } = await createSession(TOKEN, NOW);
    for (const now of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expect(await verifySession(TOKEN, value, now)).toEqual({ ok: false, reason: 'expired' });
    }
  });

  it('the signature is checked before the expiry: a forged, expired value is bad_signature', async () => {
    const { value } = await createSession('another-token', NOW - 86_400_000);
    expect(await verifySession(TOKEN, value, NOW)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('a value made with another admin token (token rotation) is bad_signature', async () => {
    const { value } = await createSession('previous-admin-token', NOW);
    expect(await verifySession(TOKEN, value, NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(await verifySession(`${TOKEN} `, (await createSession(TOKEN, NOW)).value, NOW)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('an empty admin token verifies nothing, and issues nothing', async () => {
    const { value } = await createSession(TOKEN, NOW);
    expect(await verifySession('', value, NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    await expect(createSession('', NOW)).rejects.toThrow(TypeError);
  });

  it('createSession refuses a bad TTL or clock', async () => {
    for (const ttl of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(createSession(TOKEN, NOW, ttl)).rejects.toThrow(RangeError);
    }
    await expect(createSession(TOKEN, Number.NaN)).rejects.toThrow(RangeError);
    await expect(createSession(TOKEN, -NOW)).rejects.toThrow(RangeError);
  });

  it('missing: undefined or empty', async () => {
    expect(await verifySession(TOKEN, undefined, NOW)).toEqual({ ok: false, reason: 'missing' });
    expect(await verifySession(TOKEN, '', NOW)).toEqual({ ok: false, reason: 'missing' });
  });

  it('malformed: garbage, wrong version, extra or missing parts, non-canonical numbers and encodings, oversize', async () => {
    const { value } = await createSession(TOKEN, NOW);
    const [, exp, sid, sig] = value.split('.') as [string, string, string, string];
    const cases = [
      'garbage',
      ' ',
      '....',
      '...',
      'v1',
      `v2.${exp}.${sid}.${sig}`,
      `V1.${exp}.${sid}.${sig}`,
      `.${exp}.${sid}.${sig}`,
      `v1.${exp}.${sid}`,
      `v1.${exp}.${sid}.${sig}.`,
      `v1.${exp}.${sid}.${sig}.extra`,
      `x.v1.${exp}.${sid}.${sig}`,
      ` ${value}`,
      `${value} `,
      `${value}\n`,
      `v1.0${exp}.${sid}.${sig}`,
      `v1.+${exp}.${sid}.${sig}`,
      `v1.${exp}.0.${sid}.${sig}`,
      `v1.${exp}e0.${sid}.${sig}`,
      `v1.0x${Number(exp).toString(16)}.${sid}.${sig}`,
      `v1.${'9'.repeat(17)}.${sid}.${sig}`,
      `v1.${'9'.repeat(16)}.${sid}.${sig}`, // canonical digits but above MAX_SAFE_INTEGER
      `v1.-${exp}.${sid}.${sig}`,
      `v1..${sid}.${sig}`,
      `v1.${exp}..${sig}`,
      `v1.${exp}.${sid}.`,
      `v1.${exp}.${sid}=.${sig}`,
      `v1.${exp}.${sid}.${sig}=`,
      `v1.${exp}.${sid.replace(/-/g, '+').replace(/_/g, '/')}A.${sig}`,
      `v1.${exp}.${sid}.${sig.slice(0, -1)}`,
      `v1.${exp}.${sid}.${sig}A`,
      `v1.${exp}.${sid.slice(0, -1)}.${sig}`,
      `v1.${exp}.${sid}.${'+'.repeat(43)}`,
      `v1.${exp}.${sid}.${sig.slice(0, -1)}\u0100`,
      'x'.repeat(513),
      `${value}${'.'.repeat(513 - value.length)}`,
    ];
    for (const c of cases) {
      expect(await verifySession(TOKEN, c, NOW), JSON.stringify(c)).toEqual({ ok: false, reason: 'malformed' });
    }
  });

  it('non-canonical base64url spellings of the genuine signature or sid are refused (no second spelling verifies)', async () => {
    const { value } = await createSession(TOKEN, NOW);
    const [v, exp, sid, sig] = value.split('.') as [string, string, string, string];
    // The last char of a 32-byte value carries 2 unused bits; of a 16-byte value, 4.
    const sigLast = B64URL.indexOf(sig.slice(-1));
    for (let extra = 1; extra < 4; extra++) {
      const alt = `${v}.${exp}.${sid}.${sig.slice(0, -1)}${B64URL[sigLast + extra]}`;
      expect(await verifySession(TOKEN, alt, NOW)).toMatchObject({ ok: false });
    }
    const sidLast = B64URL.indexOf(sid.slice(-1));
    for (let extra = 1; extra < 16; extra++) {
      const alt = `${v}.${exp}.${sid.slice(0, -1)}${B64URL[sidLast + extra]}.${sig}`;
      expect(await verifySession(TOKEN, alt, NOW)).toMatchObject({ ok: false });
    }
  });

  it('every single-character change of a genuine value (replace, insert, delete) is refused', async () => {
    const { value } = await createSession(TOKEN, NOW);
    const alphabet = `${B64URL}. =+/"\u00e9\u0000`;
    const mutants = new Set<string>();
    for (let i = 0; i <= value.length; i++) {
      for (const c of alphabet) {
        if (i < value.length) mutants.add(value.slice(0, i) + c + value.slice(i + 1));
        mutants.add(value.slice(0, i) + c + value.slice(i));
      }
      if (i < value.length) mutants.add(value.slice(0, i) + value.slice(i + 1));
    }
    mutants.delete(value);
    let accepted = 0;
    const reasons = new Set<string>();
    for (const m of mutants) {
      const r = await verifySession(TOKEN, m, NOW);
      if (r.ok) accepted++;
      else reasons.add(r.reason);
    }
    expect(mutants.size).toBeGreaterThan(10_000);
    expect(accepted).toBe(0);
    expect([...reasons].sort()).toEqual(['bad_signature', 'malformed']);
  }, 60_000);
});

describe('readCookie', () => {
  it('reads one cookie among several', () => {
    const h = 'a=1; router_console=v1.abc; router_csrf=xyz';
    expect(readCookie(h, 'router_console')).toBe('v1.abc');
    expect(readCookie(h, 'router_csrf')).toBe('xyz');
    expect(readCookie(h, 'a')).toBe('1');
    expect(readCookie('only=one', 'only')).toBe('one');
  });

  it('removes one pair of double quotes', () => {
    expect(readCookie('a=1; s="quoted-value"; b=2', 's')).toBe('quoted-value');
    expect(readCookie('s=""', 's')).toBe('');
    expect(readCookie('s="x', 's')).toBeUndefined();
    expect(readCookie('s=""x""', 's')).toBeUndefined();
  });

  it('tolerates spaces around pairs, names and values', () => {
    expect(readCookie('  a=1 ;   s=value  ;b=2', 's')).toBe('value');
    expect(readCookie('a=1;s=value', 's')).toBe('value');
    expect(readCookie('a=1; s = value ; b=2', 's')).toBe('value');
    expect(readCookie('\ts=value\t', 's')).toBe('value');
  });

  it('keeps "=" inside the value', () => {
    expect(readCookie('s=a=b==; t=1', 's')).toBe('a=b==');
  });

  it('duplicates: the first wins', () => {
    expect(readCookie('s=first; s=second', 's')).toBe('first');
    expect(readCookie('a=1; s=first; b=2; s=second', 's')).toBe('first');
  });

  it('absent: other names, prefixes and suffixes of the name, pairs without "=", no header', () => {
    expect(readCookie('a=1; b=2', 's')).toBeUndefined();
    expect(readCookie('router_console_x=1; xrouter_console=2; router_consol=3', 'router_console')).toBeUndefined();
    expect(readCookie('Router_Console=1', 'router_console')).toBeUndefined();
    expect(readCookie('router_console; a=1', 'router_console')).toBeUndefined();
    expect(readCookie('', 's')).toBeUndefined();
    expect(readCookie(undefined, 's')).toBeUndefined();
    expect(readCookie('=1', '')).toBeUndefined();
  });

  it('empty value is present and empty', () => {
    expect(readCookie('s=; a=1', 's')).toBe('');
  });

  it('malformed value (not cookie-octets): undefined, and not the later duplicate', () => {
    expect(readCookie('s=a b; a=1', 's')).toBeUndefined();
    expect(readCookie('s=a,b', 's')).toBeUndefined();
    expect(readCookie('s=a"b', 's')).toBeUndefined();
    expect(readCookie('s=a\\b', 's')).toBeUndefined();
    expect(readCookie('s=\u00e9', 's')).toBeUndefined();
    expect(readCookie('s=a b; s=ok', 's')).toBeUndefined();
    // A malformed *other* cookie does not matter.
    expect(readCookie('x=a b; s=ok', 's')).toBe('ok');
  });
});

describe('Set-Cookie strings', () => {
  it('session cookie', () => {
    expect(sessionCookie('v1.123.abc.def', 28_800)).toBe('router_console=v1.123.abc.def; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=28800');
    expect(SESSION_COOKIE).toBe('router_console');
    expect(SESSION_TTL_SECONDS).toBe(28_800);
  });

  it('CSRF cookie', () => {
    expect(csrfCookie('tok', 600)).toBe('router_csrf=tok; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=600');
    expect(CSRF_COOKIE).toBe('router_csrf');
  });

  it('cleared cookie', () => {
    expect(clearedCookie(SESSION_COOKIE)).toBe('router_console=; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=0');
    expect(clearedCookie(CSRF_COOKIE)).toBe('router_csrf=; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=0');
  });

  it('a genuine session value round-trips through Set-Cookie and Cookie', async () => {
    const { value, session } = await createSession(TOKEN, NOW);
    const set = sessionCookie(value, SESSION_TTL_SECONDS);
    const cookieHeader = `other=1; ${set.slice(0, set.indexOf(';'))}`;
    expect(await verifySession(TOKEN, readCookie(cookieHeader, SESSION_COOKIE), NOW)).toEqual({ ok: true, session });
  });

  it('values, names or ages that would inject attributes are refused', () => {
    expect(() => sessionCookie('x; Domain=evil.example', 60)).toThrow(TypeError);
    expect(() => sessionCookie('x\r\nSet-Cookie: a=b', 60)).toThrow(TypeError);
    expect(() => csrfCookie('a,b', 60)).toThrow(TypeError);
    expect(() => clearedCookie('a=b')).toThrow(TypeError);
    expect(() => clearedCookie('')).toThrow(TypeError);
    expect(() => sessionCookie('x', -1)).toThrow(RangeError);
    expect(() => sessionCookie('x', 1.5)).toThrow(RangeError);
    expect(() => sessionCookie('x', Number.NaN)).toThrow(RangeError);
  });
});

describe('CSRF double submit', () => {
  it('new tokens are 43 base64url chars and random', () => {
    const tokens = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const t = newCsrfToken();
      expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
      tokens.add(t);
    }
    expect(tokens.size).toBe(50);
  });

  it('matches only when both are present, well-formed and equal', () => {
    const t = newCsrfToken();
    const other = newCsrfToken();
    expect(csrfMatches(t, t)).toBe(true);
    expect(csrfMatches(t, `${t}`)).toBe(true);
    expect(csrfMatches(t, other)).toBe(false);
    expect(csrfMatches(t, undefined)).toBe(false);
    expect(csrfMatches(undefined, t)).toBe(false);
    expect(csrfMatches(undefined, undefined)).toBe(false);
    expect(csrfMatches('', '')).toBe(false);
    // Different lengths: a prefix, one char more.
    expect(csrfMatches(t, t.slice(0, -1))).toBe(false);
    expect(csrfMatches(t.slice(0, -1), t)).toBe(false);
    expect(csrfMatches(t, `${t}A`)).toBe(false);
    expect(csrfMatches(`${t}A`, `${t}A`)).toBe(false);
    // Equal but not well-formed.
    const bad = `${t.slice(0, -1)}+`;
    expect(csrfMatches(bad, bad)).toBe(false);
    expect(csrfMatches('short', 'short')).toBe(false);
    // One char changed, anywhere.
    for (let i = 0; i < t.length; i++) {
      const c = t[i] === 'A' ? 'B' : 'A';
      expect(csrfMatches(t, t.slice(0, i) + c + t.slice(i + 1))).toBe(false);
    }
    // Case matters.
    const upper = t.toUpperCase();
    if (upper !== t) expect(csrfMatches(t, upper)).toBe(false);
  });
});
