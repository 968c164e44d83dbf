/**
 * Property tests (fast-check; a failure prints its seed, path and shrunk
 * counterexample) for the parsers and validators that had none: each oracle
 * is written here, independently of the code under test.
 *
 *  1. parseIsoTime (src/config/iso-time.ts): for strings rendered from
 *     generated calendar parts (in and out of range), the result is the
 *     value computed here with a days-from-civil formula (no Date), or null
 *     exactly when a part is out of range or a time has no zone; arbitrary
 *     and near-ISO strings never throw, give null or an integer, and any
 *     accepted string is the instant Date.parse gives it.
 *  2. compileWhere / readPath (src/routing/where.ts): a generated `where`
 *     compiles exactly when the documented grammar (re-stated here) allows
 *     it, and each compiled test agrees with an evaluator written here;
 *     arbitrary values never throw; readPath agrees with a separate
 *     recursive walk over generated objects and lists.
 *  3. parseBulkRequest / parseIdempotencyKey (src/admin/bulk.ts) and
 *     parseEventReplay / parseLimit (src/admin/events.ts): arbitrary text
 *     throws nothing but ApiError 400 invalid_request; generated bodies are
 *     accepted exactly when the documented rules hold, with the normalised
 *     result computed here; keys are accepted iff 1–255 chars of 0x21–0x7E
 *     once trimmed.
 *  4. The admin events cursor (encodeCursor / decodeCursor): round trip, a
 *     URL-safe alphabet, and for any JSON value base64url-encoded here,
 *     acceptance iff it is [safe integer, string]; anything else is refused
 *     with ApiError 400, never another throw.
 *  5. isRouterMessage (src/queue/message.ts): accepts iff the documented
 *     minimum shape; never throws; valid messages survive JSON and
 *     structured clone.
 *  6. firstDuplicateKey (src/config/json-duplicates.ts): on JSON texts
 *     rendered from generated trees (keys written escaped or not, random
 *     blanks, strings holding structural characters) it names the path of
 *     the first repeated key, found here on the tree.
 *  7. parseRetryAfter (src/destinations/types.ts): delta seconds (BigInt
 *     oracle), IMF-fixdates rendered here from a civil-from-days formula,
 *     and arbitrary strings (never throws; undefined or 0–43,200).
 *  8. normalizeTeamDomain (src/console/access.ts): hosts built from valid
 *     and invalid labels, wrapped in schemes, slashes, blanks and case.
 *
 * Already covered elsewhere: the envelope (validation-unit), parseRoutedMessage
 * (public-events-unit), parseRouterConfig and its duplicate-key report
 * (validation-unit), signature headers, source IPs, cookies, Slack escaping.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseBulkRequest, parseIdempotencyKey } from '../../src/admin/bulk';
import { decodeCursor, encodeCursor, parseEventReplay, parseLimit } from '../../src/admin/events';
import { parseIsoTime } from '../../src/config/iso-time';
import { firstDuplicateKey } from '../../src/config/json-duplicates';
import { normalizeTeamDomain } from '../../src/console/access';
import { parseRetryAfter } from '../../src/destinations/types';
import { ApiError } from '../../src/http/errors';
import { isRouterMessage } from '../../src/queue/message';
import { compileWhere, readPath } from '../../src/routing/where';
import { DELIVERY_STATES } from '../../src/trace/store';

const RUNS = 1_000;
/** For the properties with an oracle to agree with (cheap: each run is microseconds). */
const MANY = 5_000;
/** Generous: each property takes well under a second; more on a busy machine. */
const TIMEOUT = 120_000;

// ---------------------------------------------------------------------------
// Shared helpers.

type Outcome<T> = { ok: true; value: T } | { ok: false };

/** Runs `f`; any throw other than the project's 400 invalid_request fails the property. */
function attempt<T>(f: () => T): Outcome<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).status).toBe(400);
    expect((e as ApiError).code).toBe('invalid_request');
    return { ok: false };
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** One edit (delete, insert, replace) at a position: near misses of valid strings. */
const mutated = (base: fc.Arbitrary<string>, alphabet: fc.Arbitrary<string>) =>
  fc.tuple(base, fc.nat(), alphabet, fc.constantFrom('delete', 'insert', 'replace')).map(([s, n, ch, op]) => {
    const at = s.length === 0 ? 0 : n % (s.length + 1);
    if (op === 'delete') return s.slice(0, at) + s.slice(at + 1);
    if (op === 'insert') return s.slice(0, at) + ch + s.slice(at);
    return s.slice(0, at) + ch + s.slice(at + 1);
  });

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil; no Date). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The inverse: [year, month, day] of a day count (civil_from_days). */
function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

/** Month length as the distance between two first-of-months. */
const daysInMonth = (y: number, m: number) => daysFromCivil(m === 12 ? y + 1 : y, m === 12 ? 1 : m + 1, 1) - daysFromCivil(y, m, 1);

// ---------------------------------------------------------------------------
// 1. ISO 8601 times.

interface IsoParts {
  year: number;
  month: number;
  day: number;
  time?: {
    hour: number;
    minute: number;
    second?: number;
    frac?: string;
    zone?: 'Z' | { sign: '+' | '-'; h: number; m: number };
  };
}

/** Present two times in three. */
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });
/** Present one time in ten. */
const rarely = <T>(a: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 9 }, { arbitrary: a, weight: 1 });
const edgeInt = (min: number, max: number, edges: number[]) => fc.oneof(fc.integer({ min, max }), fc.constantFrom(...edges));

const isoPartsArb: fc.Arbitrary<IsoParts> = fc.record(
  {
    year: edgeInt(0, 9999, [0, 1, 99, 100, 1600, 1900, 1970, 2000, 2024, 2100, 9999]),
    month: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 12 }), weight: 5 }, { arbitrary: fc.constantFrom(0, 13, 19, 99), weight: 1 }),
    day: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 28 }), weight: 3 }, { arbitrary: fc.constantFrom(0, 29, 30, 31, 32, 99), weight: 2 }),
    time: maybe(
      fc.record(
        {
          hour: edgeInt(0, 23, [0, 23, 24, 99]),
          minute: edgeInt(0, 59, [0, 59, 60, 99]),
          second: maybe(edgeInt(0, 59, [0, 59, 60, 99])),
          frac: maybe(fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 9 })),
          zone: fc.option(
            fc.oneof(
              fc.constant('Z' as const),
              fc.record({ sign: fc.constantFrom('+' as const, '-' as const), h: edgeInt(0, 23, [0, 23, 24, 99]), m: edgeInt(0, 59, [0, 59, 60, 99]) }),
            ),
            { nil: undefined, freq: 6 },
          ),
        },
        { requiredKeys: ['hour', 'minute'] },
      ),
    ),
  },
  { requiredKeys: ['year', 'month', 'day'] },
);

