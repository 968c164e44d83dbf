/**
 * Property tests (fast-check; a failure prints its seed, path and shrunk
 * counterexample) for the webhook trust boundary, src/webhook/signature.ts:
 *
 *  1. Arbitrary `WorkOS-Signature` headers (duplicates, spacing, ordering,
 *     unicode, huge values, several `t` / `v1`, other schemes such as v0 / v2,
 *     empty parts, `=` inside values, the right digest under the wrong key or
 *     for the wrong `t`): parsing and verification never throw, a refusal
 *     carries one of the four typed reasons, and an acceptance always has a
 *     `v1` that an independent oracle confirms for the exact `t` text, the
 *     exact body bytes and one of the configured secrets, within the tolerance.
 *  2. Generated valid cases (random secrets incl. rotation lists read through
 *     `parseSecretList`, random bodies incl. unicode and raw bytes, `t` within
 *     and outside the tolerance in both directions, a body tampered by one
 *     byte, a wrong secret, decoy `v1` values and ignored schemes): the result
 *     is exactly what the oracle predicts, reason included.
 *  3. `signWorkOSPayload` output is what `@workos-inc/node` computes, and the
 *     SDK's `constructEvent` accepts it; our verifier accepts the SDK's header.
 *
 * The oracle HMAC is plain WebCrypto written here, independently of
 * signature.ts (the Worker runs without `nodejs_compat`: no node:crypto).
 */
import { WorkOS } from '@workos-inc/node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type VerifyResult,
  parseSecretList,
  parseSignatureHeader,
  signWorkOSPayload,
  verifyWorkOSSignature,
} from '../../src/webhook/signature';

const RUNS = 2_500;
/** Generous: each property takes about a second; more on a busy machine. */
const TIMEOUT = 120_000;
const NOW = 1_790_000_000_000;
const REASONS = ['missing_signature', 'malformed_signature', 'timestamp_out_of_tolerance', 'signature_mismatch'];

const enc = new TextEncoder();

// ---------------------------------------------------------------------------
// Oracle: HMAC-SHA256(secret, "<t>.<body>") with WebCrypto, written here.

const oracleKeys = new Map<string, Promise<CryptoKey>>();
function oracleKey(secret: string): Promise<CryptoKey> {
  let key = oracleKeys.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey('raw', enc.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    oracleKeys.set(secret, key);
  }
  return key;
}

async function oracleHex(secret: string, tText: string, body: Uint8Array): Promise<string> {
  const prefix = enc.encode(`${tText}.`);
  const msg = new Uint8Array(prefix.length + body.length);
  msg.set(prefix, 0);
  msg.set(body, prefix.length);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', await oracleKey(secret), msg));
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join('');
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Independent reading of the documented grammar, used only to judge an
 * acceptance: comma-separated `key=value` items, blanks (String#trim, i.e. JS
 * WhiteSpace + LineTerminator, which is `\s`) allowed around items, keys and
 * values. Returns the `t` digit strings and the 64-hex `v1` values present.
 */
function oracleCandidates(header: string): { ts: string[]; v1s: string[] } {
  const ts: string[] = [];
  const v1s: string[] = [];
  for (const item of header.split(',')) {
    const t = /^\s*t\s*=\s*(\d+)\s*$/.exec(item);
    if (t?.[1] !== undefined) ts.push(t[1]);
    const v = /^\s*v1\s*=\s*([0-9a-fA-F]{64})\s*$/.exec(item);
    if (v?.[1] !== undefined) v1s.push(v[1].toLowerCase());
  }
  return { ts, v1s };
}

/** Is there a `t` within tolerance and a `v1` that one of the secrets produces for exactly that `t` text and body? */
async function oracleWouldAccept(
  header: string,
  body: Uint8Array,
  secrets: readonly string[],
  toleranceSeconds: number,
  nowMs: number,
): Promise<{ ok: boolean; timestampMs?: number }> {
  const { ts, v1s } = oracleCandidates(header);
  for (const t of ts) {
    if (Math.abs(nowMs - Number(t)) > toleranceSeconds * 1000) continue;
    for (const secret of secrets) {
      if (v1s.includes(await oracleHex(secret, t, body))) return { ok: true, timestampMs: Number(t) };
    }
  }
  return { ok: false };
}

// ---------------------------------------------------------------------------
// Generators

/** Secrets as `parseSecretList` would yield them: non-empty, trimmed, no comma. Unicode included. */
const secretArb = fc
  .oneof(
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
    fc.stringMatching(/^whsec_[A-Za-z0-9]{8,40}$/),
  )
  .map((s) => s.replace(/,/g, '').trim())
  .filter((s) => s.length > 0);

/** Bodies: JSON (with unicode), arbitrary unicode text, raw bytes (not UTF-8), empty, and occasionally large. */
const bodyArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => enc.encode(JSON.stringify(v) ?? 'null')) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 300 }).map((s) => enc.encode(s)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 100 }).map((s) => enc.encode(s)) },
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 512 }) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 100_000 }).map((n) => new Uint8Array(n).fill(0x61)) },
);

