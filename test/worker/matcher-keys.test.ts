/**
 * The matcher's (path, value) index keys equality / any-of values by the
 * value itself: strings through a hash table that compares the key it finds,
 * numbers, booleans and null through a Map. These properties check, against
 * a naive per-rule scan written from README "Rules" (not from matcher.ts /
 * where.ts: test/helpers/rules.ts), that keying never merges or separates values the
 * conditions themselves would not:
 *
 *  - value = equal with === ("1" is not 1, true is not "true", null is not
 *    "null" nor a missing field; -0 equals 0; NaN equals nothing, not even NaN);
 *  - list = equal to any, compared as a Set compares (SameValueZero: like ===,
 *    except that a NaN in the list matches a NaN field);
 *  - a field that is a list matches when any element does; an object never equals a value;
 *  - strings: empty, one unit, odd lengths, non-ASCII, surrogate pairs and
 *    lone surrogates, very long strings, and long strings that differ only
 *    where the index's hash does not look (so they collide in its table).
 *
 * Events are plain objects (not through JSON), so fields can hold NaN, -0 and
 * Infinity. Rules that repeat the same remaining conditions (shared by the
 * matcher) and conditions that only look alike (a copy with its own test) are
 * covered too, as is a condition whose test throws mid-match.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { UnknownEvent } from '../../src/events/catalog';
import { Matcher, type MatcherRule } from '../../src/routing/matcher';
import { type CompiledCondition, compileWhere } from '../../src/routing/where';
import { MISSING_FIELD as MISSING, type RuleSpec, type ScalarValue as Value, type Spec, check as checkAgainstScan, configMatcher, directMatcher, naiveMatch, namedRules } from '../helpers/rules';

const TIMEOUT = 120_000;

// ---------------------------------------------------------------------------
// Rule sets are checked against the naive scan of test/helpers/rules.ts.

function compiled(where: Record<string, unknown> | undefined): CompiledCondition[] {
  if (where === undefined) return [];
  const w = compileWhere(where, 'where');
  if (!w.ok) throw new Error(`invalid where: ${w.problems.join('; ')}`);
  return w.conditions;
}

const check = (matchers: readonly Matcher<MatcherRule>[], rules: readonly RuleSpec[], event: UnknownEvent): void => checkAgainstScan(matchers, rules, event, show);

const DESTINATIONS = ['d0', 'd1', 'd2', 'd3'];

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) => {
    if (typeof x === 'number' && !Number.isFinite(x)) return `<${x}>`;
    if (typeof x === 'number' && Object.is(x, -0)) return '<-0>';
    if (typeof x === 'string' && x.length > 40) return `<${x.length} chars: ${x.slice(0, 8)}…${x.slice(-8)}>`;
    return x;
  });
}

// ---------------------------------------------------------------------------
// Values

/** Long strings of one length that differ only at unit 65, which the index's hash of a string this long does not read. */
const COLLIDING = Array.from({ length: 6 }, (_, k) => `${'p'.repeat(65)}${String.fromCharCode(97 + k)}${'m'.repeat(2000)}${'s'.repeat(64)}`);
const LONG = 'L'.repeat(100_000);

const STRINGS: string[] = [
  '',
  'a',
  'ab',
  'abc',
  '1',
  '0',
  '-0',
  'NaN',
  'true',
  'false',
  'null',
  'undefined',
  'org_1',
  'org_10',
  'org_01EHZNVPK3SFK441A1RGBFSHRT',
  'é',
  'e\u0301',
  '😀',
  'a😀',
  '\uD800',
  '\uDC00x',
  '\u0000',
  'x\u0000',
  LONG,
  `${LONG}!`,
  `!${LONG.slice(1)}`,
  ...COLLIDING,
];
const NUMBERS: number[] = [0, -0, 1, -1, 1.5, 10, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 31, -(2 ** 31), 2 ** 53, 1e21, 65_536];
const VALUES: Value[] = [...STRINGS, ...NUMBERS, true, false, null];

