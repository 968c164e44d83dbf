/**
 * Property tests (fast-check; a failure prints its seed, path and shrunk
 * counterexample) for the compiled rule matcher, src/routing/matcher.ts and
 * src/routing/where.ts.
 *
 * For generated rule sets (patterns with `*` and `!` exclusions built from the
 * real catalog names in EVENT_TYPES and from random names; `where` conditions
 * of every kind the README lists) and generated streams of events, the
 * matcher returns exactly the rules — and the destinations — that a naive
 * per-rule scan returns, in the same order. The scan (test/helpers/rules.ts)
 * is written from README "Rules", not from matcher.ts.
 *
 * Both ways the Worker can build a matcher are checked (`new Matcher(rules)`
 * and `parseRouterConfig(...).config.matcher`), and each stream is matched
 * twice, so later answers come from the type cache and the per-(type, value)
 * cache. Dedicated properties target the per-(type, value) cache (per-tenant
 * rule sets, the same type with many field values) and the cache limits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type UnknownEvent } from '../../src/events/catalog';
import { Matcher, type MatcherRule } from '../../src/routing/matcher';
import { type RuleSpec, type ScalarValue, type Spec, check, configMatcher, directMatcher, naiveMatch, naiveNames, namedRules, namesSelect, ruleNames } from '../helpers/rules';

const RUNS = 3_000;
const CACHE_RUNS = 1_500;
/** Generous: each property takes a few seconds; more on a busy machine. */
const TIMEOUT = 120_000;

// ---------------------------------------------------------------------------
// Rule sets are checked against the naive scan of test/helpers/rules.ts (README semantics, independent of matcher.ts / where.ts).

const DESTINATIONS = ['d0', 'd1', 'd2', 'd3'];

// ---------------------------------------------------------------------------
// Generators

const CATALOG = EVENT_TYPES as readonly string[];
/** Random names in the config's pattern alphabet (letters, digits, `_`, `.`, `-`). */
const randomName = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789_.-'), minLength: 1, maxLength: 12 });
/** Short random globs: letters, dots, underscores and stars. */
const randomGlob = fc.string({ unit: fc.constantFrom(...'abcdeisu._*'), minLength: 1, maxLength: 6 });

/** A glob made from a catalog name: one or two runs replaced by `*` ("dsync.*", "*_failed", "authentication.*_s*"). */
const catalogGlob = fc
  .tuple(fc.constantFrom(...CATALOG), fc.nat(), fc.nat(), fc.boolean(), fc.nat(), fc.nat())
  .map(([t, a, b, twice, c, d]) => {
    const i = a % (t.length + 1);
    const j = i + (b % (t.length - i + 1));
    let g = `${t.slice(0, i)}*${t.slice(j)}`;
    if (twice) {
      const k = c % (g.length + 1);
      const l = k + (d % (g.length - k + 1));
      g = `${g.slice(0, k)}*${g.slice(l)}`;
    }
    return g;
  });

function patternArb(vocab: readonly string[]): fc.Arbitrary<string> {
  const bare = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...CATALOG) },
    { weight: 2, arbitrary: fc.constantFrom(...vocab) },
    { weight: 4, arbitrary: catalogGlob },
    { weight: 1, arbitrary: fc.constantFrom('*', '**', '*.*', '*.created', 'dsync.*', 'user.*', '*_failed', 'a*b*c', 'organization*') },
    { weight: 1, arbitrary: randomGlob },
  );
  return fc.oneof({ weight: 3, arbitrary: bare }, { weight: 1, arbitrary: bare.map((p) => `!${p}`) });
}

const STRINGS = ['org_1', 'org_2', 'org_10', 'active', 'inactive', 'a@acme.com', 'b@acme.io', '', '1', 'true', 'null', 'user.created'];
const SCALARS: ScalarValue[] = [...STRINGS, 1, 0, -0, -1, 1.5, true, false, null];
const AFFIXES = ['org_', 'org_1', 'a', '@acme.com', '.io', 'act', 'in', 'ive', '1', 'user.', '.created', 'event_'];

const scalarArb: fc.Arbitrary<ScalarValue> = fc.constantFrom(...SCALARS);
const affixArb: fc.Arbitrary<string | string[]> = fc.oneof(
  fc.constantFrom(...AFFIXES),
  fc.array(fc.constantFrom(...AFFIXES), { minLength: 1, maxLength: 3 }),
);

const innerSpecArb: fc.Arbitrary<Spec> = fc.oneof(
  scalarArb,
  fc.array(scalarArb, { minLength: 1, maxLength: 3 }),
  affixArb.map((prefix) => ({ prefix })),
  affixArb.map((suffix) => ({ suffix })),
  fc.boolean().map((exists) => ({ exists })),
);

