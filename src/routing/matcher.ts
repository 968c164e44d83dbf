/**
 * The rule matcher, compiled once per config.
 *
 * Event-name patterns: `*` matches any run of characters (dots included), a
 * leading `!` excludes, anything else is an exact name. A rule whose list
 * holds only exclusions matches every other name.
 *
 * Per-event cost does not grow with the number of rules:
 * - the rules that a type name selects are computed once per distinct name and
 *   cached (exact names come from a map; wildcard rules are scanned only on
 *   the first sight of a name);
 * - within a type, rules whose `where` starts with an equality / any-of are
 *   indexed by (path, value), so only rules that can match are evaluated.
 */
import type { UnknownEvent } from '../events/catalog';
import { type CompiledCondition, type Scalar, isScalar, readPath } from './where';

export interface MatcherRule {
  name: string;
  events: readonly string[];
  where: readonly CompiledCondition[];
  to: readonly string[];
}

interface IndexedRule<R extends MatcherRule> {
  order: number;
  rule: R;
}

interface TypeEntry<R extends MatcherRule> {
  /** Rules with no `where`: always match this type. */
  unconditional: IndexedRule<R>[];
  /** The result when only the unconditional rules can match (no indexed or scanned rules): shared, read-only. */
  fixed?: MatchResult<R>;
  /** path -> value key -> rules whose first equality condition is on path. */
  indexed: Map<string, { segments: string[]; byValue: Map<Scalar, IndexedRule<R>[]> }>;
  /** Rules whose `where` has no equality condition: evaluated in full. */
  scanned: IndexedRule<R>[];
  /**
   * When every conditional rule of this type is a single equality on one
   * path (per-tenant routing), the result for each value is fixed: computed
   * once per (type, value) and reused.
   */
  byValueOnly?: { segments: string[]; results: Map<Scalar | typeof MISSING, MatchResult<R>> };
}

export interface MatchResult<R extends MatcherRule> {
  rules: R[];
  /** Destination names, each once, in rule order. */
  destinations: string[];
}

const TYPE_CACHE_LIMIT = 4096;
const VALUE_CACHE_LIMIT = 100_000;
/** Cache key for an absent field (distinct from null, which `where` can test for). */
const MISSING = Symbol('missing');

export class Matcher<R extends MatcherRule> {
  private readonly rules: IndexedRule<R>[];
  private readonly exact = new Map<string, IndexedRule<R>[]>();
  private readonly wildcard: { rule: IndexedRule<R>; includes: RegExp[]; excludes: RegExp[]; exactIncludes: Set<string> }[] = [];
  private readonly cache = new Map<string, TypeEntry<R>>();

  constructor(rules: readonly R[]) {
    this.rules = rules.map((rule, order) => ({ rule, order }));
    for (const ir of this.rules) {
      const includes = ir.rule.events.filter((p) => !p.startsWith('!'));
      const excludes = ir.rule.events.filter((p) => p.startsWith('!')).map((p) => p.slice(1));
      const simple = excludes.length === 0 && includes.every((p) => !p.includes('*'));
      if (simple) {
        for (const name of includes) {
          const list = this.exact.get(name) ?? [];
          if (!list.includes(ir)) list.push(ir);
          this.exact.set(name, list);
        }
      } else {
        this.wildcard.push({
          rule: ir,
          includes: (includes.length === 0 ? ['*'] : includes).filter((p) => p.includes('*')).map(globToRegExp),
          exactIncludes: new Set(includes.filter((p) => !p.includes('*'))),
          excludes: excludes.map(globToRegExp),
        });
      }
    }
  }

  /** Rules (in config order) whose names and `where` select this event, and their destinations. */
  match(event: UnknownEvent): MatchResult<R> {
    const entry = this.entryFor(event.event);
    if (entry.fixed !== undefined) return entry.fixed;
    const single = entry.byValueOnly;
    if (single !== undefined) {
      const value = readPath(event, single.segments);
      if (isScalar(value) || value === undefined) {
        const key = value === undefined ? MISSING : value;
        let result = single.results.get(key);
        if (result === undefined) {
          result = this.matchGeneral(entry, event);
          if (single.results.size >= VALUE_CACHE_LIMIT) single.results.clear();
          single.results.set(key, result);
        }
        return result;
      }
    }
    return this.matchGeneral(entry, event);
  }