const valueArb: fc.Arbitrary<Value> = fc.constantFrom(...VALUES);
const specArb: fc.Arbitrary<Spec> = fc.oneof(
  { weight: 4, arbitrary: valueArb },
  { weight: 4, arbitrary: fc.array(valueArb, { minLength: 1, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom('a', 'org_', 'p', '😀', '\uD800').map((prefix) => ({ prefix })) },
  { weight: 1, arbitrary: fc.constantFrom('c', '1', 's', 'é', '\u0000').map((suffix) => ({ suffix })) },
  { weight: 1, arbitrary: fc.boolean().map((exists) => ({ exists })) },
  { weight: 1, arbitrary: fc.oneof(valueArb, fc.array(valueArb, { minLength: 1, maxLength: 3 })).map((not) => ({ not })) },
);

const PATHS = ['data.a', 'data.b', 'data.c'];
const TYPES = ['user.created', 'user.updated', 'dsync.user.created'];
const PATTERNS = [['*'], ['user.*'], ['user.created'], ['*', '!user.updated'], ['dsync.*', 'user.updated'], ['!dsync.*']];

const rulesArb: fc.Arbitrary<RuleSpec[]> = fc
  .array(
    fc.record({
      events: fc.constantFrom(...PATTERNS),
      where: fc.oneof(
        { weight: 1, arbitrary: fc.constant(undefined) },
        {
          weight: 6,
          arbitrary: fc
            .uniqueArray(fc.constantFrom(...PATHS), { minLength: 1, maxLength: 2 })
            .chain((paths) => fc.tuple(...paths.map((p) => specArb.map((s) => [p, s] as const))))
            .map((entries) => Object.fromEntries(entries) as Record<string, Spec>),
        },
      ),
      to: fc.uniqueArray(fc.constantFrom(...DESTINATIONS), { minLength: 1, maxLength: 2 }),
    }),
    { minLength: 1, maxLength: 12 },
  )
  .map((list) => namedRules(list));

/** A field: a value (often), a list of values (with repeats), an object, or absent. */
const fieldArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(MISSING) },
  { weight: 8, arbitrary: valueArb },
  { weight: 3, arbitrary: fc.array(valueArb, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>({ a: 1 }, [[1]], [{ x: 'org_1' }]) },
);

const eventArb: fc.Arbitrary<UnknownEvent> = fc
  .record({ type: fc.constantFrom(...TYPES), a: fieldArb, b: fieldArb, c: fieldArb })
  .map(({ type, a, b, c }) => {
    const data: Record<string, unknown> = {};
    if (a !== MISSING) data.a = a;
    if (b !== MISSING) data.b = b;
    if (c !== MISSING) data.c = c;
    return { id: 'event_01', event: type, data, created_at: '2026-11-20T10:00:00.000Z' } as UnknownEvent;
  });

/** Events aimed at the rules: each field takes a value the rules name (from equality / any-of specs) more often than not. */
function eventsFor(rules: readonly RuleSpec[]): fc.Arbitrary<UnknownEvent[]> {
  const named = rules.flatMap((r) => Object.values(r.where ?? {}).flatMap((s) => (Array.isArray(s) ? s : s === null || typeof s !== 'object' ? [s] : [])));
  const aimed: fc.Arbitrary<unknown> = named.length === 0 ? fieldArb : fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...named) }, { weight: 2, arbitrary: fieldArb });
  const event = fc.record({ type: fc.constantFrom(...TYPES), a: aimed, b: aimed, c: aimed }).map(({ type, a, b, c }) => {
    const data: Record<string, unknown> = {};
    if (a !== MISSING) data.a = a;
    if (b !== MISSING) data.b = b;
    if (c !== MISSING) data.c = c;
    return { id: 'event_01', event: type, data, created_at: '2026-11-20T10:00:00.000Z' } as UnknownEvent;
  });
  return fc.array(fc.oneof({ weight: 3, arbitrary: event }, { weight: 1, arbitrary: eventArb }), { minLength: 1, maxLength: 12 });
}

// ---------------------------------------------------------------------------