/** 64 lowercase hex digits (a random `v1`). */
const hexArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(''));

/** Tolerance in seconds, as configured (1–3600; 180 by default). */
const toleranceArb = fc.oneof(fc.constant(180), fc.integer({ min: 1, max: 3600 }));

/** Offset of `t` from now in ms, biased to the tolerance boundary on both sides. */
function offsetArb(toleranceSeconds: number): fc.Arbitrary<number> {
  const tol = toleranceSeconds * 1000;
  return fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: -tol, max: tol }) },
    { weight: 2, arbitrary: fc.constantFrom(-tol, tol, -tol - 1, tol + 1, 0, -tol + 1, tol - 1) },
    { weight: 1, arbitrary: fc.integer({ min: tol + 1, max: tol + 10 * 86_400_000 }) },
    { weight: 1, arbitrary: fc.integer({ min: -tol - 10 * 86_400_000, max: -tol - 1 }) },
  );
}

/** Blanks that String#trim removes (ASCII and unicode) and that a separator may carry. */
const BLANKS = [' ', '  ', '\t', '\n', '\u00a0', '\u2003', '\ufeff', '\u2028', '\r\n'];
const blankArb = fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 2, arbitrary: fc.constantFrom(...BLANKS) });

// ---------------------------------------------------------------------------
// 1. Arbitrary headers

/** A header item, described (materialised once the digests are known, so the counterexample stays readable). */
type Item =
  | { kind: 't'; which: 'right' | 'other' | 'zeros' | 'decimal' | 'negative' | 'exponent' | 'empty' | 'huge' | 'unicode-digits'; pad: [string, string] }
  | {
      kind: 'v1';
      key: string;
      which: 'right' | 'upper' | 'other-t' | 'other-secret' | 'tampered' | 'near-last' | 'near-first' | 'short' | 'long' | 'trailing-eq' | 'random';
      pad: [string, string];
      hex: string;
    }
  | { kind: 'raw'; text: string };

const KEYS_FOR_DIGEST = ['v1', 'v1', 'v1', 'V1', 'v0', 'v2', 'v1x', 'xv1', 'v', 'v1 1', 's1', 't', '', 'v\u0031\u0301'];

const itemArb: fc.Arbitrary<Item> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('t' as const),
      which: fc.constantFrom('right', 'right', 'right', 'other', 'zeros', 'decimal', 'negative', 'exponent', 'empty', 'huge', 'unicode-digits'),
      pad: fc.tuple(blankArb, blankArb),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('v1' as const),
      key: fc.constantFrom(...KEYS_FOR_DIGEST),
      which: fc.constantFrom('right', 'right', 'upper', 'other-t', 'other-secret', 'tampered', 'near-last', 'near-first', 'short', 'long', 'trailing-eq', 'random'),
      pad: fc.tuple(blankArb, blankArb),
      hex: hexArb,
    }),
  },
  {
    weight: 3,
    arbitrary: fc
      .oneof(
        fc.constantFrom('', ' ', '=', '==', 't', 'v1', 't=', 'v1=', '=1', 'a=b=c', 'v0=', 'v2=x=y', 't==1', '\u0000', '🔑=🔒'),
        fc.string({ unit: 'grapheme', maxLength: 30 }),
        fc.string({ unit: 'binary', maxLength: 30 }),
        fc.tuple(fc.string({ maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 30 })).map(([k, v]) => `${k}=${v}`),
        fc.integer({ min: 4000, max: 20_000 }).map((n) => `v0=${'a'.repeat(n)}`),
      )
      .map((text) => ({ kind: 'raw' as const, text })),
  },
);