const specArb: fc.Arbitrary<Spec> = fc.oneof(
  { weight: 4, arbitrary: scalarArb },
  { weight: 3, arbitrary: fc.array(scalarArb, { minLength: 1, maxLength: 4 }) },
  { weight: 2, arbitrary: affixArb.map((prefix) => ({ prefix })) },
  { weight: 2, arbitrary: affixArb.map((suffix) => ({ suffix })) },
  { weight: 2, arbitrary: fc.boolean().map((exists) => ({ exists })) },
  { weight: 2, arbitrary: innerSpecArb.map((not) => ({ not })) },
  {
    weight: 1,
    arbitrary: fc.record(
      { prefix: affixArb, suffix: affixArb, exists: fc.boolean(), not: innerSpecArb },
      { requiredKeys: [] },
    ).filter((table) => Object.keys(table).length > 0),
  },
);

const PATHS = [
  'data.organization_id',
  'data.state',
  'data.email',
  'data.domains',
  'data.count',
  'data.user.id',
  'data.nested.list.0',
  'context.actor',
  'event',
  'id',
  'data.__proto__',
  'data.constructor',
  'data.toString',
  'data.missing_everywhere',
];

const whereArb: fc.Arbitrary<Record<string, Spec> | undefined> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  {
    weight: 5,
    arbitrary: fc
      .uniqueArray(fc.constantFrom(...PATHS), { minLength: 1, maxLength: 3 })
      .chain((paths) => fc.tuple(...paths.map((p) => specArb.map((s) => [p, s] as const))))
      .map((entries) => Object.fromEntries(entries)),
  },
);

function rulesArb(vocab: readonly string[], maxRules: number): fc.Arbitrary<RuleSpec[]> {
  return fc
    .array(
      fc.record({
        events: fc.array(patternArb(vocab), { minLength: 1, maxLength: 4 }),
        where: whereArb,
        to: fc.array(fc.constantFrom(...DESTINATIONS), { minLength: 1, maxLength: 3 }),
      }),
      { minLength: 0, maxLength: maxRules },
    )
    .map((list) => namedRules(list));
}

/** A field value: a scalar, a list of scalars, an object, or absent (undefined = leave the key out). */
const fieldValueArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 6, arbitrary: scalarArb },
  { weight: 2, arbitrary: fc.array(scalarArb, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.record({ id: scalarArb }) },
);

function typeArb(vocab: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...CATALOG) },
    { weight: 2, arbitrary: fc.constantFrom(...vocab) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...CATALOG), fc.constantFrom('x', '.x', '_failed', '.created', 's')).map(([t, s]) => t + s) },
    { weight: 1, arbitrary: fc.constantFrom('dsync', 'user.created\n', '\nuser.created', 'a*b', '', 'constructor', '__proto__', 'toString', 'user.created.', 'ü.created') },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  );
}

/** An event as JSON.parse would give it (own fields only; `__proto__` may be an own field). */
function eventArb(type: fc.Arbitrary<string>): fc.Arbitrary<UnknownEvent> {
  return fc
    .record({
      type,
      id: fc.constantFrom('event_01', 'event_02', 'org_1'),
      organization_id: fieldValueArb,
      state: fieldValueArb,
      email: fieldValueArb,
      domains: fieldValueArb,
      count: fieldValueArb,
      user: fc.oneof(fc.constant(undefined), fc.record({ id: fieldValueArb }), scalarArb),
      nested: fc.oneof(fc.constant(undefined), fc.record({ list: fieldValueArb }), fc.constant([])),
      proto: fieldValueArb,
      ctor: fieldValueArb,
      actor: fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 3, arbitrary: fieldValueArb }),
    })
    .map((g) => {
      const data: [string, unknown][] = [];
      const put = (k: string, v: unknown) => {
        if (v !== undefined) data.push([k, v]);
      };
      put('organization_id', g.organization_id);
      put('state', g.state);
      put('email', g.email);
      put('domains', g.domains);
      put('count', g.count);
      put('user', g.user);
      put('nested', g.nested);
      put('__proto__', g.proto);
      put('constructor', g.ctor);
      const envelope: Record<string, unknown> = {
        id: g.id,
        event: g.type,
        data: Object.fromEntries(data),
        created_at: '2026-11-20T10:00:00.000Z',
      };
      if (g.actor !== undefined) envelope.context = { actor: g.actor };
      // Through JSON, as the Worker receives it: an own `__proto__` stays an own field.
      return JSON.parse(JSON.stringify(envelope)) as UnknownEvent;
    });
}

