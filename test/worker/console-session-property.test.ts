/**
 * Property tests (fast-check; a failure prints its seed, path and shrunk
 * counterexample) for the console session, src/console/session.ts:
 *
 *  1. Arbitrary strings — unicode, huge, session-shaped ones built from
 *     plausible parts (versions, numbers, base64url runs, dots) — never make
 *     verifySession throw and are never accepted; a refusal carries one of
 *     the four typed reasons.
 *  2. For genuine values (random tokens, clocks and TTLs), every one-char
 *     mutation (replace, insert, delete; any code point) is refused, while the
 *     genuine value itself is accepted.
 *  3. readCookie never throws, and what it returns is made of cookie-octets
 *     and appears in the header.
 *  4. csrfMatches is true exactly for two equal well-formed tokens.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createSession, csrfMatches, newCsrfToken, readCookie, verifySession } from '../../src/console/session';

const RUNS = 1_000;
const TIMEOUT = 120_000;
const TOKEN = 'test-admin-token';
const NOW = 1_790_000_000_000;
const REASONS = ['missing', 'malformed', 'bad_signature', 'expired'];
const B64URL_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('');

const b64urlRun = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...B64URL_CHARS), minLength: min, maxLength: max });

/** Session-shaped strings: near misses are where a lenient parser would slip. */
const sessionLike = fc
  .tuple(
    fc.constantFrom('v1', 'v2', 'V1', '', 'v1 ', 'v'),
    fc.oneof(fc.nat().map(String), fc.bigInt({ min: 0n, max: 10n ** 20n }).map(String), fc.constantFrom('0', '-1', '1e3', '0x10', ' 1', '')),
    fc.oneof(b64urlRun(0, 30), fc.constant('AAAAAAAAAAAAAAAAAAAAAA')),
    fc.oneof(b64urlRun(0, 50), fc.constant('A'.repeat(43))),
    fc.array(fc.string(), { maxLength: 2 }),
  )
  .map(([v, exp, sid, sig, extra]) => [v, exp, sid, sig, ...extra].join('.'));

const anyValue = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: 'grapheme', maxLength: 600 }),
  fc.string({ minLength: 500, maxLength: 2_000 }),
  sessionLike,
);

describe('verifySession on arbitrary input', () => {
  it(
    'never throws and never accepts',
    async () => {
      await fc.assert(
        fc.asyncProperty(anyValue, fc.oneof(fc.constant(TOKEN), fc.string()), fc.oneof(fc.constant(NOW), fc.double()), async (value, token, now) => {
          const r = await verifySession(token, value, now);
          expect(r.ok).toBe(false);
          if (!r.ok) expect(REASONS).toContain(r.reason);
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );
});

type Mutation = { kind: 'replace' | 'insert'; at: number; c: string } | { kind: 'delete'; at: number };

/** `at` < 0 counts from the end: the last chars of the sid and signature carry unused bits, where a lenient decoder slips. */
function mutate(value: string, m: Mutation): string {
  const span = m.kind === 'insert' ? value.length + 1 : value.length;
  const at = m.at < 0 ? span + m.at : m.at % span;
  if (m.kind === 'delete') return value.slice(0, at) + value.slice(at + 1);
  if (m.kind === 'insert') return value.slice(0, at) + m.c + value.slice(at);
  return value.slice(0, at) + m.c + value.slice(at + 1);
}

const mutationChar = fc.oneof(fc.constantFrom(...B64URL_CHARS, '.', '=', '+', '/'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }));
/** Anywhere, or at the end of the signature (-1) or of the sid (-45). */
const position = fc.oneof(fc.nat(), fc.constantFrom(-1, -2, -44, -45));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), at: position, c: mutationChar }),
  fc.record({ kind: fc.constant('insert' as const), at: position, c: mutationChar }),
  fc.record({ kind: fc.constant('delete' as const), at: position }),
);

describe('genuine values', () => {
  it(
    'the genuine value verifies; every one-char mutation of it is refused',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.string({ minLength: 1, maxLength: 64 }),
          fc.integer({ min: 1, max: 4_000_000_000_000 }),
          fc.integer({ min: 1, max: 30 * 86_400 }),
          fc.array(mutation, { minLength: 1, maxLength: 8 }),
          async (token, now, ttl, mutations) => {
            const { value, session } = await createSession(token, now, ttl);
            expect(await verifySession(token, value, now)).toEqual({ ok: true, session });
            for (const m of mutations) {
              const mutant = mutate(value, m);
              if (mutant === value) continue; // replacing a char by itself
              const r = await verifySession(token, mutant, now);
              expect(r.ok, `${JSON.stringify(m)} → ${mutant}`).toBe(false);
            }
          },
        ),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );
});

describe('readCookie', () => {
  const cookiePair = fc.tuple(fc.oneof(fc.constantFrom('s', 'a', ' s', 's '), fc.string()), fc.oneof(fc.string(), b64urlRun(0, 10).map((v) => `"${v}"`)));
  const header = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.array(cookiePair, { maxLength: 6 }).map((pairs) => pairs.map(([n, v]) => `${n}=${v}`).join('; ')),
  );

  it(
    'never throws; what it returns is cookie-octets found in the header',
    () => {
      // Runs where a value was found: the checks below must have run, not only the refusals.
      let found = 0;
      fc.assert(
        fc.property(fc.option(header, { nil: undefined }), fc.oneof(fc.constant('s'), fc.string()), (h, name) => {
          const v = readCookie(h, name);
          if (v !== undefined) {
            found++;
            expect(v).toMatch(/^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/);
            expect(h).toContain(v);
          }
        }),
        { numRuns: RUNS * 5 },
      );
      expect(found).toBeGreaterThan(0);
    },
    TIMEOUT,
  );
});

describe('csrfMatches', () => {
  it('true exactly for two equal well-formed tokens', () => {
    const wellFormed = b64urlRun(43, 43);
    const anyToken = fc.option(fc.oneof(wellFormed, fc.string(), b64urlRun(40, 46)), { nil: undefined });
    fc.assert(
      fc.property(anyToken, anyToken, (a, b) => {
        const expected = a !== undefined && a === b && /^[A-Za-z0-9_-]{43}$/.test(a);
        expect(csrfMatches(a, b)).toBe(expected);
        expect(csrfMatches(a, a)).toBe(a !== undefined && /^[A-Za-z0-9_-]{43}$/.test(a));
      }),
      { numRuns: RUNS * 5 },
    );
    const t = newCsrfToken();
    expect(csrfMatches(t, t)).toBe(true);
  });
});