describe('matcher index keys: agrees with a naive per-rule scan', () => {
  it('2,000 runs: strings, numbers (-0, NaN, ±Infinity), booleans and null as equality / any-of values and as event fields', () => {
    let hits = 0;
    let total = 0;
    fc.assert(
      fc.property(
        rulesArb.chain((rules) => fc.record({ rules: fc.constant(rules), events: eventsFor(rules), viaConfig: fc.boolean() })),
        ({ rules, events, viaConfig }) => {
          const matchers = [directMatcher(rules)];
          if (viaConfig) matchers.push(configMatcher(rules));
          for (const pass of [0, 1]) {
            for (const event of events) {
              check(matchers, rules, event);
              if (pass === 0) {
                total++;
                if (naiveMatch(rules, event).rules.some((name) => rules.find((r) => r.name === name)?.where !== undefined)) hits++;
              }
            }
          }
        },
      ),
      { numRuns: 2_000 },
    );
    // Conditional rules must fire often enough for the comparison to mean something.
    expect(hits).toBeGreaterThan(total / 6);
  }, TIMEOUT);

  it('many values on one path (the hash table probes, long colliding keys included), each routed to its own rule', () => {
    fc.assert(
      fc.property(fc.shuffledSubarray(VALUES, { minLength: 1 }), fc.integer({ min: 0, max: 3 }), (values, extra) => {
        // One rule per value, plus any-of rules over pairs of neighbours, plus `extra` unconditional rules.
        const rules: RuleSpec[] = values.map((v, i) => ({ name: `v${i}`, events: ['user.created'], where: { 'data.a': v }, to: [DESTINATIONS[i % 4] as string] }));
        for (let i = 0; i + 1 < values.length; i += 2) {
          rules.push({ name: `pair${i}`, events: ['*'], where: { 'data.a': [values[i] as Value, values[i + 1] as Value] }, to: ['d3'] });
        }
        for (let i = 0; i < extra; i++) rules.push({ name: `all${i}`, events: ['user.*'], to: ['d0'] });
        const matchers = [directMatcher(rules), configMatcher(rules)];
        const ev = (a: unknown): UnknownEvent => ({ id: 'e', event: 'user.created', data: { a }, created_at: 'x' }) as UnknownEvent;
        for (const v of VALUES) check(matchers, rules, ev(v));
        check(matchers, rules, ev(values));
        check(matchers, rules, ev([...values].reverse()));
        check(matchers, rules, { id: 'e', event: 'user.created', data: {}, created_at: 'x' } as UnknownEvent);
        // Near misses of the long keys.
        for (const s of [LONG.slice(1), `${LONG.slice(1)}M`, `${COLLIDING[0]?.slice(0, -1)}t`, (COLLIDING[1] as string).toUpperCase()]) check(matchers, rules, ev(s));
      }),
      { numRuns: 200 },
    );
  }, TIMEOUT);
});

describe('matcher index keys: values that are easy to merge or separate by mistake', () => {
  const CASES: Array<[Spec, unknown, boolean]> = [
    ['1', 1, false],
    [1, '1', false],
    [true, 'true', false],
    ['true', true, false],
    [null, 'null', false],
    [null, MISSING, false],
    [null, null, true],
    [0, -0, true],
    [-0, 0, true],
    [[0], -0, true],
    [[-0], 0, true],
    [Number.NaN, Number.NaN, false],
    [[Number.NaN], Number.NaN, true],
    [[Number.NaN, 1], 1, true],
    [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, true],
    [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, false],
    [1e21, 1e21, true],
    ['', '', true],
    ['', MISSING, false],
    ['😀', '😀', true],
    ['😀', '\uD83D', false],
    ['e\u0301', 'é', false],
    [LONG, LONG.slice(0), true],
    [LONG, `${LONG}`.replace(/L$/, 'M'), false],
    [COLLIDING[0] as string, COLLIDING[1] as string, false],
    [[COLLIDING[0] as string, COLLIDING[2] as string], COLLIDING[2] as string, true],
    ['org_1', ['org_2', 'org_1'], true],
    ['org_1', [['org_1']], false],
    ['org_1', { id: 'org_1' }, false],
    [[1, '1'], ['2', 1], true],
    [{ not: null }, null, false],
    [{ not: Number.NaN }, null, true],
    [{ not: Number.NaN }, Number.NaN, true],
    [{ not: [Number.NaN] }, Number.NaN, false],
    [{ not: 0 }, -0, false],
    [{ not: '0' }, 0, true],
  ];
  it.each(CASES.map(([spec, field, want]) => [show(spec), show(field === MISSING ? '<missing>' : field), want, spec, field] as const))(
    '%s against %s → %s',
    (_s, _f, want, spec, field) => {
      const rules: RuleSpec[] = [
        { name: 'r', events: ['user.created'], where: { 'data.a': spec }, to: ['d0'] },
        // The same condition behind an indexed equality on another path (so it is a remaining condition).
        { name: 'rest', events: ['user.created'], where: { 'data.b': 'k', 'data.a': spec }, to: ['d1'] },
      ];
      const data: Record<string, unknown> = { b: 'k' };
      if (field !== MISSING) data.a = field;
      const event = { id: 'e', event: 'user.created', data, created_at: 'x' } as UnknownEvent;
      expect(naiveMatch(rules, event).rules).toEqual(want ? ['r', 'rest'] : []);
      for (const m of [directMatcher(rules), configMatcher(rules)]) {
        for (let round = 0; round < 2; round++) expect(m.match(event).rules.map((r) => r.name)).toEqual(want ? ['r', 'rest'] : []);
      }
    },
  );
});

