/**
 * Property tests (fast-check; a failure prints its seed, path and shrunk
 * counterexample) for the source-IP allowlist, src/webhook/source-ip.ts.
 *
 *  1. For generated ranges (IPv4 and IPv6, prefixes biased to the edges —
 *     /0, /1, /31, /32, /95–/97, /127, /128 — and to IPv4-mapped space) and
 *     generated clients (the first and last address of a range, one below,
 *     one above, inside, anywhere; IPv4 clients also written IPv4-mapped and
 *     mapped ones written as IPv4), `matches` agrees with a naive reference
 *     written here on bit strings: a client matches a range of its family
 *     when its bits start with the range's first `prefix` bits; an
 *     IPv4-mapped address (80 zero bits, 16 one bits) is the IPv4 address of
 *     its last 32 bits, and a mapped range of /96 or narrower the IPv4 range
 *     of its bits after the 96th; wider IPv6 ranges are IPv6 only.
 *  2. `parseAddress(format(x))` round-trips for random addresses printed
 *     here in full (random zero padding and case), with any one run of zero
 *     groups compressed to "::" (not only the longest), and with a dotted
 *     IPv4 tail, with blanks around.
 *  3. On strings built from IP-ish tokens and on one-edit mutations of valid
 *     addresses, `parseAddress` accepts exactly what the RFC 3986 `IPv6address`
 *     / `IPv4address` grammar (transcribed below as a regular expression)
 *     accepts, and `parseRange` accepts only grammar-valid addresses with a
 *     plain decimal prefix in range.
 *  4. `parseRange`, `parseAddress`, `compileAllowlist` and `matches` never
 *     throw on arbitrary strings (and values), and their results are well formed.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type IpRange, compileAllowlist, parseAddress, parseRange } from '../../src/webhook/source-ip';

const RUNS = 3_000;
/** Generous: each property takes well under a second; more on a busy machine. */
const TIMEOUT = 120_000;

type Family = 4 | 6;
/** An address as the test writes it (IPv4-mapped ones may be written either way). */
interface Addr {
  version: Family;
  value: bigint;
}
const WIDTH: Record<Family, number> = { 4: 32, 6: 128 };

// ---------------------------------------------------------------------------
// The naive reference, on bit strings.

const MAPPED_BITS = `${'0'.repeat(80)}${'1'.repeat(16)}`;

const bitsOf = (a: Addr): string => a.value.toString(2).padStart(WIDTH[a.version], '0');

/** A client address as the reference sees it: family and all its bits. */
function refClient(a: Addr): { version: Family; bits: string } {
  const bits = bitsOf(a);
  if (a.version === 6 && bits.startsWith(MAPPED_BITS)) return { version: 4, bits: bits.slice(96) };
  return { version: a.version, bits };
}

/** A range as the reference sees it: family and only the bits the prefix fixes. */
function refRange(network: Addr, prefix: number): { version: Family; fixed: string } {
  const bits = bitsOf(network);
  if (network.version === 6 && prefix >= 96 && bits.startsWith(MAPPED_BITS)) return { version: 4, fixed: bits.slice(96, prefix) };
  return { version: network.version, fixed: bits.slice(0, prefix) };
}

function refMatches(ranges: { version: Family; fixed: string }[], client: Addr): boolean {
  const c = refClient(client);
  return ranges.some((r) => r.version === c.version && c.bits.startsWith(r.fixed));
}

// ---------------------------------------------------------------------------
// Formatting, written here (independent of source-ip.ts).

interface Style {
  form: 'full' | 'compressed' | 'dotted' | 'dotted-compressed';
  /** Bits 0–15: extra zero padding per group; bits 16–23: upper case per group. */
  seed: number;
  /** Which zero run to compress, modulo the number of candidates. */
  pick: number;
  /** Write an IPv4 address IPv4-mapped, or an IPv4-mapped one as IPv4. */
  cross: boolean;
  /** Leave out a /32 or /128 prefix. */
  bare: boolean;
  before: string;
  after: string;
}