/** A run: a vocabulary of random names used by both patterns and events, rules, and a stream of events over a few types. */
const scenarioArb = fc
  .uniqueArray(randomName, { minLength: 1, maxLength: 4 })
  .chain((vocab) =>
    fc.record({
      rules: rulesArb(vocab, 10),
      // A few types per stream, so the same type is matched repeatedly with different field values.
      types: fc.uniqueArray(typeArb(vocab), { minLength: 1, maxLength: 4 }),
      vocab: fc.constant(vocab),
    }),
  )
  .chain((s) =>
    fc.record({
      rules: fc.constant(s.rules),
      events: fc.array(eventArb(fc.constantFrom(...s.types)), { minLength: 1, maxLength: 10 }),
      extraTypes: fc.array(typeArb(s.vocab), { maxLength: 4 }),
      /**
       * Also build the matcher through parseRouterConfig (as the Worker does) in
       * one run in five (~600 runs): its validation (edit-distance suggestions
       * for unknown names) costs several times the matching itself.
       */
      viaConfig: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    }),
  );

// ---------------------------------------------------------------------------

describe('matcher: agrees with a naive per-rule scan', () => {
  it(`${RUNS} runs: generated rule sets and event streams, new Matcher and parseRouterConfig, every answer twice (cached)`, () => {
    let nonEmpty = 0;
    let total = 0;
    fc.assert(
      fc.property(scenarioArb, ({ rules, events, extraTypes, viaConfig }) => {
        const matchers = [directMatcher(rules)] as Matcher<MatcherRule>[];
        if (viaConfig) matchers.push(configMatcher(rules) as Matcher<MatcherRule>);
        for (const pass of [0, 1]) {
          for (const event of events) {
            check(matchers, rules, event);
            if (pass === 0) {
              total++;
              if (naiveMatch(rules, event).rules.length > 0) nonEmpty++;
            }
          }
        }
        // Name selection alone (ignoring where): rulesForType and namesMatch.
        // (Plain comparisons in the hot loop: vitest's expect costs more than the matcher.)
        for (const type of [...new Set([...events.map((e) => e.event), ...extraTypes])]) {
          const want = naiveNames(rules, type).join(',');
          for (const m of matchers) {
            const got = ruleNames(m.rulesForType(type)).join(',');
            if (got !== want) throw new Error(`rulesForType(${JSON.stringify(type)}) = [${got}], want [${want}]`);
          }
          for (const r of rules) {
            if (Matcher.namesMatch(r.events, type) !== namesSelect(r.events, type)) {
              throw new Error(`Matcher.namesMatch(${JSON.stringify(r.events)}, ${JSON.stringify(type)}) disagrees with the naive scan`);
            }
          }
        }
      }),
      { numRuns: RUNS },
    );
    // The generators must produce both hits and misses in a healthy share (about a quarter of the events hit).
    expect(nonEmpty).toBeGreaterThan(total / 8);
    expect(total - nonEmpty).toBeGreaterThan(total / 10);
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// Per-(type, value) cache: every conditional rule of a type is one equality
// (value or any-of) on one path, so the matcher reuses one result per value.

const TENANT_PATHS = ['data.organization_id', 'event', 'id', 'data.user.id', 'context.actor'];

const tenantScenarioArb = fc
  .record({
    path: fc.constantFrom(...TENANT_PATHS),
    types: fc.uniqueArray(fc.constantFrom(...CATALOG.slice(0, 30), 'acme.custom'), { minLength: 1, maxLength: 3 }),
  })
  .chain(({ path, types }) =>
    fc.record({
      path: fc.constant(path),
      rules: fc
        .array(
          fc.record({
            // Mostly the stream's own types, so the equality rules share a type entry.
            events: fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...types) }, { weight: 1, arbitrary: patternArb(['acme.custom']) }), {
              minLength: 1,
              maxLength: 2,
            }),
            where: fc.oneof(
              { weight: 1, arbitrary: fc.constant(undefined) },
              { weight: 5, arbitrary: fc.oneof(scalarArb, fc.array(scalarArb, { minLength: 1, maxLength: 3 })).map((v) => ({ [path]: v })) },
              // Now and then a rule that is not a single equality, which turns the per-value cache off for its types.
              { weight: 1, arbitrary: specArb.map((v) => ({ [path]: v, 'data.state': 'active' })) },
            ),
            to: fc.array(fc.constantFrom(...DESTINATIONS), { minLength: 1, maxLength: 2 }),
          }),
          { minLength: 1, maxLength: 10 },
        )
        .map((list) => namedRules(list as { events: string[]; where?: Record<string, Spec>; to: string[] }[], 't')),
      // Values at the path: scalars (1 vs "1", null vs absent, true vs "true"), lists, objects, absent.
      values: fc.array(fc.oneof({ weight: 5, arbitrary: scalarArb }, { weight: 2, arbitrary: fieldValueArb }), { minLength: 1, maxLength: 6 }),
      picks: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.constantFrom('active', 'inactive', undefined)), { minLength: 4, maxLength: 30 }),
      types: fc.constant(types),
    }),
  );

