/**
 * Property tests (fast-check; a failure prints its seed, path and shrunk
 * counterexample) for the compiled rule matcher, src/routing/matcher.ts and
 * src/routing/where.ts.
 *
 * For generated rule sets (patterns with `*` and `!` exclusions built from the
 * real catalog names in EVENT_TYPES and from random names; `where` conditions
 * of every kind the README lists) and generated streams of events, the
 * matcher returns exactly the rules — and the destinations — that a naive
 * per-rule scan returns, in the same order. The scan below is written from
 * README "Rules", not from matcher.ts:
 *
 *  - `*` matches any run of characters (dots included, also none); a leading
 *    `!` excludes; anything else is an exact name; a list of only exclusions
 *    matches every other name;
 *  - `where`: every path must hold; a path reads the event's own fields only;
 *    value = equal (strict: "1" is not 1); list = equal to any; prefix /
 *    suffix = a string starting / ending with one of them; exists = present
 *    and not null (false: absent or null); not = the inner condition does not
 *    hold. An event field that is a list matches a value, list, prefix or
 *    suffix condition when any element does; `exists` judges the field itself
 *    (a list is present). Several operators in one table must all hold;
 *  - the result is the matching rules in config order, and their destinations
 *    each once, in rule order.
 *
 * Both ways the Worker can build a matcher are checked (`new Matcher(rules)`
 * and `parseRouterConfig(...).config.matcher`), and each stream is matched
 * twice, so later answers come from the type cache and the per-(type, value)
 * cache. Dedicated properties target the per-(type, value) cache (per-tenant
 * rule sets, the same type with many field values) and the cache limits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Rule, parseRouterConfig } from '../../src/config/router-config';
import { EVENT_TYPES, type UnknownEvent } from '../../src/events/catalog';
import { Matcher, type MatcherRule } from '../../src/routing/matcher';
import { compileWhere } from '../../src/routing/where';

const RUNS = 3_000;
const CACHE_RUNS = 1_500;
/** Generous: each property takes a few seconds; more on a busy machine. */
const TIMEOUT = 120_000;

// ---------------------------------------------------------------------------
// The naive scan (README semantics), independent of matcher.ts / where.ts.