const v4Text = (v: bigint): string => [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join('.');

function groupsOf(v: bigint): number[] {
  const out: number[] = [];
  for (let i = 7; i >= 0; i--) out.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  return out;
}

function hexGroup(g: number, seed: number, i: number): string {
  const h = g.toString(16);
  const padded = h.padStart(Math.min(4, h.length + ((seed >> (i * 2)) & 3)), '0');
  return (seed >> (16 + i)) & 1 ? padded.toUpperCase() : padded;
}

/** Every run [start, length] of one or more zero groups. */
function zeroRuns(groups: number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (let s = 0; s < groups.length; s++) {
    for (let e = s; e < groups.length && groups[e] === 0; e++) runs.push([s, e - s + 1]);
  }
  return runs;
}

function v6Text(v: bigint, style: Style): string {
  const groups = groupsOf(v);
  const dotted = style.form === 'dotted' || style.form === 'dotted-compressed';
  const n = dotted ? 6 : 8;
  const hex = groups.slice(0, n).map((g, i) => hexGroup(g, style.seed, i));
  const runs = zeroRuns(groups.slice(0, n));
  const run = runs[style.pick % Math.max(1, runs.length)];
  const compress = (style.form === 'compressed' || style.form === 'dotted-compressed') && run !== undefined;
  const head = compress ? `${hex.slice(0, run[0]).join(':')}::${hex.slice(run[0] + run[1]).join(':')}` : hex.join(':');
  if (!dotted) return head;
  const tail = v4Text(v & 0xffff_ffffn);
  return head.endsWith('::') ? `${head}${tail}` : `${head}:${tail}`;
}

const MAPPED_HIGH = 0xffffn << 32n;
const isMappedValue = (v: bigint) => v >> 32n === 0xffffn;

/** The address in the given style; returns the family it was written in too. */
function addrText(a: Addr, style: Style): { text: string; written: Family } {
  if (a.version === 4) return style.cross ? { text: v6Text(MAPPED_HIGH | a.value, style), written: 6 } : { text: v4Text(a.value), written: 4 };
  if (style.cross && isMappedValue(a.value)) return { text: v4Text(a.value & 0xffff_ffffn), written: 4 };
  return { text: v6Text(a.value, style), written: 6 };
}

function rangeText(network: Addr, prefix: number, style: Style): string {
  const { text, written } = addrText(network, style);
  // Moving between IPv4 and IPv4-mapped moves the prefix by 96; a mapped
  // range wider than /96 has no IPv4 spelling, so it stays as written.
  let p = prefix;
  if (written !== network.version) p = written === 6 ? prefix + 96 : prefix - 96;
  if (p < 0) return rangeText(network, prefix, { ...style, cross: false });
  const suffix = style.bare && p === WIDTH[written] ? '' : `/${p}`;
  return `${style.before}${text}${suffix}${style.after}`;
}

// ---------------------------------------------------------------------------
// Generators.

const MAX: Record<Family, bigint> = { 4: (1n << 32n) - 1n, 6: (1n << 128n) - 1n };

const v4Value = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: MAX[4] }) },
  { weight: 1, arbitrary: fc.constantFrom(0n, MAX[4], 0x7f00_0001n, 0x0a00_0000n, 0xc000_0201n, 0x8000_0000n, 0x7fff_ffffn) },
);
const group = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.constant(0xffff) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
const v6Value = fc.oneof(
  { weight: 4, arbitrary: fc.array(group, { minLength: 8, maxLength: 8 }).map((gs) => gs.reduce((v, g) => (v << 16n) | BigInt(g), 0n)) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: MAX[6] }) },
  // IPv4-mapped, IPv4-compatible (::a.b.c.d, IPv6) and their neighbours ::fffe:…, ::1:ffff:….
  { weight: 2, arbitrary: v4Value.map((v) => MAPPED_HIGH | v) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0n, 0xfffen, 0x1_ffffn, 0xffff_0000n), v4Value).map(([hi, v]) => (hi << 32n) | v) },
  { weight: 1, arbitrary: fc.constantFrom(0n, 1n, MAX[6], 1n << 127n, (1n << 127n) - 1n) },
);
const addr: fc.Arbitrary<Addr> = fc.oneof(
  v4Value.map((value) => ({ version: 4 as const, value })),
  v6Value.map((value) => ({ version: 6 as const, value })),
);

function prefixFor(version: Family): fc.Arbitrary<number> {
  const w = WIDTH[version];
  const edges = version === 4 ? [0, 1, 8, 16, 24, 31, 32] : [0, 1, 8, 32, 48, 64, 80, 95, 96, 97, 104, 120, 127, 128];
  return fc.oneof(fc.integer({ min: 0, max: w }), fc.constantFrom(...edges));
}