/**
 * Items the documentation says leave a header valid (unknown keys, empty parts,
 * extra well-formed `v1` values that do not verify), so that a fair share of the
 * generated headers can verify and the soundness check has acceptances to judge.
 */
const benignItemArb: fc.Arbitrary<Item> = fc.oneof(
  fc.record({
    kind: fc.constant('v1' as const),
    key: fc.constantFrom('v1', 'v0', 'v2', 'V1', 'v1x'),
    which: fc.constantFrom('upper', 'other-t', 'other-secret', 'tampered', 'near-last', 'near-first', 'random'),
    pad: fc.tuple(blankArb, blankArb),
    hex: hexArb,
  }),
  fc.constantFrom('', ' ', 'v0=', 'v2=x=y', '🔑=🔒', 'scheme=v1').map((text) => ({ kind: 'raw' as const, text })),
);

const SEPARATORS = [',', ', ', ' ,', ',,', ', ,', ',\t', ',\u00a0', ',\n', ' , '];

const arbitraryHeaderCase = fc.record({
  secrets: fc.uniqueArray(secretArb, { minLength: 1, maxLength: 3 }),
  signerInList: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  outsider: secretArb,
  body: bodyArb,
  toleranceSeconds: toleranceArb,
  /** Within tolerance most of the time, else up to ~10 days out, both directions. */
  offsetSeed: fc.integer({ min: -1_000_000, max: 1_000_000 }),
  inTolerance: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  /** A right `t` and a right `v1` are each added two times in three, among the other items, in any order. */
  withRightT: fc.oneof({ weight: 2, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  withRightV1: fc.oneof({ weight: 2, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  /** Other items: none, only ones that keep a header valid, or anything at all. */
  items: fc.oneof(
    { weight: 1, arbitrary: fc.constant([]) },
    { weight: 2, arbitrary: fc.array(benignItemArb, { minLength: 1, maxLength: 5 }) },
    { weight: 4, arbitrary: fc.array(itemArb, { minLength: 1, maxLength: 10 }) },
  ),
  order: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
  separators: fc.array(fc.constantFrom(...SEPARATORS), { minLength: 12, maxLength: 12 }),
  /** Usually built from items; sometimes the whole header is free text, absent, or blank. */
  whole: fc.oneof(
    { weight: 12, arbitrary: fc.constant({ use: false as const }) },
    {
      weight: 1,
      arbitrary: fc
        .oneof(fc.constant(null), fc.constantFrom('', '   ', '\t', '\u00a0'), fc.string({ unit: 'binary', maxLength: 200 }))
        .map((header) => ({ use: true as const, header })),
    },
  ),
});

type ArbitraryCase = typeof arbitraryHeaderCase extends fc.Arbitrary<infer T> ? T : never;

async function materialise(c: ArbitraryCase): Promise<{ header: string | null; t: number }> {
  const tol = c.toleranceSeconds * 1000;
  const offset = c.inTolerance ? c.offsetSeed % (tol + 1) : c.offsetSeed * 1_000;
  const t = NOW + offset;
  const tText = String(t);
  const signer = c.signerInList ? (c.secrets[0] as string) : c.outsider;
  const right = await oracleHex(signer, tText, c.body);
  const otherT = await oracleHex(signer, String(t + 1), c.body);
  const otherSecret = await oracleHex(`${signer}\u0000x`, tText, c.body);
  const tamperedBody = c.body.length === 0 ? new Uint8Array([0x20]) : Uint8Array.from(c.body, (b, i) => (i === 0 ? b ^ 0x01 : b));
  const tampered = await oracleHex(signer, tText, tamperedBody);
  const item = (it: Item): string => {
    if (it.kind === 'raw') return it.text;
    if (it.kind === 't') {
      const value = {
        right: tText,
        other: String(t + 7_777),
        zeros: `00${tText}`,
        decimal: `${tText}.0`,
        negative: `-${tText}`,
        exponent: `${tText}e0`,
        empty: '',
        huge: '9'.repeat(400),
        'unicode-digits': '١٧٩٠٠٠٠٠٠٠٠٠٠',
      }[it.which];
      return `${it.pad[0]}t=${it.pad[1]}${value}`;
    }
    const value = {
      right,
      upper: right.toUpperCase(),
      'other-t': otherT,
      'other-secret': otherSecret,
      tampered,
      'near-last': nearMiss(right, right.length - 1),
      'near-first': nearMiss(right, 0),
      short: right.slice(1),
      long: `${right}0`,
      'trailing-eq': `${right}=`,
      random: it.hex,
    }[it.which];
    return `${it.pad[0]}${it.key}=${value}${it.pad[1]}`;
  };
  if (c.whole.use) return { header: c.whole.header, t };
  const all: Item[] = [...c.items];
  if (c.withRightT) all.push({ kind: 't', which: 'right', pad: ['', ''] });
  if (c.withRightV1) all.push({ kind: 'v1', key: 'v1', which: 'right', pad: ['', ''], hex: '' });
  const keyed = all.map((it, i) => ({ text: item(it), k: c.order[i % c.order.length] as number, i }));
  keyed.sort((a, b) => a.k - b.k || a.i - b.i);
  const header = keyed.map((x, i) => (i === 0 ? '' : c.separators[i % c.separators.length]) + x.text).join('');
  return { header, t };
}

/** The digest with one hex digit changed: equal in all but one byte (catches a comparison that stops early). */
function nearMiss(hex: string, at: number): string {
  const c = hex[at] === '0' ? '1' : '0';
  return hex.slice(0, at) + c + hex.slice(at + 1);
}

function describeHeader(h: string | null): string {
  if (h === null) return 'null';
  return h.length > 300 ? `${JSON.stringify(h.slice(0, 300))}… (${h.length} chars)` : JSON.stringify(h);
}

// ---------------------------------------------------------------------------
// 2. Valid cases with a known answer

/** Unknown schemes and empty parts the documentation says are ignored: no comma, key not t/v1 once trimmed. */
const ignoredItemArb = fc.oneof(
  fc.constantFrom('', ' ', '\t'),
  fc
    .tuple(
      fc.oneof(fc.constantFrom('v0', 'v2', 'V1', 'T', 'v1x', 'x', 'scheme', 'ñ', '🔑'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 })),
      fc.string({ unit: 'grapheme', maxLength: 80 }),
    )
    .filter(([k]) => !k.includes('=') && !k.includes(',') && k.trim() !== '' && k.trim() !== 't' && k.trim() !== 'v1')
    .map(([k, v]) => `${k}=${v.replace(/,/g, ';')}`),
);

const validCase = fc
  .record({
    secrets: fc.uniqueArray(secretArb, { minLength: 1, maxLength: 4 }),
    /** Index of the signing secret in the rotation list; -1: a secret not in the list. */
    signer: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 1, arbitrary: fc.constant(-1) }),
    outsider: secretArb,
    body: bodyArb,
    toleranceSeconds: toleranceArb,
    leadingZeros: fc.constantFrom(0, 0, 0, 1, 2),
    /** One byte of the body changed after signing (1 run in 5). */
    tamper: fc.oneof(
      { weight: 4, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }) },
    ),
    /** Other v1 values in the header: random hex, the outsider's digest, the right digest off by one byte (never valid). */
    decoys: fc.array(fc.oneof(hexArb, fc.constantFrom('outsider', 'near-first', 'near-last')), { maxLength: 3 }),
    /** Send only a near miss instead of the right digest (1 run in 6). */
    onlyNearMiss: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    ignored: fc.array(ignoredItemArb, { maxLength: 3 }),
    upper: fc.boolean(),
    order: fc.array(fc.nat(), { minLength: 16, maxLength: 16 }),
    joiner: fc.constantFrom(',', ', ', ' , ', ',\t', ',  '),
    listJoiner: fc.constantFrom(',', ', ', ' ,', ' , '),
  })
  .chain((c) => offsetArb(c.toleranceSeconds).map((offset) => ({ ...c, offset })));