describe('matcher: shared remaining conditions', () => {
  it('rules repeating a filter share it, but a copy of a condition with its own test keeps its test', () => {
    const base = compiled({ 'data.org': 'o1', 'data.state': { not: 'inactive' } });
    const again = compiled({ 'data.org': 'o2', 'data.state': { not: 'inactive' } });
    // The same filter compiles to the same test function (where.ts keeps one per spec) ...
    expect(again[1]?.test).toBe(base[1]?.test);
    // ... and a caller's copy with another test is its own condition.
    const alwaysTrue: CompiledCondition = { ...(base[1] as CompiledCondition), test: () => true };
    const m = new Matcher<MatcherRule>([
      { name: 'a', events: ['*'], where: base, to: ['d0'] },
      { name: 'b', events: ['*'], where: [again[0] as CompiledCondition, alwaysTrue], to: ['d1'] },
      { name: 'c', events: ['*'], where: [compiled({ 'data.org': 'o1' })[0] as CompiledCondition, alwaysTrue], to: ['d2'] },
    ]);
    const ev = (org: string, state: string) => ({ id: 'e', event: 'user.created', data: { org, state }, created_at: 'x' }) as UnknownEvent;
    expect(m.match(ev('o1', 'inactive')).rules.map((r) => r.name)).toEqual(['c']);
    expect(m.match(ev('o1', 'active')).rules.map((r) => r.name)).toEqual(['a', 'c']);
    expect(m.match(ev('o2', 'inactive')).rules.map((r) => r.name)).toEqual(['b']);
  });

  it('operator tables that differ only in a value type or NaN are not mixed up by where.ts', () => {
    const hit = (spec: Spec, field: unknown) => {
      const w = compiled({ 'data.a': spec });
      return w.every((c) => c.test(field));
    };
    // Compiled in an order where a cache keyed loosely (e.g. by JSON) would reuse the first for the second.
    expect(hit({ not: null }, null)).toBe(false);
    expect(hit({ not: Number.NaN }, null)).toBe(true);
    expect(hit({ not: '1' }, 1)).toBe(true);
    expect(hit({ not: 1 }, 1)).toBe(false);
    expect(hit({ not: [Number.POSITIVE_INFINITY] }, null)).toBe(true);
    expect(hit({ not: [null] }, null)).toBe(false);
    expect(hit({ prefix: 'a', suffix: 'b' }, 'ab')).toBe(true);
    expect(hit({ suffix: 'b', prefix: 'a' }, 'ba')).toBe(false);
  });

  it('a value listed twice in a hand-made condition (or as -0 and 0) still lists the rule once', () => {
    const twice: CompiledCondition = {
      path: 'data.a',
      segments: ['data', 'a'],
      test: (v) => v === 'x' || v === 0,
      equalityValues: ['x', 'x', 0, -0],
    };
    const m = new Matcher<MatcherRule>([{ name: 'r', events: ['*'], where: [twice], to: ['d0', 'd0'] }]);
    for (const a of ['x', 0, -0, ['x', 0, 'x']]) {
      const got = m.match({ id: 'e', event: 'user.created', data: { a }, created_at: 'x' } as UnknownEvent);
      expect({ rules: got.rules.map((r) => r.name), destinations: got.destinations }).toEqual({ rules: ['r'], destinations: ['d0'] });
    }
  });

  it('a condition that throws does not leave state behind for the next match', () => {
    const boom: CompiledCondition = {
      path: 'data.x',
      segments: ['data', 'x'],
      test: (v) => {
        if (v === 'boom') throw new Error('boom');
        return v === 'ok';
      },
    };
    const org = compiled({ 'data.org': 'o1' })[0] as CompiledCondition;
    const m = new Matcher<MatcherRule>([
      { name: 'a', events: ['*'], where: [org], to: ['d0'] },
      { name: 'b', events: ['*'], where: [org, boom], to: ['d1'] },
      { name: 'c', events: ['*'], where: [boom], to: ['d2'] },
    ]);
    const ev = (x: string) => ({ id: 'e', event: 'user.created', data: { org: 'o1', x }, created_at: 'x' }) as UnknownEvent;
    expect(() => m.match(ev('boom'))).toThrow('boom');
    expect(m.match(ev('no')).rules.map((r) => r.name)).toEqual(['a']);
    expect(m.match(ev('ok')).rules.map((r) => r.name)).toEqual(['a', 'b', 'c']);
  });
});