/** `*` = any run of UTF-16 code units (none included); everything else literal. Greedy with backtracking. */
function globMatches(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let mark = 0;
  while (n < name.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.length && pattern[p] === name[n]) {
      p++;
      n++;
    } else if (star >= 0) {
      p = star + 1;
      n = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

function namesSelect(patterns: readonly string[], type: string): boolean {
  const includes = patterns.filter((p) => p[0] !== '!');
  const excludes = patterns.filter((p) => p[0] === '!').map((p) => p.slice(1));
  if (excludes.some((p) => globMatches(p, type))) return false;
  return includes.length === 0 || includes.some((p) => globMatches(p, type));
}

const MISSING_FIELD = Symbol('missing');

/** The event's own field at a dotted path, or MISSING_FIELD. */
function fieldAt(event: unknown, path: string): unknown {
  let cur: unknown = event;
  for (const seg of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return MISSING_FIELD;
    if (!Object.prototype.hasOwnProperty.call(cur, seg)) return MISSING_FIELD;
    cur = (cur as { [k: string]: unknown })[seg];
  }
  return cur;
}

function anyElement(field: unknown, test: (v: unknown) => boolean): boolean {
  return Array.isArray(field) ? field.some(test) : test(field);
}

type ScalarValue = string | number | boolean | null;
type Spec =
  | ScalarValue
  | ScalarValue[]
  | { prefix?: string | string[]; suffix?: string | string[]; exists?: boolean; not?: Spec };

function holds(spec: Spec, field: unknown): boolean {
  if (spec === null || typeof spec !== 'object') return anyElement(field, (v) => v === spec);
  if (Array.isArray(spec)) return anyElement(field, (v) => spec.some((s) => s === v));
  let ok = true;
  if (spec.prefix !== undefined) {
    const list = typeof spec.prefix === 'string' ? [spec.prefix] : spec.prefix;
    ok &&= anyElement(field, (v) => typeof v === 'string' && list.some((s) => v.slice(0, s.length) === s));
  }
  if (spec.suffix !== undefined) {
    const list = typeof spec.suffix === 'string' ? [spec.suffix] : spec.suffix;
    ok &&= anyElement(field, (v) => typeof v === 'string' && list.some((s) => v.length >= s.length && v.slice(v.length - s.length) === s));
  }
  if (spec.exists !== undefined) ok &&= (field !== MISSING_FIELD && field !== null) === spec.exists;
  if (spec.not !== undefined) ok &&= !holds(spec.not, field);
  return ok;
}

interface RuleSpec {
  name: string;
  events: string[];
  where?: Record<string, Spec>;
  to: string[];
}

function naiveMatch(rules: readonly RuleSpec[], event: UnknownEvent): { rules: string[]; destinations: string[] } {
  const hit: string[] = [];
  const destinations: string[] = [];
  for (const r of rules) {
    if (!namesSelect(r.events, event.event)) continue;
    if (!Object.entries(r.where ?? {}).every(([path, spec]) => holds(spec, fieldAt(event, path)))) continue;
    hit.push(r.name);
    for (const d of r.to) if (!destinations.includes(d)) destinations.push(d);
  }
  return { rules: hit, destinations };
}

function naiveNames(rules: readonly RuleSpec[], type: string): string[] {
  return rules.filter((r) => namesSelect(r.events, type)).map((r) => r.name);
}

// ---------------------------------------------------------------------------
// Building matchers the two ways the Worker does.

function directMatcher(rules: readonly RuleSpec[]): Matcher<MatcherRule> {
  return new Matcher(
    rules.map((r) => {
      let where: MatcherRule['where'] = [];
      if (r.where !== undefined) {
        const w = compileWhere(r.where, `${r.name}.where`);
        if (!w.ok) throw new Error(`generated an invalid where: ${w.problems.join('; ')}`);
        where = w.conditions;
      }
      return { name: r.name, events: r.events, where, to: r.to };
    }),
  );
}

const DESTINATIONS = ['d0', 'd1', 'd2', 'd3'];

function configMatcher(rules: readonly RuleSpec[]): Matcher<Rule> {
  const destinations = DESTINATIONS.map((name) => ({ name, type: 'http', url: `https://hooks.example/${name}` }));
  const result = parseRouterConfig({ destinations, rules }, () => undefined);
  if (!result.ok) throw new Error(`generated an invalid config:\n${result.problems.join('\n')}`);
  return result.config.matcher;
}

const ruleNames = (rules: readonly { name: string }[]): string[] => rules.map((r) => r.name);

function check(matchers: readonly Matcher<MatcherRule>[], rules: readonly RuleSpec[], event: UnknownEvent): void {
  const want = naiveMatch(rules, event);
  for (const [i, m] of matchers.entries()) {
    const got = m.match(event);
    const gotView = { rules: ruleNames(got.rules), destinations: got.destinations };
    if (JSON.stringify(gotView) !== JSON.stringify(want)) {
      throw new Error(
        `matcher #${i} (${i === 0 ? 'new Matcher' : 'parseRouterConfig'}) disagrees with the naive scan\n` +
          `  event: ${JSON.stringify(event)}\n  got:   ${JSON.stringify(gotView)}\n  want:  ${JSON.stringify(want)}`,
      );
    }
  }
}

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
    .map((list) =>
      list.map((r, i) => {
        const rule: RuleSpec = { name: `r${i}`, events: r.events, to: r.to };
        if (r.where !== undefined) rule.where = r.where;
        return rule;
      }),
    );
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
        .map((list) =>
          list.map((r, i) => {
            const rule: RuleSpec = { name: `t${i}`, events: r.events, to: r.to };
            if (r.where !== undefined) rule.where = r.where as Record<string, Spec>;
            return rule;
          }),
        ),
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
