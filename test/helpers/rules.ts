/**
 * Rule sets for the matcher tests, and the naive scan they are checked
 * against. The scan is written from README "Rules", not from matcher.ts /
 * where.ts:
 *
 *  - `*` matches any run of characters (dots included, also none); a leading
 *    `!` excludes; anything else is an exact name; a list of only exclusions
 *    matches every other name;
 *  - `where`: every path must hold; a path reads the event's own fields only;
 *    value = equal (strict: "1" is not 1); list = equal to any, compared as a
 *    Set compares (SameValueZero: like ===, except that a NaN in the list
 *    matches a NaN field); prefix / suffix = a string starting / ending with
 *    one of them; exists = present and not null (false: absent or null); not =
 *    the inner condition does not hold. An event field that is a list matches
 *    a value, list, prefix or suffix condition when any element does; `exists`
 *    judges the field itself (a list is present). Several operators in one
 *    table must all hold;
 *  - the result is the matching rules in config order, and their destinations
 *    each once, in rule order.
 */
import { type Rule, parseRouterConfig } from '../../src/config/router-config';
import type { UnknownEvent } from '../../src/events/catalog';
import { Matcher, type MatcherRule } from '../../src/routing/matcher';
import { type CompiledCondition, compileWhere } from '../../src/routing/where';

export type ScalarValue = string | number | boolean | null;
export type Spec = ScalarValue | ScalarValue[] | { prefix?: string | string[]; suffix?: string | string[]; exists?: boolean; not?: Spec };

/** A rule as written in ROUTER (`where` as the config gives it). */
export interface RuleSpec<W = Spec> {
  name: string;
  events: string[];
  where?: Record<string, W>;
  to: string[];
}

/** Generated rule bodies named in config order (`r0`, `r1`, …), with `where` only when there is one. */
export function namedRules<W>(list: readonly { events: string[]; where?: Record<string, W> | undefined; to: string[] }[], prefix = 'r'): RuleSpec<W>[] {
  return list.map((r, i) => {
    const rule: RuleSpec<W> = { name: `${prefix}${i}`, events: r.events, to: r.to };
    if (r.where !== undefined) rule.where = r.where;
    return rule;
  });
}

// ---------------------------------------------------------------------------
// Building matchers the two ways the Worker does.

function compiled(rule: RuleSpec<unknown>): CompiledCondition[] {
  if (rule.where === undefined) return [];
  const w = compileWhere(rule.where, `${rule.name}.where`);
  if (!w.ok) throw new Error(`invalid where: ${w.problems.join('; ')}`);
  return w.conditions;
}

/** `new Matcher(rules)` over compiled rules. */
export function directMatcher(rules: readonly RuleSpec<unknown>[]): Matcher<MatcherRule> {
  return new Matcher(rules.map((r) => ({ name: r.name, events: r.events, where: compiled(r), to: r.to })));
}

/** `parseRouterConfig(...).config.matcher`, with an http destination for every name the rules send to. */
export function configMatcher(rules: readonly RuleSpec<unknown>[]): Matcher<Rule> {
  const names = [...new Set(rules.flatMap((r) => r.to))];
  const destinations = names.map((name) => ({ name, type: 'http', url: `https://hooks.example/${name}` }));
  const result = parseRouterConfig({ destinations, rules }, () => undefined);
  if (!result.ok) throw new Error(`invalid config:\n${result.problems.join('\n')}`);
  return result.config.matcher;
}

export const ruleNames = (rules: readonly { name: string }[]): string[] => rules.map((r) => r.name);

// ---------------------------------------------------------------------------
// The naive scan.

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

export function namesSelect(patterns: readonly string[], type: string): boolean {
  const includes = patterns.filter((p) => p[0] !== '!');
  const excludes = patterns.filter((p) => p[0] === '!').map((p) => p.slice(1));
  if (excludes.some((p) => globMatches(p, type))) return false;
  return includes.length === 0 || includes.some((p) => globMatches(p, type));
}

export const MISSING_FIELD = Symbol('missing');

/** The event's own field at a dotted path, or MISSING_FIELD. */
export function fieldAt(event: unknown, path: string): unknown {
  let cur: unknown = event;
  for (const seg of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || !Object.prototype.hasOwnProperty.call(cur, seg)) return MISSING_FIELD;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

const sameValueZero = (a: unknown, b: unknown): boolean => a === b || (Number.isNaN(a) && Number.isNaN(b));
const anyElement = (field: unknown, test: (v: unknown) => boolean): boolean => (Array.isArray(field) ? field.some(test) : test(field));
const listOf = (x: string | string[]): string[] => (typeof x === 'string' ? [x] : x);

export function holds(spec: Spec, field: unknown): boolean {
  if (spec === null || typeof spec !== 'object') return anyElement(field, (v) => v === spec);
  if (Array.isArray(spec)) return anyElement(field, (v) => spec.some((s) => sameValueZero(s, v)));
  let ok = true;
  if (spec.prefix !== undefined) {
    const list = listOf(spec.prefix);
    ok &&= anyElement(field, (v) => typeof v === 'string' && list.some((s) => v.slice(0, s.length) === s));
  }
  if (spec.suffix !== undefined) {
    const list = listOf(spec.suffix);
    ok &&= anyElement(field, (v) => typeof v === 'string' && list.some((s) => v.length >= s.length && v.slice(v.length - s.length) === s));
  }
  if (spec.exists !== undefined) ok &&= (field !== MISSING_FIELD && field !== null) === spec.exists;
  if (spec.not !== undefined) ok &&= !holds(spec.not, field);
  return ok;
}

export function naiveMatch(rules: readonly RuleSpec[], event: UnknownEvent): { rules: string[]; destinations: string[] } {
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

/** The rules whose event patterns select `type`, in config order. */
export function naiveNames(rules: readonly RuleSpec[], type: string): string[] {
  return rules.filter((r) => namesSelect(r.events, type)).map((r) => r.name);
}

/** Throws, showing both answers, unless every matcher returns what the naive scan returns for `event`. */
export function check(matchers: readonly Matcher<MatcherRule>[], rules: readonly RuleSpec[], event: UnknownEvent, show: (v: unknown) => string = (v) => JSON.stringify(v)): void {
  const want = naiveMatch(rules, event);
  for (const [i, m] of matchers.entries()) {
    const got = m.match(event);
    const view = { rules: ruleNames(got.rules), destinations: got.destinations };
    if (JSON.stringify(view) !== JSON.stringify(want)) {
      throw new Error(
        `matcher #${i} (${i === 0 ? 'new Matcher' : 'parseRouterConfig'}) disagrees with the naive scan\n` +
          `  rules: ${show(rules)}\n  event: ${show(event)}\n  got:   ${JSON.stringify(view)}\n  want:  ${JSON.stringify(want)}`,
      );
    }
  }
}