function renderIso(p: IsoParts): string {
  let s = `${pad(p.year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)}`;
  const t = p.time;
  if (t === undefined) return s;
  s += `T${pad(t.hour, 2)}:${pad(t.minute, 2)}`;
  if (t.second !== undefined) s += `:${pad(t.second, 2)}`;
  if (t.frac !== undefined) s += `.${t.frac}`;
  if (t.zone === 'Z') s += 'Z';
  else if (t.zone !== undefined) s += `${t.zone.sign}${pad(t.zone.h, 2)}:${pad(t.zone.m, 2)}`;
  return s;
}

/** The instant in ms, or null: the documented rules, computed without Date. */
function isoOracle(p: IsoParts): number | null {
  const t = p.time;
  if (p.month < 1 || p.month > 12 || p.day < 1 || p.day > daysInMonth(p.year, p.month)) return null;
  let ms = daysFromCivil(p.year, p.month, p.day) * 86_400_000;
  if (t === undefined) return ms;
  if (t.zone === undefined) return null; // a time without its zone is ambiguous
  if (t.frac !== undefined && t.second === undefined) return null; // not ISO: a fraction needs seconds
  if (t.hour > 23 || t.minute > 59 || (t.second ?? 0) > 59) return null;
  ms += t.hour * 3_600_000 + t.minute * 60_000 + (t.second ?? 0) * 1000;
  if (t.frac !== undefined) ms += Number(`${t.frac}00`.slice(0, 3)); // milliseconds, truncated
  if (t.zone !== 'Z') {
    if (t.zone.h > 23 || t.zone.m > 59) return null;
    ms -= (t.zone.sign === '-' ? -1 : 1) * (t.zone.h * 60 + t.zone.m) * 60_000;
  }
  return ms;
}

/** Parts that are always in range, with a zone when there is a time. */
const validIsoPartsArb: fc.Arbitrary<IsoParts> = fc.record(
  {
    year: fc.integer({ min: 1970, max: 2100 }),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 28 }),
    time: maybe(
      fc.record(
        {
          hour: fc.integer({ min: 0, max: 23 }),
          minute: fc.integer({ min: 0, max: 59 }),
          second: fc.integer({ min: 0, max: 59 }),
          frac: maybe(fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 9 })),
          zone: fc.oneof(fc.constant('Z' as const), fc.record({ sign: fc.constantFrom('+' as const, '-' as const), h: fc.integer({ min: 0, max: 23 }), m: fc.integer({ min: 0, max: 59 }) })),
        },
        { requiredKeys: ['hour', 'minute', 'second', 'zone'] },
      ),
    ),
  },
  { requiredKeys: ['year', 'month', 'day'] },
);

const ISO_CHARS = fc.constantFrom(...'0123456789-T:Z+.zt ');
const isoLike = fc.oneof(
  fc.oneof(isoPartsArb, validIsoPartsArb).map(renderIso),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: ISO_CHARS, maxLength: 35 }),
  mutated(isoPartsArb.map(renderIso), fc.oneof(ISO_CHARS, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }))),
);