describe('matcher: construction is cheap (the index is built on first use)', () => {
  it('new Matcher does not read the rules; the first match does, once', () => {
    let reads = 0;
    const rules = Array.from({ length: 1000 }, (_, i) => {
      const where = compiled({ 'data.org': `o${i}` });
      return {
        name: `r${i}`,
        events: ['user.*'],
        get where() {
          reads++;
          return where;
        },
        to: [`d${i}`],
      };
    });
    const m = new Matcher<MatcherRule>(rules);
    expect(reads).toBe(0);
    const ev = (org: string) => ({ id: 'e', event: 'user.created', data: { org }, created_at: 'x' }) as UnknownEvent;
    expect(m.match(ev('o7')).destinations).toEqual(['d7']);
    const afterFirst = reads;
    expect(afterFirst).toBeGreaterThan(0);
    expect(m.match(ev('o999')).destinations).toEqual(['d999']);
    expect(m.match({ ...ev('o3'), event: 'user.updated' }).destinations).toEqual(['d3']);
    expect(reads).toBe(afterFirst);
  });
});

describe('matcher: pattern lists and condition lists found step by step', () => {
  it('lists that are prefixes of one another, or differ only in order, get their own selectors and conditions', () => {
    const org = compiled({ 'data.org': 'o1' })[0] as CompiledCondition;
    const [state] = compiled({ 'data.state': { not: 'inactive' } }) as [CompiledCondition];
    const [email] = compiled({ 'data.email': { suffix: '@a.example' } }) as [CompiledCondition];
    const rules: MatcherRule[] = [
      { name: 'a', events: ['user.*'], where: [], to: ['d0'] },
      { name: 'b', events: ['user.*', '!user.deleted'], where: [], to: ['d1'] },
      { name: 'c', events: ['!user.deleted', 'user.*'], where: [], to: ['d2'] },
      { name: 'd', events: ['user.*', '!user.deleted', '!user.updated'], where: [], to: ['d3'] },
      { name: 'e', events: ['*'], where: [state], to: ['d0'] },
      { name: 'f', events: ['*'], where: [state, email], to: ['d1'] },
      { name: 'g', events: ['*'], where: [email, state], to: ['d2'] },
      { name: 'h', events: ['*'], where: [org, state, email], to: ['d3'] },
    ];
    const specs: RuleSpec[] = [
      { name: 'a', events: ['user.*'], to: ['d0'] },
      { name: 'b', events: ['user.*', '!user.deleted'], to: ['d1'] },
      { name: 'c', events: ['!user.deleted', 'user.*'], to: ['d2'] },
      { name: 'd', events: ['user.*', '!user.deleted', '!user.updated'], to: ['d3'] },
      { name: 'e', events: ['*'], where: { 'data.state': { not: 'inactive' } }, to: ['d0'] },
      { name: 'f', events: ['*'], where: { 'data.state': { not: 'inactive' }, 'data.email': { suffix: '@a.example' } }, to: ['d1'] },
      { name: 'g', events: ['*'], where: { 'data.email': { suffix: '@a.example' }, 'data.state': { not: 'inactive' } }, to: ['d2'] },
      { name: 'h', events: ['*'], where: { 'data.org': 'o1', 'data.state': { not: 'inactive' }, 'data.email': { suffix: '@a.example' } }, to: ['d3'] },
    ];
    const m = new Matcher<MatcherRule>(rules);
    for (const type of ['user.created', 'user.deleted', 'user.updated', 'dsync.user.created']) {
      for (const data of [{}, { state: 'active' }, { state: 'active', email: 'x@a.example' }, { org: 'o1', state: 'active', email: 'x@a.example' }, { org: 'o1', state: 'inactive', email: 'x@a.example' }]) {
        const ev = { id: 'e', event: type, data, created_at: 'x' } as UnknownEvent;
        const got = m.match(ev);
        expect({ rules: got.rules.map((r) => r.name), destinations: got.destinations }).toEqual(naiveMatch(specs, ev));
      }
    }
  });
});