interface GenRange {
  network: Addr;
  prefix: number;
}
/** A range: a random address with its host bits cleared. */
const range: fc.Arbitrary<GenRange> = addr.chain((a) =>
  prefixFor(a.version).map((prefix) => {
    const w = WIDTH[a.version];
    const fixed = bitsOf(a).slice(0, prefix).padEnd(w, '0');
    return { network: { version: a.version, value: BigInt(`0b${fixed}`) }, prefix };
  }),
);

const blank = fc.constantFrom('', '', '', ' ', '\t', ' \r\n');
const style: fc.Arbitrary<Style> = fc.record({
  form: fc.constantFrom('full', 'compressed', 'dotted', 'dotted-compressed'),
  seed: fc.nat(),
  pick: fc.nat(),
  cross: fc.boolean(),
  bare: fc.boolean(),
  before: blank,
  after: blank,
});

type Near = 'first' | 'last' | 'below' | 'above' | 'inside' | 'anywhere';
const near = fc.constantFrom<Near>('first', 'last', 'below', 'above', 'inside', 'anywhere');

/** A client relative to a range (in the family the range is written in). */
function clientNear(r: GenRange, kind: Near, r1: bigint, other: Addr): Addr {
  const { version } = r.network;
  const host = (1n << BigInt(WIDTH[version] - r.prefix)) - 1n;
  const first = r.network.value;
  const last = first | host;
  const clamp = (v: bigint) => (v < 0n ? 0n : v > MAX[version] ? MAX[version] : v);
  const at = (value: bigint): Addr => ({ version, value: clamp(value) });
  switch (kind) {
    case 'first':
      return at(first);
    case 'last':
      return at(last);
    case 'below':
      return at(first - 1n);
    case 'above':
      return at(last + 1n);
    case 'inside':
      return at(first + (r1 % (host + 1n)));
    case 'anywhere':
      return other;
  }
}

const client = fc.record({ kind: near, r1: fc.bigInt({ min: 0n, max: MAX[6] }), other: addr, style });

// ---------------------------------------------------------------------------