  private matchGeneral(entry: TypeEntry<R>, event: UnknownEvent): MatchResult<R> {
    const hits: IndexedRule<R>[] = entry.unconditional.slice();
    for (const { segments, byValue } of entry.indexed.values()) {
      const value = readPath(event, segments);
      const values = Array.isArray(value) ? value : [value];
      for (const v of values) {
        if (!isScalar(v)) continue;
        const candidates = byValue.get(v);
        if (candidates === undefined) continue;
        for (const c of candidates) if (!hits.includes(c) && whereMatches(c.rule.where, event)) hits.push(c);
      }
    }
    for (const c of entry.scanned) if (whereMatches(c.rule.where, event)) hits.push(c);
    if (hits.length > 1) hits.sort((a, b) => a.order - b.order);
    return resultOf(hits);
  }

  /** Rules whose event patterns select this type name (ignoring `where`), in config order. */
  rulesForType(type: string): R[] {
    const e = this.entryFor(type);
    const all = [...e.unconditional, ...e.scanned];
    for (const { byValue } of e.indexed.values()) for (const list of byValue.values()) all.push(...list);
    return [...new Set(all)].sort((a, b) => a.order - b.order).map((x) => x.rule);
  }

  /** Does a single pattern list select this type name? (Used by the route explainer and reconciler.) */
  static namesMatch(patterns: readonly string[], type: string): boolean {
    const includes = patterns.filter((p) => !p.startsWith('!'));
    const excludes = patterns.filter((p) => p.startsWith('!')).map((p) => p.slice(1));
    const inc = includes.length === 0 || includes.some((p) => globToRegExp(p).test(type));
    return inc && !excludes.some((p) => globToRegExp(p).test(type));
  }

  private entryFor(type: string): TypeEntry<R> {
    const cached = this.cache.get(type);
    if (cached !== undefined) return cached;
    const selected = new Set<IndexedRule<R>>(this.exact.get(type) ?? []);
    for (const w of this.wildcard) {
      const included = w.exactIncludes.has(type) || w.includes.some((re) => re.test(type));
      if (included && !w.excludes.some((re) => re.test(type))) selected.add(w.rule);
    }
    const entry: TypeEntry<R> = { unconditional: [], indexed: new Map(), scanned: [] };
    for (const ir of [...selected].sort((a, b) => a.order - b.order)) {
      const eq = ir.rule.where.find((c) => c.equalityValues !== undefined);
      if (ir.rule.where.length === 0) entry.unconditional.push(ir);
      else if (eq === undefined) entry.scanned.push(ir);
      else {
        let slot = entry.indexed.get(eq.path);
        if (slot === undefined) {
          slot = { segments: eq.segments, byValue: new Map() };
          entry.indexed.set(eq.path, slot);
        }
        for (const value of eq.equalityValues ?? []) {
          const list = slot.byValue.get(value) ?? [];
          list.push(ir);
          slot.byValue.set(value, list);
        }
      }
    }
    if (entry.indexed.size === 0 && entry.scanned.length === 0) entry.fixed = resultOf(entry.unconditional);
    else if (entry.indexed.size === 1 && entry.scanned.length === 0) {
      const [slot] = entry.indexed.values();
      const allSingle = [...(slot?.byValue.values() ?? [])].every((list) => list.every((ir) => ir.rule.where.length === 1));
      if (slot !== undefined && allSingle) entry.byValueOnly = { segments: slot.segments, results: new Map() };
    }
    if (this.cache.size >= TYPE_CACHE_LIMIT) this.cache.clear();
    this.cache.set(type, entry);
    return entry;
  }
}

function resultOf<R extends MatcherRule>(hits: readonly IndexedRule<R>[]): MatchResult<R> {
  const rules = hits.map((h) => h.rule);
  const destinations: string[] = [];
  for (const r of rules) for (const d of r.to) if (!destinations.includes(d)) destinations.push(d);
  return { rules, destinations };
}

export function whereMatches(where: readonly CompiledCondition[], event: UnknownEvent): boolean {
  for (const c of where) if (!c.test(readPath(event, c.segments))) return false;
  return true;
}

const globCache = new Map<string, RegExp>();
export function globToRegExp(pattern: string): RegExp {
  let re = globCache.get(pattern);
  if (re === undefined) {
    const body = pattern
      .split('*')
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*');
    // `s` (dotAll): `*` matches any character, line terminators included, so a
    // name holding "\n" cannot slip past a `*` or a `!…*` exclusion.
    re = new RegExp(`^${body}$`, 's');
    if (globCache.size > 10_000) globCache.clear();
    globCache.set(pattern, re);
  }
  return re;
}