function eventWithValueAt(type: string, path: string, value: unknown, state: string | undefined): UnknownEvent {
  const envelope: Record<string, unknown> = { id: 'event_01', event: type, data: {}, created_at: '2026-11-20T10:00:00.000Z' };
  const data = envelope.data as Record<string, unknown>;
  if (state !== undefined) data.state = state;
  if (value !== undefined) {
    if (path === 'data.organization_id') data.organization_id = value;
    else if (path === 'data.user.id') data.user = { id: value };
    else if (path === 'context.actor') envelope.context = { actor: value };
    else if (path === 'id') envelope.id = value;
    // `event` is the type itself: the value goes nowhere else.
  } else if (path === 'id') delete envelope.id;
  return JSON.parse(JSON.stringify(envelope)) as UnknownEvent;
}

describe('matcher: per-(type, value) cache and type cache', () => {
  it(`${CACHE_RUNS} runs: per-tenant rule sets, the same types matched over and over with different values`, () => {
    fc.assert(
      fc.property(tenantScenarioArb, ({ path, rules, values, picks, types }) => {
        const matchers = [directMatcher(rules), configMatcher(rules)] as Matcher<MatcherRule>[];
        for (const [ti, vi, state] of picks) {
          const type = types[ti % types.length] as string;
          // For the path `event`, the value under test is the type name itself.
          const value = path === 'event' ? type : values[vi % values.length];
          const event = eventWithValueAt(type, path, value, state);
          check(matchers, rules, event);
          // Same (type, value) again: the cached answer must still be right, and stable.
          check(matchers, rules, event);
        }
      }),
      { numRuns: CACHE_RUNS },
    );
  }, TIMEOUT);

  it('20 runs: stays correct past the type cache limit (thousands of distinct names, then the first ones again)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(randomName, { minLength: 1, maxLength: 3 }).chain((vocab) => rulesArb(vocab, 8)),
        fc.integer({ min: 4_200, max: 5_000 }),
        (rules, distinct) => {
          const matchers = [directMatcher(rules)] as Matcher<MatcherRule>[];
          const ev = (type: string): UnknownEvent =>
            ({ id: 'event_01', event: type, data: { organization_id: 'org_1', state: 'active' }, created_at: '2026-11-20T10:00:00.000Z' }) as UnknownEvent;
          const names = Array.from({ length: distinct }, (_, i) => (i < CATALOG.length ? (CATALOG[i] as string) : `acme.t${i}.created`));
          for (const n of names) check(matchers, rules, ev(n));
          for (const n of names.slice(0, 300)) check(matchers, rules, ev(n));
        },
      ),
      { numRuns: 20 },
    );
  }, TIMEOUT);

  it('stays correct past the per-value cache limit (more than 100,000 distinct values for one type)', () => {
    const rules: RuleSpec[] = [
      { name: 'all', events: ['user.created'], to: ['d0'] },
      { name: 'even', events: ['user.*'], where: { 'data.organization_id': ['org_0', 'org_2', 'org_100000', 'org_100002'] }, to: ['d1'] },
      { name: 'one', events: ['user.created'], where: { 'data.organization_id': 'org_1' }, to: ['d2'] },
    ];
    const matchers = [directMatcher(rules)] as Matcher<MatcherRule>[];
    const ev = (org: string): UnknownEvent =>
      ({ id: 'event_01', event: 'user.created', data: { organization_id: org }, created_at: '2026-11-20T10:00:00.000Z' }) as UnknownEvent;
    for (let i = 0; i < 100_100; i++) {
      const event = ev(`org_${i}`);
      if (i % 97 === 0 || i < 5 || i >= 100_000) check(matchers, rules, event);
      else matchers[0]?.match(event);
    }
    for (const org of ['org_0', 'org_1', 'org_2', 'org_3', 'org_100002']) check(matchers, rules, ev(org));
  }, TIMEOUT);
});