describe('parseIsoTime', () => {
  it('property: generated calendar parts give the days-from-civil instant, or null exactly when a part is out of range or a time lacks its zone', () => {
    fc.assert(
      fc.property(isoPartsArb, (p) => {
        expect(parseIsoTime(renderIso(p))).toBe(isoOracle(p));
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: arbitrary and near-ISO strings never throw; the result is null or an integer, and an accepted string is Date.parse\'s instant', () => {
    fc.assert(
      fc.property(isoLike, (s) => {
        const r = parseIsoTime(s);
        if (r === null) return;
        expect(Number.isSafeInteger(r)).toBe(true);
        expect(r).toBe(Date.parse(s));
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// 2. where: compileWhere and readPath.

const PATH_CHARS = new Set('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-');
const pathOk = (p: string) => p.split('.').every((seg) => seg.length > 0 && [...seg].every((c) => PATH_CHARS.has(c)));
const isScalarRef = (v: unknown) => v === null || ['string', 'number', 'boolean'].includes(typeof v);
const OPERATORS = ['prefix', 'suffix', 'exists', 'not'];

/** The documented grammar of a condition. */
function conditionOk(spec: unknown): boolean {
  if (isScalarRef(spec)) return true;
  if (Array.isArray(spec)) return spec.length > 0 && spec.every(isScalarRef);
  if (!isObj(spec)) return false;
  const ops = Object.keys(spec);
  return (
    ops.length > 0 &&
    ops.every((op) => {
      const arg = spec[op];
      if (op === 'prefix' || op === 'suffix') {
        const list = typeof arg === 'string' ? [arg] : arg;
        return Array.isArray(list) && list.length > 0 && list.every((s) => typeof s === 'string' && s !== '');
      }
      if (op === 'exists') return typeof arg === 'boolean';
      if (op === 'not') return !(isObj(arg) && Object.hasOwn(arg, 'not')) && conditionOk(arg);
      return false;
    })
  );
}

const whereOk = (where: unknown) =>
  isObj(where) && Object.keys(where).length > 0 && Object.keys(where).every((p) => pathOk(p) && conditionOk(where[p]));

/** A list value matches when any element does. */
const anyEl = (v: unknown, f: (x: unknown) => boolean) => (Array.isArray(v) ? v.some(f) : f(v));
const sameValueZero = (a: unknown, b: unknown) => a === b || (Number.isNaN(a) && Number.isNaN(b));

/** The documented meaning of a (valid) condition on a value. */
function holds(spec: unknown, v: unknown): boolean {
  if (isScalarRef(spec)) return anyEl(v, (x) => x === spec);
  if (Array.isArray(spec)) return anyEl(v, (x) => isScalarRef(x) && spec.some((y) => sameValueZero(x, y)));
  const table = spec as Record<string, unknown>;
  return Object.keys(table).every((op) => {
    const arg = table[op];
    const list = (typeof arg === 'string' ? [arg] : arg) as string[];
    if (op === 'prefix') return anyEl(v, (x) => typeof x === 'string' && list.some((p) => x.slice(0, p.length) === p));
    if (op === 'suffix') return anyEl(v, (x) => typeof x === 'string' && list.some((p) => x.length >= p.length && x.slice(x.length - p.length) === p));
    if (op === 'exists') return arg === (v !== undefined && v !== null);
    return !holds(arg, v);
  });
}

const SEGMENT = fc.constantFrom('data', 'organization_id', 'a', 'b', '0', '1', 'x-y', 'A_9', '__proto__', 'constructor');
const pathArb = fc.oneof(
  { arbitrary: fc.array(SEGMENT, { minLength: 1, maxLength: 3 }).map((s) => s.join('.')), weight: 5 },
  { arbitrary: fc.constantFrom('', 'a..b', '.a', 'a.', 'a b', 'a/b', 'é', 'data.*', 'a\nb', '$'), weight: 1 },
  { arbitrary: fc.string({ maxLength: 6 }), weight: 1 },
);
const scalarArb = fc.oneof(
  fc.constantFrom('a', 'ab', 'b', 'ba', '', 'A'),
  fc.string({ maxLength: 3 }),
  fc.integer({ min: -2, max: 2 }),
  fc.constantFrom(-0, 0.5, Number.NaN, Number.POSITIVE_INFINITY, true, false, null),
);
const stringArg = fc.oneof(
  fc.constantFrom('a', 'ab', 'b', '', 'x'),
  fc.array(fc.constantFrom('a', 'b', '', 'ab', 'ba'), { maxLength: 3 }),
  fc.constantFrom<unknown>(1, null, ['a', 1], { a: 1 }),
);
const { condition: conditionArb } = fc.letrec((tie) => ({
  condition: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'where' },
    scalarArb,
    fc.array(fc.oneof(scalarArb, fc.constantFrom<unknown>({}, [1])), { maxLength: 3 }),
    tie('table'),
    fc.jsonValue({ maxDepth: 2 }),
  ),
  table: fc
    .array(fc.tuple(fc.constantFrom('prefix', 'suffix', 'exists', 'not', 'eq', 'Prefix'), fc.oneof(stringArg, fc.boolean(), tie('condition'))), { maxLength: 3 })
    .map((entries) => Object.fromEntries(entries)),
}));
/** Conditions built by the grammar (always valid), so that tables and negations get their share. */
const nonEmptyStrings = fc.oneof(fc.constantFrom('a', 'ab', 'b', 'x'), fc.array(fc.constantFrom('a', 'b', 'ab', 'ba'), { minLength: 1, maxLength: 3 }));
const { condition: validConditionArb } = fc.letrec((tie) => ({
  condition: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'valid-where' },
    scalarArb,
    fc.array(scalarArb, { minLength: 1, maxLength: 3 }),
    tie('table'),
  ),
  table: fc
    .record(
      {
        prefix: nonEmptyStrings,
        suffix: nonEmptyStrings,
        exists: fc.boolean(),
        // Anything but a table holding `not` itself.
        not: tie('condition').filter((c) => !(isObj(c) && Object.hasOwn(c, 'not'))),
      },
      { requiredKeys: [] },
    )
    .filter((t) => Object.keys(t).length > 0),
}));
const validPathArb = fc.array(SEGMENT, { minLength: 1, maxLength: 3 }).map((s) => s.join('.'));
/** One way for a condition to break a rule, next to valid ones. */
const defectArb = fc.oneof(
  validConditionArb.map((c) => ({ not: { not: c } })),
  fc.constantFrom<unknown>({}, [], [{}], [[1]], { prefix: '' }, { suffix: [] }, { prefix: ['a', ''] }, { exists: 'yes' }, { exists: null }, { eq: 1 }, { not: {} }, { not: [] }),
  validConditionArb.map((c) => ({ ...(isObj(c) ? c : { exists: true }), Prefix: 'a' })),
);
const whereArb = fc.oneof(
  { arbitrary: fc.array(fc.tuple(pathArb, conditionArb), { maxLength: 3 }).map((entries) => Object.fromEntries(entries)), weight: 3 },
  { arbitrary: fc.array(fc.tuple(validPathArb, validConditionArb), { minLength: 1, maxLength: 3 }).map((entries) => Object.fromEntries(entries)), weight: 3 },
  {
    arbitrary: fc
      .tuple(fc.array(fc.tuple(validPathArb, validConditionArb), { maxLength: 2 }), validPathArb, defectArb)
      .map(([entries, path, defect]) => Object.fromEntries([...entries, [path, defect]])),
    weight: 2,
  },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 1 },
);
/** Event field values as JSON holds them (no NaN): scalars, lists of them, lists of lists, objects, absent. */
const fieldValueArb = fc.oneof(
  scalarArb.filter((v) => !Number.isNaN(v)),
  fc.array(scalarArb.filter((v) => !Number.isNaN(v)), { maxLength: 3 }),
  fc.constantFrom<unknown>(undefined, {}, [['a']], [null], { a: 'a' }),
);

/** A separate walk: own fields only; a non-index step into a list reads that field of each object element (lists flattened once). */
function walk(cur: unknown, segs: readonly string[]): unknown {
  if (segs.length === 0) return cur;
  const [seg, ...rest] = segs as [string, ...string[]];
  const isIndex = seg !== '' && [...seg].every((c) => c >= '0' && c <= '9') && (seg === '0' || seg[0] !== '0');
  if (Array.isArray(cur) && !isIndex) {
    const found = cur.flatMap((el: unknown) => {
      if (!isObj(el)) return [];
      const d = Object.getOwnPropertyDescriptor(el, seg);
      if (d === undefined) return [];
      return Array.isArray(d.value) ? d.value : [d.value];
    });
    return found.length === 0 ? undefined : walk(found, rest);
  }
  if (typeof cur !== 'object' || cur === null) return undefined;
  const d = Object.getOwnPropertyDescriptor(cur, seg);
  return d === undefined ? undefined : walk(d.value, rest);
}

const KEY = fc.oneof({ arbitrary: fc.constantFrom('a', 'b'), weight: 3 }, { arbitrary: fc.constantFrom('0', '1', '01', 'length', '__proto__', 'constructor'), weight: 1 });
const { node: treeArb } = fc.letrec((tie) => ({
  node: fc.oneof(
    { maxDepth: 4, depthIdentifier: 'tree' },
    { arbitrary: fc.constantFrom<unknown>('x', 1, 0, null, true), weight: 1 },
    { arbitrary: fc.array(tie('node'), { maxLength: 3 }), weight: 2 },
    // Object.fromEntries makes `__proto__` an own field, as JSON.parse does.
    { arbitrary: fc.array(fc.tuple(KEY, tie('node')), { maxLength: 3 }).map((entries) => Object.fromEntries(entries)), weight: 3 },
  ),
}));
const segmentsArb = fc.array(
  fc.oneof({ arbitrary: fc.constantFrom('a', 'b', '0'), weight: 4 }, { arbitrary: fc.constantFrom('1', '2', '01', 'length', '__proto__', 'constructor', 'toString'), weight: 1 }),
  { maxLength: 4 },
);

describe('where', () => {
  it('property: compileWhere accepts exactly the documented grammar, and each compiled test agrees with the evaluator written here', () => {
    fc.assert(
      fc.property(whereArb, fc.array(fieldValueArb, { minLength: 1, maxLength: 6 }), (where, values) => {
        const r = compileWhere(where, 'rules[0].where');
        expect(r.ok).toBe(whereOk(where));
        if (!r.ok) {
          expect(r.problems.length).toBeGreaterThan(0);
          for (const p of r.problems) expect(p.startsWith('rules[0].where')).toBe(true);
          return;
        }
        const w = where as Record<string, unknown>;
        const paths = Object.keys(w);
        expect(r.conditions.map((c) => c.path)).toEqual(paths);
        for (const c of r.conditions) {
          expect(c.segments).toEqual(c.path.split('.'));
          for (const v of values) expect(c.test(v), `${c.path} ${JSON.stringify(w[c.path])} on ${JSON.stringify(v)}`).toBe(holds(w[c.path], v));
        }
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: compileWhere never throws on arbitrary values (names given lazily too)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything({ maxDepth: 3, withNullPrototype: true }), fc.jsonValue(), whereArb), fc.boolean(), (where, lazy) => {
        const r = compileWhere(where, lazy ? () => 'w' : 'w');
        if (!r.ok) {
          expect(r.problems.length).toBeGreaterThan(0);
          for (const p of r.problems) expect(typeof p).toBe('string');
        }
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: readPath agrees with a separate walk on generated objects and lists', () => {
    fc.assert(
      fc.property(treeArb, segmentsArb, (root, segs) => {
        expect(readPath(root, segs)).toStrictEqual(walk(root, segs));
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// 3. Admin request bodies: bulk dead-letter actions, event replay, limits, keys.

/** A time field as sent, with the instant the oracle gives it (null: refused). */
const timeArb = fc.oneof(
  { arbitrary: validIsoPartsArb.map((p) => ({ raw: renderIso(p) as unknown, ms: isoOracle(p) })), weight: 8 },
  { arbitrary: isoPartsArb.map((p) => ({ raw: renderIso(p) as unknown, ms: isoOracle(p) })), weight: 2 },
  { arbitrary: fc.constantFrom<unknown>(1_790_000_000_000, null, '', 'yesterday', '1', true).map((raw) => ({ raw, ms: null as number | null })), weight: 1 },
);

const PATTERN_CHARS = new Set('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.*-');
const patternOk = (p: unknown) => {
  if (typeof p !== 'string' || p.length > 256) return false;
  const body = p.startsWith('!') ? p.slice(1) : p;
  return body !== '' && [...body].every((c) => PATTERN_CHARS.has(c));
};
const patternArb = fc.oneof(
  { arbitrary: fc.constantFrom('user.*', '!user.deleted', 'dsync.*', '*', 'user.created', 'a-b_c.D9'), weight: 6 },
  fc.constantFrom('user.*', '!user.deleted', 'dsync.*', '*', '!', '', '!!a', 'a b', 'user.created', 'x'.repeat(256), 'x'.repeat(257), 'é', 'a!'),
  fc.string({ unit: fc.constantFrom(...'ab!*._-/ '), maxLength: 6 }),
);
const patternsArb = fc.oneof(
  { arbitrary: patternArb, weight: 3 },
  { arbitrary: fc.array(patternArb, { maxLength: 4 }), weight: 3 },
  fc.constantFrom<unknown>(Array(100).fill('a'), Array(101).fill('a'), 1, null, {}, [1], [['a']]),
);
/** One pattern or a non-empty list of at most 100, each valid; the list when so. */
const patternsOracle = (v: unknown): string[] | null => {
  const list = typeof v === 'string' ? [v] : v;
  return Array.isArray(list) && list.length >= 1 && list.length <= 100 && list.every(patternOk) ? (list as string[]) : null;
};

const textArb = fc.oneof(
  { arbitrary: fc.oneof(fc.constantFrom<unknown>('crm', 'ops', 'http_*', 'http_5xx', '(router)'), fc.string({ minLength: 1, maxLength: 8 })), weight: 8 },
  fc.constantFrom<unknown>('crm', '', 'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(256), 'x'.repeat(257), 'http_*', 'http*x', '*', 'a**', '(router)'),
  fc.string({ maxLength: 5 }),
  fc.constantFrom<unknown>(0, null, true, ['crm'], {}),
);
const textOk = (v: unknown, max: number): v is string => typeof v === 'string' && v.length >= 1 && v.length <= max;

/** A field name the object does not take (a near miss, empty, `__proto__`, or one of the other object's fields). */
const unknownKey = (known: readonly string[]) =>
  fc.constantFrom(...['destinaton', 'eventType', '', '__proto__', 'dry_run', 'filter', 'to', 'limit', 'cursor', 'state', 'event_type', 'reason', 'since'].filter((k) => !known.includes(k)));
const BULK_BODY_KEYS = ['filter', 'dry_run'];
const BULK_FILTER_KEYS = ['destination', 'event_type', 'reason', 'since', 'until'];
const REPLAY_BODY_KEYS = ['filter', 'to', 'dry_run', 'limit', 'cursor'];
const REPLAY_FILTER_KEYS = ['destination', 'event_type', 'state', 'since', 'until'];
/** Builds an object from optional fields and at most one extra key; JSON.parse makes `__proto__` an own field too. */
const objectOf = (fields: Record<string, unknown>, extra: string | undefined, extraValue: unknown) => {
  const entries = Object.entries(fields).filter(([, v]) => v !== undefined);
  if (extra !== undefined) entries.push([extra, extraValue]);
  return Object.fromEntries(entries);
};
const blanks = fc.constantFrom('', ' ', '\n', '\t ', '\r\n');
const asText = (body: unknown, ws: string) => (ws === '' ? JSON.stringify(body) : JSON.stringify(body, null, ws.length)) ?? 'null';

interface BulkCase {
  text: string;
  expected: unknown | null;
}

const bulkCaseArb: fc.Arbitrary<BulkCase> = fc
  .record(
    {
      destination: maybe(textArb),
      event_type: maybe(patternsArb),
      reason: maybe(textArb),
      since: maybe(timeArb),
      until: maybe(timeArb),
      untilIsSince: rarely(fc.constant(true)),
      filterExtra: rarely(unknownKey(BULK_FILTER_KEYS)),
      filterNotObject: rarely(fc.constantFrom<unknown>(null, [], 'crm', 1, [{}])),
      filterAbsent: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      dry_run: maybe(fc.oneof({ arbitrary: fc.boolean(), weight: 6 }, fc.constantFrom<unknown>('true', 1, null))),
      bodyExtra: rarely(unknownKey(BULK_BODY_KEYS)),
      bodyNotObject: rarely(fc.constantFrom<unknown>(null, [], 'x', 1, [{ filter: {} }])),
      ws: blanks,
    },
    { requiredKeys: ['filterAbsent', 'ws'] },
  )
  .map((generated) => {
    // Sometimes the same time on both sides: the edge of "since earlier than until".
    const c = generated.untilIsSince === true && generated.since !== undefined ? { ...generated, until: generated.since } : generated;
    const rawFilter =
      c.filterNotObject !== undefined
        ? c.filterNotObject
        : objectOf({ destination: c.destination, event_type: c.event_type, reason: c.reason, since: c.since?.raw, until: c.until?.raw }, c.filterExtra, 'x');
    const body = c.bodyNotObject !== undefined ? c.bodyNotObject : objectOf({ filter: c.filterAbsent ? undefined : rawFilter, dry_run: c.dry_run }, c.bodyExtra, {});
    const text = asText(body, c.ws);
    // The oracle: every documented rule, checked on the generated parts.
    let ok = isObj(body) && Object.keys(body).every((k) => BULK_BODY_KEYS.includes(k));
    ok &&= c.dry_run === undefined || typeof c.dry_run === 'boolean';
    ok &&= !c.filterAbsent && isObj(rawFilter) && Object.keys(rawFilter).every((k) => BULK_FILTER_KEYS.includes(k));
    ok &&= c.destination === undefined || textOk(c.destination, 256);
    ok &&= c.event_type === undefined || patternsOracle(c.event_type) !== null;
    ok &&= c.reason === undefined || (textOk(c.reason, 256) && (c.reason.indexOf('*') === -1 || c.reason.indexOf('*') === c.reason.length - 1));
    ok &&= c.since === undefined || c.since.ms !== null;
    ok &&= c.until === undefined || c.until.ms !== null;
    ok &&= c.since?.ms == null || c.until?.ms == null || c.since.ms < c.until.ms;
    if (!ok) return { text, expected: null };
    const filter: Record<string, unknown> = {};
    if (c.destination !== undefined) filter.destination = c.destination;
    if (c.event_type !== undefined) filter.event_type = patternsOracle(c.event_type);
    if (c.reason !== undefined) filter.reason = c.reason;
    if (c.since?.ms != null) filter.since = new Date(c.since.ms).toISOString();
    if (c.until?.ms != null) filter.until = new Date(c.until.ms).toISOString();
    return { text, expected: { filter, dry_run: c.dry_run === true } };
  });

interface ReplayCase {
  text: string;
  expected: unknown | null;
}

const STATES = DELIVERY_STATES as readonly string[];
const replayCaseArb: fc.Arbitrary<ReplayCase> = fc
  .record(
    {
      destination: maybe(textArb),
      event_type: maybe(patternsArb),
      state: maybe(fc.oneof({ arbitrary: fc.constantFrom<unknown>(...STATES), weight: 6 }, fc.constantFrom<unknown>('Delivered', '', 'dead', 1, null))),
      since: maybe(timeArb),
      until: maybe(timeArb),
      filterExtra: rarely(unknownKey(REPLAY_FILTER_KEYS)),
      filterNotObject: rarely(fc.constantFrom<unknown>(null, [], 'crm', 1)),
      filterAbsent: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      to: fc.option(textArb, { nil: undefined, freq: 20 }),
      dry_run: maybe(fc.oneof({ arbitrary: fc.boolean(), weight: 6 }, fc.constantFrom<unknown>('true', 1, null))),
      limit: maybe(fc.oneof({ arbitrary: fc.integer({ min: -2, max: 503 }), weight: 6 }, fc.constantFrom<unknown>(1, 500, 501, 0, 1.5, '10', null, 1e21))),
      cursor: maybe(fc.oneof({ arbitrary: fc.string({ maxLength: 8 }), weight: 6 }, fc.constantFrom<unknown>(1, null))),
      bodyExtra: rarely(unknownKey(REPLAY_BODY_KEYS)),
      bodyNotObject: rarely(fc.constantFrom<unknown>(null, [], 'x', 1)),
      ws: blanks,
    },
    { requiredKeys: ['filterAbsent', 'ws'] },
  )
  .map((c) => {
    const rawFilter =
      c.filterNotObject !== undefined
        ? c.filterNotObject
        : objectOf({ destination: c.destination, event_type: c.event_type, state: c.state, since: c.since?.raw, until: c.until?.raw }, c.filterExtra, 'x');
    const body =
      c.bodyNotObject !== undefined
        ? c.bodyNotObject
        : objectOf({ filter: c.filterAbsent ? undefined : rawFilter, to: c.to, dry_run: c.dry_run, limit: c.limit, cursor: c.cursor }, c.bodyExtra, {});
    const text = asText(body, c.ws);
    let ok = isObj(body) && Object.keys(body).every((k) => REPLAY_BODY_KEYS.includes(k));
    ok &&= !c.filterAbsent && isObj(rawFilter) && Object.keys(rawFilter).every((k) => REPLAY_FILTER_KEYS.includes(k));
    ok &&= c.destination === undefined || textOk(c.destination, 64);
    ok &&= c.event_type === undefined || patternsOracle(c.event_type) !== null;
    ok &&= c.state === undefined || (typeof c.state === 'string' && STATES.includes(c.state));
    ok &&= c.since === undefined || c.since.ms !== null;
    ok &&= c.until === undefined || c.until.ms !== null;
    // An empty range is refused, as in the dead-letter filters.
    ok &&= c.since?.ms == null || c.until?.ms == null || c.since.ms < c.until.ms;
    ok &&= textOk(c.to, 64);
    ok &&= c.dry_run === undefined || typeof c.dry_run === 'boolean';
    ok &&= c.limit === undefined || (typeof c.limit === 'number' && Number.isInteger(c.limit) && c.limit >= 1 && c.limit <= 500);
    ok &&= c.cursor === undefined || typeof c.cursor === 'string';
    if (!ok) return { text, expected: null };
    const filter: Record<string, unknown> = {};
    if (c.destination !== undefined) filter.destination = c.destination;
    if (c.event_type !== undefined) filter.type = patternsOracle(c.event_type);
    if (c.state !== undefined) filter.state = c.state;
    if (c.since?.ms != null) filter.since = c.since.ms;
    if (c.until?.ms != null) filter.until = c.until.ms;
    const expected: Record<string, unknown> = { filter, to: c.to, dry_run: c.dry_run === true, limit: c.limit ?? 100 };
    if (c.cursor !== undefined) expected.cursor = c.cursor;
    return { text, expected };
  });

/** Text that is rarely a valid body: random, JSON of anything, or a generated body cut or damaged. */
const bodyText = (cases: fc.Arbitrary<{ text: string }>) =>
  fc.oneof(
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.json({ maxDepth: 3 }),
    fc.constantFrom('', ' ', '\n\t', 'null', '{}', '[]', '{"filter":{}}', '{"filter":{},"to":"crm"}'),
    mutated(
      cases.map((c) => c.text),
      fc.constantFrom('"', '{', '}', '[', ']', ',', ':', '\\', 'x', '\u0000', '\ud800'),
    ),
    fc.tuple(cases, fc.nat()).map(([c, n]) => c.text.slice(0, n % (c.text.length + 1))),
  );

const KEY_BLANKS = fc.constantFrom('', ' ', '\t', '\n', '\r\n', '\u00a0', '\u2028', '\ufeff');
const printable = (min: number, max: number) => fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: min, maxLength: max });
const keyCoreArb = fc.oneof(
  printable(1, 40),
  printable(250, 260),
  fc.tuple(printable(1, 5), fc.constantFrom(' ', '\t', '\u00e9', '\u007f', '\u0000', '\n'), printable(1, 5)).map(([a, b, c]) => a + b + c),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('', ' ', 'x'.repeat(255), 'x'.repeat(256)),
);

describe('bulk and replay requests', () => {
  it('property: parseBulkRequest accepts a generated body exactly when the documented rules hold, with the normalised filter', () => {
    fc.assert(
      fc.property(bulkCaseArb, ({ text, expected }) => {
        const r = attempt(() => parseBulkRequest(text));
        if (expected === null) expect(r.ok, text).toBe(false);
        else expect(r, text).toEqual({ ok: true, value: expected });
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: parseEventReplay accepts a generated body exactly when the documented rules hold, with the parsed request', () => {
    fc.assert(
      fc.property(replayCaseArb, ({ text, expected }) => {
        const r = attempt(() => parseEventReplay(text));
        if (expected === null) expect(r.ok, text).toBe(false);
        else expect(r, text).toEqual({ ok: true, value: expected });
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: on arbitrary or damaged text, parseBulkRequest and parseEventReplay throw nothing but 400 invalid_request', () => {
    fc.assert(
      fc.property(bodyText(fc.oneof(bulkCaseArb, replayCaseArb)), (text) => {
        attempt(() => parseBulkRequest(text));
        attempt(() => parseEventReplay(text));
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: an Idempotency-Key is accepted (trimmed) iff 1–255 characters of 0x21–0x7E once trimmed; absent is null', () => {
    expect(parseIdempotencyKey(undefined)).toBeNull();
    fc.assert(
      fc.property(KEY_BLANKS, keyCoreArb, KEY_BLANKS, (before, core, after) => {
        const header = before + core + after;
        const trimmed = header.trim();
        let printableOnly = true;
        for (let i = 0; i < trimmed.length; i++) {
          const c = trimmed.charCodeAt(i);
          if (c < 0x21 || c > 0x7e) printableOnly = false;
        }
        const accept = trimmed.length >= 1 && trimmed.length <= 255 && printableOnly;
        expect(attempt(() => parseIdempotencyKey(header))).toEqual(accept ? { ok: true, value: trimmed } : { ok: false });
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: parseLimit gives the default for absent or empty, the number for 1–6 digits within 1..max, else 400', () => {
    const value = fc.oneof(
      fc.constantFrom(undefined, ''),
      fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 8 }),
      fc.constantFrom('1e2', '0x10', ' 5', '5 ', '+5', '-1', '1.0', '١', '５', 'NaN', 'Infinity'),
      fc.string({ maxLength: 5 }),
    );
    fc.assert(
      fc.property(value, fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 1_000_000 }), (v, def, max) => {
        let expected: Outcome<number>;
        if (v === undefined || v === '') expected = { ok: true, value: def };
        else {
          let n = 0;
          let digits = v.length <= 6;
          for (const ch of v) {
            if (ch < '0' || ch > '9') digits = false;
            n = n * 10 + (ch.charCodeAt(0) - 48);
          }
          expected = digits && n >= 1 && n <= max ? { ok: true, value: n } : { ok: false };
        }
        expect(attempt(() => parseLimit(v, def, max))).toEqual(expected);
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// 4. The admin events cursor.

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url without padding, written here (not btoa), of a string of code units 0–255. */
function base64url(bin: string): string {
  let out = '';
  for (let i = 0; i < bin.length; i += 3) {
    const a = bin.charCodeAt(i);
    const b = i + 1 < bin.length ? bin.charCodeAt(i + 1) : 0;
    const c = i + 2 < bin.length ? bin.charCodeAt(i + 2) : 0;
    out += B64URL[a >> 2] ?? '';
    out += B64URL[((a & 3) << 4) | (b >> 4)] ?? '';
    if (i + 1 < bin.length) out += B64URL[((b & 15) << 2) | (c >> 6)] ?? '';
    if (i + 2 < bin.length) out += B64URL[c & 63] ?? '';
  }
  return out;
}
/** JSON text with every non-ASCII code unit escaped: the same value, in bytes 0–127. */
const asciiJson = (v: unknown) => (JSON.stringify(v) ?? 'null').replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

const idArb = fc.oneof(
  printable(1, 256),
  fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 30 }),
);
const acceptedAtArb = fc.oneof(fc.integer({ min: 0, max: 4_102_444_800_000 }), fc.maxSafeInteger(), fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 0));
const cursorValueArb = fc.oneof(
  fc.tuple(
    fc.oneof(acceptedAtArb, fc.double(), fc.constantFrom<unknown>(2 ** 53, -(2 ** 53), 1.5, '1', null)),
    fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom<unknown>(1, null, ['a'])),
  ),
  fc.array(fc.oneof(acceptedAtArb, fc.string({ maxLength: 4 })), { maxLength: 3 }),
  fc.jsonValue({ maxDepth: 2 }),
);

describe('events cursor', () => {
  it('property: decodeCursor(encodeCursor(x)) is x, and the cursor is base64url without padding', () => {
    fc.assert(
      fc.property(acceptedAtArb, idArb, (accepted_at, id) => {
        const cursor = encodeCursor({ accepted_at, id });
        expect(cursor).toMatch(/^[A-Za-z0-9_-]*$/);
        expect(decodeCursor(cursor)).toEqual({ accepted_at, id });
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: any JSON value, base64url-encoded here, is accepted iff it is [safe integer, string]', () => {
    fc.assert(
      fc.property(cursorValueArb, (v) => {
        const json = asciiJson(v);
        const parsed: unknown = JSON.parse(json);
        const valid = Array.isArray(parsed) && parsed.length === 2 && Number.isSafeInteger(parsed[0]) && typeof parsed[1] === 'string';
        expect(attempt(() => decodeCursor(base64url(json)))).toEqual(valid ? { ok: true, value: { accepted_at: parsed[0], id: parsed[1] } } : { ok: false });
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: arbitrary and damaged cursors are refused with 400, or give a safe integer and a string; never another throw', () => {
    const real = fc.tuple(acceptedAtArb, idArb).map(([accepted_at, id]) => encodeCursor({ accepted_at, id }));
    const input = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: fc.constantFrom(...B64URL, '=', '+', '/', ' '), maxLength: 40 }),
      mutated(real, fc.oneof(fc.constantFrom(...B64URL, '=', '+', '/', ' ', '.'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }))),
    );
    fc.assert(
      fc.property(input, (cursor) => {
        const r = attempt(() => decodeCursor(cursor));
        if (!r.ok) return;
        expect(Object.keys(r.value).sort()).toEqual(['accepted_at', 'id']);
        expect(Number.isSafeInteger(r.value.accepted_at)).toBe(true);
        expect(typeof r.value.id).toBe('string');
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// 5. Queue messages.

const junk = fc.constantFrom<unknown>(undefined, null, 0, 1, '', '1', true, {}, [], { shard: 1 });
const messageLikeArb = fc.record(
  {
    v: fc.oneof(fc.constant<unknown>(1), fc.constantFrom<unknown>(2, '1', 1.5), junk),
    id: fc.oneof(fc.string({ maxLength: 5 }), junk),
    type: fc.oneof(fc.constantFrom<unknown>('user.created', ''), junk),
    created_at: fc.oneof(fc.constant('2026-01-01T00:00:00Z'), junk),
    source: fc.oneof(fc.constantFrom('webhook', 'reconcile'), junk),
    accepted_at: fc.oneof(fc.nat(), junk),
    body: fc.oneof(fc.string({ maxLength: 5 }), junk),
    body_ref: fc.oneof(fc.record({ shard: fc.oneof(fc.string({ maxLength: 5 }), junk), until: fc.nat() }, { requiredKeys: [] }), junk),
  },
  { requiredKeys: [] },
);
/** The documented minimum: v 1, string id and type, and a string body or a body_ref object with a string shard. */
function routerMessageOracle(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  const ref = m.body_ref;
  const refOk = typeof ref === 'object' && ref !== null && typeof (ref as Record<string, unknown>).shard === 'string';
  return m.v === 1 && typeof m.id === 'string' && typeof m.type === 'string' && (typeof m.body === 'string' || refOk);
}
const validMessageArb = fc
  .record(
    {
      id: fc.string({ maxLength: 20 }),
      type: fc.constantFrom('user.created', 'dsync.group.deleted', 'x'),
      created_at: fc.constant('2026-01-01T00:00:00.000Z'),
      source: fc.constantFrom('webhook' as const, 'reconcile' as const),
      replay: fc.constant(true as const),
      probe: fc.string({ maxLength: 8 }),
      probe_token: fc.nat(),
      accepted_at: fc.nat(),
      stale: fc.boolean(),
      ledger_shard: fc.string({ maxLength: 8 }),
      pending: fc.dictionary(
        fc.string({ maxLength: 6 }),
        fc.record({ attempts: fc.nat({ max: 20 }), rules: fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }), not_before: fc.nat() }, { requiredKeys: ['attempts', 'rules'] }),
        { maxKeys: 3, noNullPrototype: true },
      ),
    },
    { requiredKeys: ['id', 'type', 'created_at', 'source', 'accepted_at'] },
  )
  .chain((m) =>
    fc.oneof(
      fc.string({ maxLength: 50 }).map((body) => ({ v: 1 as const, ...m, body })),
      fc.record({ shard: fc.string({ maxLength: 8 }), until: fc.nat() }, { requiredKeys: ['shard'] }).map((body_ref) => ({ v: 1 as const, ...m, body_ref })),
    ),
  );

describe('isRouterMessage', () => {
  it('property: accepts exactly the documented minimum shape', () => {
    fc.assert(
      fc.property(messageLikeArb, (m) => {
        expect(isRouterMessage(m)).toBe(routerMessageOracle(m));
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: never throws on arbitrary values, and answers a boolean', () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 2, withNullPrototype: true, withMap: true, withSet: true, withBoxedValues: true }), (v) => {
        expect(typeof isRouterMessage(v)).toBe('boolean');
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: valid messages survive a JSON round trip and a structured clone, accepted and unchanged', () => {
    fc.assert(
      fc.property(validMessageArb, (m) => {
        expect(isRouterMessage(m)).toBe(true);
        const viaJson: unknown = JSON.parse(JSON.stringify(m));
        const viaClone: unknown = structuredClone(m);
        expect(isRouterMessage(viaJson)).toBe(true);
        expect(isRouterMessage(viaClone)).toBe(true);
        expect(viaJson).toEqual(m);
        expect(viaClone).toEqual(m);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// 6. Repeated keys in JSON text.

type JNode = { kind: 'obj'; entries: Array<[string, JNode, boolean]> } | { kind: 'arr'; items: JNode[] } | { kind: 'leaf'; text: string };

const DUP_KEYS = fc.constantFrom('a', 'b', 'a.b', '"', '\\', 'é', 'x y', '', '}', ',"a":');
const LEAVES = fc.constantFrom('1', '-0.5e3', 'true', 'false', 'null', '"s"', '"a\\"b"', '"\\\\"', '"}"', '","', '"]"', '"{\\"a\\":1,\\"a\\":2}"', '[]', '{}');
const { node: jsonTreeArb } = fc.letrec((tie) => ({
  node: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'json' },
    LEAVES.map((text): JNode => ({ kind: 'leaf', text })),
    fc.array(fc.tuple(DUP_KEYS, tie('node'), fc.boolean()), { maxLength: 4 }).map((entries): JNode => ({ kind: 'obj', entries: entries as Array<[string, JNode, boolean]> })),
    fc.array(tie('node'), { maxLength: 3 }).map((items): JNode => ({ kind: 'arr', items: items as JNode[] })),
  ),
}));

/** Renders a tree as JSON text: keys written plainly or fully \u-escaped, blanks from `ws` around every token. */
function renderJson(n: JNode, ws: () => string): string {
  if (n.kind === 'leaf') return n.text;
  if (n.kind === 'arr') return `[${ws()}${n.items.map((i) => `${ws()}${renderJson(i, ws)}${ws()}`).join(',')}${ws()}]`;
  const key = (k: string, escaped: boolean) =>
    escaped ? `"${[...k].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(k);
  return `{${ws()}${n.entries.map(([k, v, esc]) => `${ws()}${key(k, esc)}${ws()}:${ws()}${renderJson(v, ws)}${ws()}`).join(',')}${ws()}}`;
}

/** The first key repeated within one object, in document order, found on the tree. */
function firstDuplicateOnTree(n: JNode, path: string): string | null {
  if (n.kind === 'arr') {
    for (let i = 0; i < n.items.length; i++) {
      const r = firstDuplicateOnTree(n.items[i] as JNode, `${path}[${i}]`);
      if (r !== null) return r;
    }
  }
  if (n.kind === 'obj') {
    const seen: string[] = [];
    for (const [k, v] of n.entries) {
      const at = path === '' ? k : `${path}.${k}`;
      if (seen.includes(k)) return at;
      seen.push(k);
      const r = firstDuplicateOnTree(v, at);
      if (r !== null) return r;
    }
  }
  return null;
}

describe('firstDuplicateKey', () => {
  it('property: on rendered JSON trees, names the path of the first key repeated within one object (null when none)', () => {
    fc.assert(
      fc.property(jsonTreeArb, fc.array(fc.constantFrom('', '', ' ', '\n', '\t', '\r\n  '), { minLength: 1, maxLength: 16 }), (tree, blanksList) => {
        let k = 0;
        const text = renderJson(tree, () => blanksList[k++ % blanksList.length] ?? '');
        expect(() => JSON.parse(text), text).not.toThrow();
        expect(firstDuplicateKey(text), text).toBe(firstDuplicateOnTree(tree, ''));
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// 7. Retry-After.

const MAX_DELAY = 43_200; // Queues' 12-hour limit
const DAY_NAMES = ['Thu', 'Fri', 'Sat', 'Sun', 'Mon', 'Tue', 'Wed']; // 1970-01-01 was a Thursday
const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") of whole seconds since 1970, rendered without Date. */
function imfFixdate(seconds: number): string {
  const days = Math.floor(seconds / 86_400);
  const rest = seconds - days * 86_400;
  const [y, m, d] = civilFromDays(days);
  const weekday = DAY_NAMES[((days % 7) + 7) % 7] ?? '';
  return `${weekday}, ${pad(d, 2)} ${MONTH_NAMES[m - 1] ?? ''} ${pad(y, 4)} ${pad(Math.floor(rest / 3600), 2)}:${pad(Math.floor((rest % 3600) / 60), 2)}:${pad(rest % 60, 2)} GMT`;
}

describe('parseRetryAfter', () => {
  it('property: delta seconds (any digits, blanks around) give the number, capped at 43,200', () => {
    fc.assert(
      fc.property(KEY_BLANKS.filter((b) => b.trim() === ''), fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 25 }), (blank, digits) => {
        const n = BigInt(digits);
        expect(parseRetryAfter(`${blank}${digits}${blank}`, 1_790_000_000_000)).toBe(n > BigInt(MAX_DELAY) ? MAX_DELAY : Number(n));
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: an HTTP date gives the whole seconds from now until then, rounded up, within 0..43,200', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4_102_444_800 }), fc.integer({ min: -200_000, max: 200_000 }), fc.integer({ min: 0, max: 999 }), (nowSeconds, delta, nowMs) => {
        const now = nowSeconds * 1000 + nowMs;
        const at = nowSeconds + delta;
        fc.pre(at >= 0);
        const diff = at * 1000 - now;
        const expected = diff <= 0 ? 0 : Math.min(MAX_DELAY, Math.ceil(diff / 1000));
        expect(parseRetryAfter(imfFixdate(at), now)).toBe(expected);
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: arbitrary text never throws; the result is undefined or whole seconds in 0..43,200', () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: fc.constantFrom(...'0123456789-+.e :TZ'), maxLength: 30 }),
      mutated(fc.integer({ min: 0, max: 4_102_444_800 }).map(imfFixdate), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })),
    );
    fc.assert(
      fc.property(fc.option(text, { nil: null, freq: 20 }), fc.integer({ min: 0, max: 4_102_444_800_000 }), (v, now) => {
        const r = parseRetryAfter(v, now);
        if (v === null) expect(r).toBeUndefined();
        if (r === undefined) return;
        expect(Number.isInteger(r) && r >= 0 && r <= MAX_DELAY, String(r)).toBe(true);
      }),
      { numRuns: MANY },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// 8. Cloudflare Access team domains.

const LABELS = fc.constantFrom('team', 'a', 'my-team-2', '0abc', 'x'.repeat(63), 'cloudflareaccess', 'com', '123', 'TeAm', 'COM', '', '-a', 'a-', 'x'.repeat(64), 'a_b', 'é', 'a b', 'a:443', '9');
const LABEL_CHARS = new Set('abcdefghijklmnopqrstuvwxyz0123456789-');
const labelOk = (l: string) => l.length >= 1 && l.length <= 63 && [...l].every((c) => LABEL_CHARS.has(c)) && !l.startsWith('-') && !l.endsWith('-');

describe('normalizeTeamDomain', () => {
  it('property: hosts of labels, in any case, with or without https:// and one trailing slash, blanks around: the lower-cased host iff every label is valid, there are two or more, the last is not all digits, ≤ 253 characters', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.array(LABELS, { minLength: 1, maxLength: 4 }), fc.array(fc.constant('x'.repeat(63)), { minLength: 3, maxLength: 5 })),
        fc.constantFrom('', 'https://', 'HTTPS://', 'Https://', 'http://', 'https:///', '//'),
        fc.constantFrom('', '/', '//', '/path', ':443', '.'),
        KEY_BLANKS.filter((b) => b.trim() === ''),
        (labels, scheme, tail, blank) => {
          const host = labels.join('.');
          const lower = host.toLowerCase();
          const lowerLabels = lower.split('.');
          const valid =
            ['', 'https://', 'HTTPS://', 'Https://'].includes(scheme) &&
            ['', '/'].includes(tail) &&
            lowerLabels.length >= 2 &&
            lowerLabels.every(labelOk) &&
            ![...(lowerLabels[lowerLabels.length - 1] ?? '')].every((c) => c >= '0' && c <= '9') &&
            lower.length <= 253;
          expect(normalizeTeamDomain(`${blank}${scheme}${host}${tail}${blank}`)).toBe(valid ? lower : null);
        },
      ),
      { numRuns: MANY },
    );
  }, TIMEOUT);

  it('property: never throws on arbitrary strings; a result is lower-case ASCII host text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: fc.constantFrom(...'aZ9.-_:/ \tÉéK\u0130'), maxLength: 20 })), (s) => {
        const r = normalizeTeamDomain(s);
        if (r !== null) expect(r).toMatch(/^[a-z0-9.-]+$/);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});