// ---------------------------------------------------------------------------

describe('signature: arbitrary headers never throw and never accept a forgery', () => {
  it(`${RUNS} runs: verify never throws, refuses with a typed reason, and accepts only with a valid v1 for the exact t and body`, async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(arbitraryHeaderCase, async (c) => {
        const { header } = await materialise(c);
        if (header !== null) {
          const parsed = parseSignatureHeader(header); // must not throw
          if (parsed !== null) {
            expect(parsed.digests.length).toBeGreaterThan(0);
            for (const d of parsed.digests) expect(d.length).toBe(32);
            expect(/^\d+$/.test(parsed.timestampText)).toBe(true);
          }
        }
        let result: VerifyResult;
        try {
          result = await verifyWorkOSSignature({
            header,
            body: c.body,
            secrets: c.secrets,
            toleranceSeconds: c.toleranceSeconds,
            nowMs: NOW,
          });
        } catch (err) {
          throw new Error(`verify threw for header ${describeHeader(header)}: ${String(err)}`);
        }
        const oracle = header === null ? { ok: false } : await oracleWouldAccept(header, c.body, c.secrets, c.toleranceSeconds, NOW);
        if (result.ok) {
          accepted++;
          if (!oracle.ok) throw new Error(`accepted without a valid v1 for the exact t and body: ${describeHeader(header)}`);
          expect(result.timestampMs).toBe(oracle.timestampMs);
          // An ambiguous header (two `t` items: which one was signed?) is never accepted.
          if (header !== null && oracleCandidates(header).ts.length > 1) {
            throw new Error(`accepted a header with several t values: ${describeHeader(header)}`);
          }
        } else {
          expect(REASONS).toContain(result.reason);
          if (header === null || header.trim() === '') expect(result.reason).toBe('missing_signature');
        }
      }),
      { numRuns: RUNS },
    );
    // The generator must actually reach acceptances, or the soundness check above proves little.
    expect(accepted).toBeGreaterThan(RUNS / 50);
  }, TIMEOUT);
});