describe('matches agrees with the bit-string reference', () => {
  it(`${RUNS} runs: one range, clients at its edges, inside and anywhere`, () => {
    fc.assert(
      fc.property(range, style, fc.array(client, { minLength: 1, maxLength: 8 }), (r, rs, clients) => {
        const text = rangeText(r.network, r.prefix, rs);
        const compiled = compileAllowlist([text]);
        if (!compiled.ok) throw new Error(`${JSON.stringify(text)} did not compile: ${compiled.problems.join('; ')}`);
        const ref = refRange(r.network, r.prefix);
        const parsed = compiled.ranges[0] as IpRange;
        expect(parsed.version).toBe(ref.version);
        expect(parsed.prefix).toBe(ref.fixed.length);
        expect(parsed.network.toString(2).padStart(WIDTH[ref.version], '0')).toBe(ref.fixed.padEnd(WIDTH[ref.version], '0'));
        expect(parsed.text).toBe(text.trim());
        for (const c of clients) {
          const a = clientNear(r, c.kind, c.r1, c.other);
          const ip = `${c.style.before}${addrText(a, c.style).text}${c.style.after}`;
          expect(compiled.matches(ip), `${JSON.stringify(ip)} in ${JSON.stringify(text)}`).toBe(refMatches([ref], a));
        }
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it(`${RUNS} runs: lists of ranges (both families), a client matches when any range does`, () => {
    const listCase = fc
      .array(fc.tuple(range, style), { minLength: 0, maxLength: 6 })
      .chain((ranges) =>
        fc.tuple(
          fc.constant(ranges),
          fc.array(fc.tuple(fc.nat(), client), { minLength: 1, maxLength: 10 }),
        ),
      );
    fc.assert(
      fc.property(listCase, ([ranges, clients]) => {
        const compiled = compileAllowlist(ranges.map(([r, s]) => rangeText(r.network, r.prefix, s)));
        if (!compiled.ok) throw new Error(compiled.problems.join('; '));
        const refs = ranges.map(([r]) => refRange(r.network, r.prefix));
        for (const [which, c] of clients) {
          const around = ranges[which % Math.max(1, ranges.length)];
          const a = around === undefined ? c.other : clientNear(around[0], c.kind, c.r1, c.other);
          const ip = addrText(a, c.style).text;
          expect(compiled.matches(ip), ip).toBe(refMatches(refs, a));
        }
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});

describe('parseAddress round-trips', () => {
  it(`${RUNS} runs: full, any-run compressed and dotted-tail spellings, both ways for IPv4-mapped`, () => {
    fc.assert(
      fc.property(addr, style, (a, s) => {
        const text = `${s.before}${addrText(a, s).text}${s.after}`;
        const ref = refClient(a);
        expect(parseAddress(text), text).toEqual({ version: ref.version, value: BigInt(`0b${ref.bits}`) });
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it(`${RUNS} runs: every compression of one address is the same address`, () => {
    fc.assert(
      fc.property(v6Value, fc.nat(), (v, seed) => {
        const base = { seed, cross: false, bare: false, before: '', after: '' };
        const expected = parseAddress(v6Text(v, { ...base, form: 'full', pick: 0 }));
        const groups = groupsOf(v);
        const spellings = [
          ...zeroRuns(groups).map((_, pick) => v6Text(v, { ...base, form: 'compressed', pick })),
          ...zeroRuns(groups.slice(0, 6)).map((_, pick) => v6Text(v, { ...base, form: 'dotted-compressed', pick })),
          v6Text(v, { ...base, form: 'dotted', pick: 0 }),
        ];
        for (const s of spellings) expect(parseAddress(s), s).toEqual(expected);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// RFC 3986 §3.2.2 IPv6address / IPv4address, transcribed.

const H16 = '[0-9A-Fa-f]{1,4}';
const DEC_OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])';
const IPV4 = `${DEC_OCTET}\\.${DEC_OCTET}\\.${DEC_OCTET}\\.${DEC_OCTET}`;
const LS32 = `(?:${H16}:${H16}|${IPV4})`;
const IPV6 = [
  `(?:${H16}:){6}${LS32}`,
  `::(?:${H16}:){5}${LS32}`,
  `(?:${H16})?::(?:${H16}:){4}${LS32}`,
  `(?:(?:${H16}:){0,1}${H16})?::(?:${H16}:){3}${LS32}`,
  `(?:(?:${H16}:){0,2}${H16})?::(?:${H16}:){2}${LS32}`,
  `(?:(?:${H16}:){0,3}${H16})?::${H16}:${LS32}`,
  `(?:(?:${H16}:){0,4}${H16})?::${LS32}`,
  `(?:(?:${H16}:){0,5}${H16})?::${H16}`,
  `(?:(?:${H16}:){0,6}${H16})?::`,
];
const GRAMMAR = new RegExp(`^(?:${IPV4}|${IPV6.join('|')})$`);
const PREFIX = /^(?:0|[1-9][0-9]*)$/;
const trimBlanks = (s: string) => s.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');

const TOKENS = [
  '0', '1', '7', '9', 'a', 'F', 'ff', 'ffff', 'FFFF', '0db8', '2001', '00000', '12345', '255', '256', '010', '00',
  '1.2.3.4', '192.0.2.1', '::ffff:', '.', ':', ':', '::', ':::', '%', '%eth0', '/', '/24', '/128', '/033', ' ', '\t',
  'x', '-', '[', ']', '\u0661', '\uff11', '\u00a0',
];
const token = fc.constantFrom(...TOKENS);
const tokenString = fc.array(token, { maxLength: 14 }).map((ts) => ts.join(''));
const validText = fc.tuple(addr, style).map(([a, s]) => addrText(a, s).text);
const mutated = fc
  .tuple(validText, fc.nat(), fc.constantFrom('delete', 'insert', 'replace', 'duplicate'), token)
  .map(([text, n, op, t]) => {
    const i = n % (text.length + 1);
    if (op === 'delete') return text.slice(0, i) + text.slice(i + 1);
    if (op === 'insert') return text.slice(0, i) + t + text.slice(i);
    if (op === 'replace') return text.slice(0, i) + t + text.slice(i + t.length);
    return text + text.slice(i);
  });
const ipish = fc.oneof(tokenString, mutated, validText);

describe('accepts exactly the RFC 3986 grammar', () => {
  it(`${RUNS * 2} runs: parseAddress(s) !== null exactly when s (trimmed) is an IPv4address or IPv6address`, () => {
    let valid = 0;
    let invalid = 0;
    fc.assert(
      fc.property(ipish, (s) => {
        const expected = GRAMMAR.test(trimBlanks(s));
        if (expected) valid++;
        else invalid++;
        expect(parseAddress(s) !== null, JSON.stringify(s)).toBe(expected);
      }),
      { numRuns: RUNS * 2 },
    );
    // Both sides of the boundary were exercised.
    expect(valid).toBeGreaterThan(RUNS / 5);
    expect(invalid).toBeGreaterThan(RUNS / 5);
  }, TIMEOUT);

  it(`${RUNS * 2} runs: parseRange accepts only a grammar-valid address with a plain decimal prefix in range (refusing otherwise only for host bits)`, () => {
    const withPrefix = fc.oneof(ipish, fc.tuple(ipish, fc.constantFrom('/', '/0', '/1', '/32', '/96', '/128', '/129')).map(([a, b]) => a + b));
    fc.assert(
      fc.property(withPrefix, (s) => {
        const t = trimBlanks(s);
        const slash = t.indexOf('/');
        const address = slash === -1 ? t : t.slice(0, slash);
        const prefix = slash === -1 ? null : t.slice(slash + 1);
        const width = address.includes(':') ? 128 : 32;
        const wellFormed = GRAMMAR.test(address) && (prefix === null || (PREFIX.test(prefix) && Number(prefix) <= width));
        const r = parseRange(s);
        if (r.ok) expect(wellFormed, JSON.stringify(s)).toBe(true);
        else if (wellFormed) expect(r.problem, JSON.stringify(s)).toMatch(/: host bits set; did you mean .+\/\d+\?$/);
      }),
      { numRuns: RUNS * 2 },
    );
  }, TIMEOUT);
});

describe('never throws', () => {
  const anyString = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 80 }),
    fc.string({ unit: 'grapheme-ascii', maxLength: 80 }),
    fc.string({ unit: 'binary', minLength: 60, maxLength: 400 }),
    ipish,
  );

  it(`${RUNS} runs: parseRange, parseAddress, compileAllowlist and matches on arbitrary strings`, () => {
    const compiled = compileAllowlist(['0.0.0.0/0', '::/0']);
    if (!compiled.ok) throw new Error('did not compile');
    fc.assert(
      fc.property(anyString, fc.array(anyString, { maxLength: 4 }), (s, list) => {
        const r = parseRange(s);
        if (r.ok) {
          expect(r.range.prefix).toBeGreaterThanOrEqual(0);
          expect(r.range.prefix).toBeLessThanOrEqual(WIDTH[r.range.version]);
          const hostBits = WIDTH[r.range.version] - r.range.prefix;
          expect(r.range.network >> BigInt(hostBits) << BigInt(hostBits)).toBe(r.range.network);
          expect(r.range.network >= 0n && r.range.network <= MAX[r.range.version]).toBe(true);
        } else {
          expect(typeof r.problem).toBe('string');
          expect(r.problem.length).toBeGreaterThan(0);
          expect(r.problem.length).toBeLessThan(1_000);
        }
        const a = parseAddress(s);
        if (a !== null) expect(a.value >= 0n && a.value <= MAX[a.version]).toBe(true);
        // Every valid address is in 0.0.0.0/0 or ::/0.
        expect(compiled.matches(s)).toBe(a !== null);
        const c = compileAllowlist(list);
        if (c.ok) expect(typeof c.matches(s)).toBe('boolean');
        else expect(c.problems.length).toBeGreaterThan(0);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it(`${RUNS} runs: arbitrary values where strings are expected`, () => {
    const compiled = compileAllowlist(['10.0.0.0/8']);
    if (!compiled.ok) throw new Error('did not compile');
    fc.assert(
      fc.property(fc.anything(), (v) => {
        const s = v as string;
        expect(() => parseRange(s)).not.toThrow();
        expect(() => parseAddress(s)).not.toThrow();
        expect(() => compileAllowlist([s])).not.toThrow();
        expect(() => compileAllowlist(v as string[])).not.toThrow();
        if (typeof v !== 'string') expect(compiled.matches(s)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});