describe('signature: generated valid cases agree with the oracle', () => {
  it(`${RUNS} runs: rotation lists, unicode/raw bodies, tolerance both ways, one-byte tampering, wrong secret, decoys`, async () => {
    const seen = { ok: 0, timestamp_out_of_tolerance: 0, signature_mismatch: 0 };
    await fc.assert(
      fc.asyncProperty(validCase, async (c) => {
        // The rotation list as configured: WORKOS_WEBHOOK_SECRET="a,b", read by parseSecretList.
        const configured = c.secrets.join(c.listJoiner);
        const secrets = parseSecretList(configured);
        expect(secrets).toEqual(c.secrets);

        const signer = c.signer >= 0 && c.signer < c.secrets.length ? (c.secrets[c.signer] as string) : c.outsider;
        const t = NOW + c.offset;
        const tText = '0'.repeat(c.leadingZeros) + String(t);
        const digest = await oracleHex(signer, tText, c.body);

        let body = c.body;
        if (c.tamper !== null) {
          body = c.body.length === 0 ? new Uint8Array([c.tamper.xor]) : Uint8Array.from(c.body);
          if (c.body.length > 0) {
            const i = c.tamper.at % body.length;
            body[i] = (body[i] as number) ^ c.tamper.xor;
          }
        }

        const sent = c.onlyNearMiss ? nearMiss(digest, (c.order[0] as number) % 64) : digest;
        const v1s = [c.upper ? sent.toUpperCase() : sent];
        for (const d of c.decoys) {
          if (d === 'outsider') v1s.push(await oracleHex(`${c.outsider}\u0000decoy`, tText, c.body));
          else if (d === 'near-first') v1s.push(nearMiss(digest, 0));
          else if (d === 'near-last') v1s.push(nearMiss(digest, 63));
          else v1s.push(d);
        }
        const items = [`t=${tText}`, ...v1s.map((v) => `v1=${v}`), ...c.ignored];
        // Shuffle deterministically from the generated order keys.
        const keyed = items.map((text, i) => ({ text, k: c.order[i % c.order.length] as number, i }));
        keyed.sort((a, b) => a.k - b.k || a.i - b.i);
        const header = keyed.map((x) => x.text).join(c.joiner);

        // Expected, from first principles: tolerance (both directions, inclusive) first, then any v1 from any secret.
        let expected: VerifyResult;
        if (Math.abs(c.offset) > c.toleranceSeconds * 1000) expected = { ok: false, reason: 'timestamp_out_of_tolerance' };
        else {
          let match = false;
          for (const s of secrets) {
            const want = await oracleHex(s, tText, body);
            if (v1s.some((v) => v.toLowerCase() === want)) match = true;
          }
          // By construction: the signer's digest verifies iff the signer's key bytes are configured and the body is intact.
          const signerConfigured = secrets.some((s) => sameBytes(enc.encode(s), enc.encode(signer)));
          const intact = sameBytes(body, c.body);
          expect(match).toBe(signerConfigured && intact && !c.onlyNearMiss);
          expected = match ? { ok: true, timestampMs: t } : { ok: false, reason: 'signature_mismatch' };
        }

        const result = await verifyWorkOSSignature({ header, body, secrets, toleranceSeconds: c.toleranceSeconds, nowMs: NOW });
        if (JSON.stringify(result) !== JSON.stringify(expected)) {
          throw new Error(`header ${describeHeader(header)}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(result)}`);
        }
        seen[result.ok ? 'ok' : (result.reason as 'timestamp_out_of_tolerance' | 'signature_mismatch')]++;
      }),
      { numRuns: RUNS },
    );
    // Every outcome is exercised in a healthy share of runs.
    expect(seen.ok).toBeGreaterThan(RUNS / 10);
    expect(seen.timestamp_out_of_tolerance).toBeGreaterThan(RUNS / 10);
    expect(seen.signature_mismatch).toBeGreaterThan(RUNS / 10);
  }, TIMEOUT);

  it(`${RUNS} runs: signWorkOSPayload output round-trips through verifyWorkOSSignature and matches the oracle`, async () => {
    await fc.assert(
      fc.asyncProperty(
        secretArb,
        bodyArb,
        fc.integer({ min: 0, max: 4_102_444_800_000 }),
        fc.boolean(),
        async (secret, body, t, asString) => {
          // The string form is encoded as UTF-8 by the signer; lone surrogates become U+FFFD on both sides.
          const text = new TextDecoder().decode(body);
          const header = await signWorkOSPayload(secret, asString ? text : body, t);
          const bytes = asString ? enc.encode(text) : body;
          expect(header).toBe(`t=${t}, v1=${await oracleHex(secret, String(t), bytes)}`);
          expect(await verifyWorkOSSignature({ header, body: bytes, secrets: [secret], toleranceSeconds: 1, nowMs: t })).toEqual({
            ok: true,
            timestampMs: t,
          });
        },
      ),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});

describe('signature: agreement with @workos-inc/node (the SDK receivers verify with)', () => {
  const workos = new WorkOS('sk_test_property');
  /** Event-shaped payloads; the type is outside the SDK's deserializer switch, so only the signature is judged. */
  const payloadArb = fc.record({
    id: fc.stringMatching(/^event_[0-9A-Z]{26}$/),
    event: fc.constantFrom('router.property_test', 'x.y'),
    data: fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }),
    created_at: fc.constant('2026-11-20T10:00:00.000Z'),
  });

  it(`${RUNS} runs: signWorkOSPayload equals the SDK's computeSignature, constructEvent accepts it, and we accept the SDK's header`, async () => {
    await fc.assert(
      fc.asyncProperty(secretArb, payloadArb, async (secret, payload) => {
        const raw = JSON.stringify(payload);
        const t = Date.now();
        const ours = await signWorkOSPayload(secret, raw, t);
        const sdkDigest = await workos.webhooks.computeSignature(t, payload, secret);
        expect(ours).toBe(`t=${t}, v1=${sdkDigest}`);
        await workos.webhooks.constructEvent({ payload, sigHeader: ours, secret });
        const sdkHeader = `t=${t}, v1=${sdkDigest}`;
        const verified = await verifyWorkOSSignature({ header: sdkHeader, body: enc.encode(raw), secrets: [secret], toleranceSeconds: 180, nowMs: t });
        expect(verified).toEqual({ ok: true, timestampMs: t });
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});
