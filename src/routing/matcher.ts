/**
 * The rule matcher.
 *
 * Event-name patterns: `*` matches any run of characters (dots included), a
 * leading `!` excludes, anything else is an exact name. A rule whose list
 * holds only exclusions matches every other name.
 *
 * Construction only keeps the rules; everything else is built lazily, so the
 * request that parses a large config does not pay for it:
 * - on the first match, one pass over the rules (O(rules), nothing per type):
 *   rules with the same pattern list share one compiled selector; rules whose
 *   `where` holds an equality / any-of are indexed by (path, value) in ONE
 *   index that every event type shares, keyed by the value itself;
 * - on the first sight of a type name, which selectors pick it (one test per
 *   distinct pattern list, not per rule) and which unindexed rules apply.
 *
 * Per event, the work does not grow with the number of rules: one cached type
 * lookup; per indexed path, one lookup that IS the equality test (only the
 * rules' remaining conditions are evaluated, and rules that repeat the same
 * remaining conditions share one copy of them); the type's unindexed rules;
 * nothing allocated but the result (a type whose result cannot vary returns
 * one shared result). What does grow is the index, and with thousands of
 * tenants its entries are rarely still in the CPU caches, so a lookup reads as
 * few separate places in memory as possible: a slot in a flat hash table, the
 * bucket (the key, then its rules as integers, packed together) and, for the
 * rules that match, their references.
 */
import type { UnknownEvent } from '../events/catalog';
import { type CompiledCondition, type Scalar, readPath } from './where';

export interface MatcherRule {
  name: string;
  events: readonly string[];
  where: readonly CompiledCondition[];
  to: readonly string[];
}

export interface MatchResult<R extends MatcherRule> {
  rules: R[];
  /** Destination names, each once, in rule order. */
  destinations: string[];
}

/** One distinct list of event-name patterns, shared by every rule that uses it. */
interface Selector {
  id: number;
  events: readonly string[];
  includes: RegExp[];
  exactIncludes: Set<string>;
  excludes: RegExp[];
}

/**
 * The (path, value) index: every rule whose first equality / any-of condition
 * is on `path`, bucketed by value. Buckets are packed in Compiled.cells; a
 * bucket's handle is the offset of its rule count, followed by REC integers
 * per rule (config order): order, selector id, id of the remaining conditions
 * (Compiled.rests), destination id (>= 0, or ~i for Compiled.multiTo[i]),
 * and where the rule and its destination name sit in Compiled.refs.
 *
 * String values are found through `slots`, an open-addressing table of
 * (hash, bucket start + 1) pairs (0 = empty); a string bucket starts with the
 * key itself, [length, UTF-16 units two per integer], so the comparison that
 * confirms a hash reads the same memory as the bucket. Other scalars
 * (numbers, booleans, null) are found through `others` (a Map, SameValueZero:
 * like === for every equality value, NaN aside, which where.ts never indexes).
 */
interface PathIndex {
  path: string;
  segments: string[];
  slots: Int32Array;
  mask: number;
  others: Map<Scalar, number>;
  /** Ids of the selectors of the rules indexed here (to skip the path for types none of them picks). */
  selectors: Set<number>;
  /** While building: bucket number by value, and how many values are strings. */
  building: { ids: Map<Scalar, number>; strings: number } | undefined;
}

const REC = 5;
const R_ORDER = 0;
const R_SEL = 1;
const R_REST = 2;
const R_TO = 3;
const R_REF = 4;

/** Rules are numbered by config position ("order"). */
interface Compiled<R extends MatcherRule> {
  selectors: Selector[];
  /** Per rule: selector id. */
  sel: Int32Array;
  /** Per rule: destination id (>= 0), or ~i for multiTo[i]. */
  to: Int32Array;
  /** Per unindexed rule: its conditions (shared between rules with the same ones). */
  conditions: (readonly CompiledCondition[])[];
  /** Unindexed rules, config order. */
  unindexed: number[];
  paths: PathIndex[];
  cells: Int32Array;
  /** Condition lists by id (0: none); rules with the same remaining conditions share one. */
  rests: (readonly CompiledCondition[])[];
  /** Per indexed rule: the rule, then its destination name (undefined when it has several). */
  refs: unknown[];
  /** Destination names by id. */
  destinations: string[];
  multiTo: Int32Array[];
  rules: readonly R[];
}

interface TypeEntry<R extends MatcherRule> {
  /** selects[selector id] === 1 when that selector picks this type. */
  selects: Uint8Array;
  /** Set when nothing but the unconditional rules can match: the shared, read-only result. */
  fixed: MatchResult<R> | undefined;
  /** Rules with no `where` (orders, ascending). */
  unconditional: Int32Array;
  /** The result when no conditional rule matches (the unconditional rules only): shared, read-only. */
  base: MatchResult<R>;
  /** Unindexed rules with a `where` (orders, ascending). */
  scanned: Int32Array;
  /** Index paths that hold at least one rule this type selects. */
  paths: PathIndex[];
}

const TYPE_CACHE_LIMIT = 4096;
const EMPTY: readonly CompiledCondition[] = [];

export class Matcher<R extends MatcherRule> {
  private readonly rules: readonly R[];
  private compiled: Compiled<R> | undefined;
  private readonly cache = new Map<string, TypeEntry<R>>();
  // Scratch space reused by every match (match is synchronous and never re-entered): the
  // conditional rules that matched (order; offset of the bucket record in cells, or -1 for an
  // unindexed rule), and the destination ids already in the result.
  private hitOrder: Int32Array = new Int32Array(16);
  private hitRec: Int32Array = new Int32Array(16);
  private hitCount = 0;
  private seen: Int32Array = new Int32Array(16);

  constructor(rules: readonly R[]) {
    this.rules = rules.slice();
  }

  /** Rules (in config order) whose names and `where` select this event, and their destinations. */
  match(event: UnknownEvent): MatchResult<R> {
    const entry = this.entryFor(event.event);
    if (entry.fixed !== undefined) return entry.fixed;
    const c = this.compiled as Compiled<R>;
    const { cells, rests } = c;
    const selects = entry.selects;
    this.hitCount = 0;
    let sources = 0;
    let fromArray = false;
    const paths = entry.paths;
    for (let p = 0; p < paths.length; p++) {
      const index = paths[p] as PathIndex;
      const value = readPath(event, index.segments);
      const before = this.hitCount;
      if (!Array.isArray(value)) {
        // The lookup is the equality test: only the remaining conditions are evaluated.
        const at = find(index, cells, value);
        if (at >= 0) {
          const end = at + 1 + (cells[at] as number) * REC;
          for (let o = at + 1; o < end; o += REC) {
            if (selects[cells[o + R_SEL] as number] === 1 && whereMatches(rests[cells[o + R_REST] as number] as readonly CompiledCondition[], event)) {
              this.hit(cells[o + R_ORDER] as number, o);
            }
          }
        }
      } else {
        // Element-wise, like the condition itself; a rule hit by several elements is listed once.
        for (let i = 0; i < value.length; i++) {
          const at = find(index, cells, value[i]);
          if (at < 0) continue;
          const end = at + 1 + (cells[at] as number) * REC;
          for (let o = at + 1; o < end; o += REC) {
            const order = cells[o + R_ORDER] as number;
            if (
              selects[cells[o + R_SEL] as number] === 1 &&
              !this.listed(before, order) &&
              whereMatches(rests[cells[o + R_REST] as number] as readonly CompiledCondition[], event)
            ) {
              this.hit(order, o);
            }
          }
        }
        if (this.hitCount > before + 1) fromArray = true;
      }
      if (this.hitCount > before) sources++;
    }
    const scanned = entry.scanned;
    const beforeScan = this.hitCount;
    for (let k = 0; k < scanned.length; k++) {
      const order = scanned[k] as number;
      if (whereMatches(c.conditions[order] as readonly CompiledCondition[], event)) this.hit(order, -1);
    }
    if (this.hitCount > beforeScan) sources++;
    if (this.hitCount === 0) return entry.base;
    // Each source is in config order already; sort only when several contributed (or array elements did).
    if (sources > 1 || fromArray) this.sortHits();
    return this.resultOf(entry.unconditional, this.hitCount);
  }

  /** Rules whose event patterns select this type name (ignoring `where`), in config order. */
  rulesForType(type: string): R[] {
    const c = this.compile();
    const selects = this.entryFor(type).selects;
    const out: R[] = [];
    for (let order = 0; order < this.rules.length; order++) if (selects[c.sel[order] as number] === 1) out.push(this.rules[order] as R);
    return out;
  }

  /** Does a single pattern list select this type name? (Used by the route explainer and reconciler.) */
  static namesMatch(patterns: readonly string[], type: string): boolean {
    const includes = patterns.filter((p) => !p.startsWith('!'));
    const excludes = patterns.filter((p) => p.startsWith('!')).map((p) => p.slice(1));
    const inc = includes.length === 0 || includes.some((p) => globToRegExp(p).test(type));
    return inc && !excludes.some((p) => globToRegExp(p).test(type));
  }

  private hit(order: number, rec: number): void {
    if (this.hitCount === this.hitOrder.length) {
      this.hitOrder = grown(this.hitOrder);
      this.hitRec = grown(this.hitRec);
    }
    this.hitOrder[this.hitCount] = order;
    this.hitRec[this.hitCount] = rec;
    this.hitCount++;
  }

  private listed(from: number, order: number): boolean {
    for (let i = from; i < this.hitCount; i++) if (this.hitOrder[i] === order) return true;
    return false;
  }

  /** Insertion sort of the hits by config order (a handful of rules). */
  private sortHits(): void {
    const orders = this.hitOrder;
    const recs = this.hitRec;
    for (let i = 1; i < this.hitCount; i++) {
      const o = orders[i] as number;
      const r = recs[i] as number;
      let j = i - 1;
      while (j >= 0 && (orders[j] as number) > o) {
        orders[j + 1] = orders[j] as number;
        recs[j + 1] = recs[j] as number;
        j--;
      }
      orders[j + 1] = o;
      recs[j + 1] = r;
    }
  }

  /**
   * The unconditional rules (orders, ascending) and the first `hits` hits
   * (ascending, disjoint from them) merged in config order, with their
   * destinations each once, in rule order. An indexed hit is read from its
   * bucket record (already in the CPU cache) and refs, not from the per-rule tables.
   */
  private resultOf(unconditional: Int32Array, hits: number): MatchResult<R> {
    const c = this.compiled as Compiled<R>;
    const rules: R[] = [];
    const destinations: string[] = [];
    let seen = 0;
    let i = 0;
    let j = 0;
    while (i < unconditional.length || j < hits) {
      let rule: R;
      let to: number;
      let name: string | undefined;
      const rec = j < hits ? (this.hitRec[j] as number) : -1;
      if (j >= hits || (i < unconditional.length && (unconditional[i] as number) < (this.hitOrder[j] as number))) {
        const order = unconditional[i++] as number;
        rule = c.rules[order] as R;
        to = c.to[order] as number;
        name = to >= 0 ? c.destinations[to] : undefined;
      } else if (rec < 0) {
        const order = this.hitOrder[j++] as number;
        rule = c.rules[order] as R;
        to = c.to[order] as number;
        name = to >= 0 ? c.destinations[to] : undefined;
      } else {
        j++;
        const ref = c.cells[rec + R_REF] as number;
        rule = c.refs[ref] as R;
        to = c.cells[rec + R_TO] as number;
        name = c.refs[ref + 1] as string | undefined;
      }
      rules.push(rule);
      if (to >= 0) {
        if (!this.hasSeen(seen, to)) {
          this.addSeen(seen++, to);
          destinations.push(name as string);
        }
      } else {
        const list = c.multiTo[~to] as Int32Array;
        for (let k = 0; k < list.length; k++) {
          const id = list[k] as number;
          if (this.hasSeen(seen, id)) continue;
          this.addSeen(seen++, id);
          destinations.push(c.destinations[id] as string);
        }
      }
    }
    return { rules, destinations };
  }

  private hasSeen(count: number, id: number): boolean {
    for (let k = 0; k < count; k++) if (this.seen[k] === id) return true;
    return false;
  }

  private addSeen(at: number, id: number): void {
    if (at === this.seen.length) this.seen = grown(this.seen);
    this.seen[at] = id;
  }

  /** One pass over the rules, on first use: selectors, the shared (path, value) index, the unindexed rules. */
  private compile(): Compiled<R> {
    if (this.compiled !== undefined) return this.compiled;
    const rules = this.rules;
    const n = rules.length;
    const selectors: Selector[] = [];
    const selectorsByKey: Trie<Selector> = { value: undefined, next: undefined };
    const destinations: string[] = [];
    const destIds = new Map<string, number>();
    const multiTo: Int32Array[] = [];
    const shared: Trie<readonly CompiledCondition[]> = { value: undefined, next: undefined };
    const sel = new Int32Array(n);
    const to = new Int32Array(n);
    const conditions: (readonly CompiledCondition[])[] = new Array(n).fill(EMPTY);
    const rests: (readonly CompiledCondition[])[] = [EMPTY];
    const restIds = new Map<readonly CompiledCondition[], number>();
    const rest = new Int32Array(n);
    const unindexed: number[] = [];
    const paths = new Map<string, PathIndex>();
    // While building, buckets are linked lists of entries (one per rule and value), in config order.
    const bucketKey: Scalar[] = [];
    const bucketPath: PathIndex[] = [];
    const bucketHead: number[] = [];
    const bucketTail: number[] = [];
    const bucketSize: number[] = [];
    const entryOrder: number[] = [];
    const entryNext: number[] = [];
    let cellCount = 0;
    for (let order = 0; order < n; order++) {
      const rule = rules[order] as R;
      sel[order] = selectorFor(rule.events, selectors, selectorsByKey).id;
      const ruleTo = rule.to;
      if (ruleTo.length === 1) to[order] = destId(ruleTo[0] as string, destinations, destIds);
      else {
        multiTo.push(Int32Array.from(ruleTo, (name) => destId(name, destinations, destIds)));
        to[order] = ~(multiTo.length - 1);
      }
      const where = rule.where;
      let eq: CompiledCondition | undefined;
      for (let k = 0; k < where.length; k++) {
        if ((where[k] as CompiledCondition).equalityValues !== undefined) {
          eq = where[k];
          break;
        }
      }
      if (eq === undefined) {
        conditions[order] = share(where, shared);
        unindexed.push(order);
        continue;
      }
      // An indexed rule's lookup is its equality test: the other conditions stay with it.
      if (where.length > 1) {
        const others: CompiledCondition[] = [];
        for (const cond of where) if (cond !== eq) others.push(cond);
        const list = share(others, shared);
        let id = restIds.get(list);
        if (id === undefined) {
          id = rests.length;
          rests.push(list);
          restIds.set(list, id);
        }
        rest[order] = id;
      }
      let index = paths.get(eq.path);
      if (index === undefined) {
        const building = { ids: new Map<Scalar, number>(), strings: 0 };
        index = { path: eq.path, segments: eq.segments, slots: new Int32Array(0), mask: 0, others: new Map(), selectors: new Set(), building };
        paths.set(eq.path, index);
      }
      index.selectors.add(sel[order] as number);
      const building = index.building as { ids: Map<Scalar, number>; strings: number };
      const values = eq.equalityValues ?? [];
      for (let v = 0; v < values.length; v++) {
        const value = values[v] as Scalar;
        let b = building.ids.get(value);
        if (b === undefined) {
          b = bucketKey.length;
          building.ids.set(value, b);
          bucketKey.push(value);
          bucketPath.push(index);
          bucketHead.push(-1);
          bucketTail.push(-1);
          bucketSize.push(0);
          cellCount += 1;
          if (typeof value === 'string') {
            cellCount += 1 + ((value.length + 1) >> 1);
            building.strings++;
          }
        }
        const tail = bucketTail[b] as number;
        // A value listed twice (or -0 and 0) puts the rule in its bucket once.
        if (tail >= 0 && entryOrder[tail] === order) continue;
        const e = entryOrder.length;
        entryOrder.push(order);
        entryNext.push(-1);
        if (tail < 0) bucketHead[b] = e;
        else entryNext[tail] = e;
        bucketTail[b] = e;
        bucketSize[b] = (bucketSize[b] as number) + 1;
        cellCount += REC;
      }
    }
    for (const index of paths.values()) {
      let capacity = 8;
      while (capacity < (index.building?.strings ?? 0) * 2) capacity *= 2;
      index.slots = new Int32Array(capacity * 2);
      index.mask = capacity - 1;
      index.building = undefined;
    }
    // Pack the buckets, and hash the string values into their path's table.
    const cells = new Int32Array(cellCount);
    const refs: unknown[] = new Array(entryOrder.length * 2);
    let at = 0;
    let ref = 0;
    for (let b = 0; b < bucketKey.length; b++) {
      const value = bucketKey[b] as Scalar;
      const index = bucketPath[b] as PathIndex;
      if (typeof value === 'string') {
        const h = hashString(value);
        let s = h & index.mask;
        while (index.slots[s * 2 + 1] !== 0) s = (s + 1) & index.mask;
        index.slots[s * 2] = h;
        index.slots[s * 2 + 1] = at + 1;
        at = packString(value, cells, at);
      } else index.others.set(value, at);
      cells[at++] = bucketSize[b] as number;
      for (let e = bucketHead[b] as number; e >= 0; e = entryNext[e] as number) {
        const order = entryOrder[e] as number;
        const t = to[order] as number;
        cells[at + R_ORDER] = order;
        cells[at + R_SEL] = sel[order] as number;
        cells[at + R_REST] = rest[order] as number;
        cells[at + R_TO] = t;
        cells[at + R_REF] = ref;
        at += REC;
        refs[ref++] = rules[order];
        refs[ref++] = t >= 0 ? destinations[t] : undefined;
      }
    }
    this.compiled = { selectors, sel, to, conditions, unindexed, paths: [...paths.values()], cells, rests, refs, destinations, multiTo, rules };
    return this.compiled;
  }

  private entryFor(type: string): TypeEntry<R> {
    const cached = this.cache.get(type);
    if (cached !== undefined) return cached;
    const c = this.compile();
    const selects = new Uint8Array(c.selectors.length);
    for (const s of c.selectors) if (selectorPicks(s, type)) selects[s.id] = 1;
    const unconditional: number[] = [];
    const scanned: number[] = [];
    for (const order of c.unindexed) {
      if (selects[c.sel[order] as number] !== 1) continue;
      if ((c.conditions[order] as readonly CompiledCondition[]).length === 0) unconditional.push(order);
      else scanned.push(order);
    }
    const paths = c.paths.filter((p) => [...p.selectors].some((id) => selects[id] === 1));
    const entry: TypeEntry<R> = {
      selects,
      fixed: undefined,
      unconditional: Int32Array.from(unconditional),
      base: { rules: [], destinations: [] },
      scanned: Int32Array.from(scanned),
      paths,
    };
    entry.base = this.resultOf(entry.unconditional, 0);
    if (paths.length === 0 && scanned.length === 0) entry.fixed = entry.base;
    if (this.cache.size >= TYPE_CACHE_LIMIT) this.cache.clear();
    this.cache.set(type, entry);
    return entry;
  }
}

/**
 * The handle (offset of the rule count in cells) of `value`'s bucket in this
 * index, or -1. Strings go through the hash table, and a hash that matches is
 * confirmed against the key packed at the start of the bucket; other scalars
 * go through a Map; anything else (undefined, an object) equals no equality value.
 */
function find(index: PathIndex, cells: Int32Array, value: unknown): number {
  if (typeof value === 'string') {
    const slots = index.slots;
    const mask = index.mask;
    const h = hashString(value);
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const at = slots[s * 2 + 1] as number;
      if (at === 0) return -1;
      if (slots[s * 2] === h) {
        const handle = unpackedEquals(value, cells, at - 1);
        if (handle >= 0) return handle;
      }
    }
  }
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return index.others.get(value) ?? -1;
  return -1;
}

/** Writes [length, UTF-16 units two per integer] at `at`; returns the offset after it. */
function packString(s: string, cells: Int32Array, at: number): number {
  const len = s.length;
  cells[at++] = len;
  let i = 0;
  for (; i + 1 < len; i += 2) cells[at++] = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
  if (i < len) cells[at++] = s.charCodeAt(i);
  return at;
}

/** When the string packed at `at` is `s`, the offset right after it; otherwise -1. */
function unpackedEquals(s: string, cells: Int32Array, at: number): number {
  const len = s.length;
  if (cells[at++] !== len) return -1;
  let i = 0;
  for (; i + 1 < len; i += 2) if (cells[at++] !== (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16))) return -1;
  if (i < len && cells[at++] !== s.charCodeAt(i)) return -1;
  return at;
}

/**
 * 32-bit FNV-1a over the UTF-16 code units, finished with murmur3's mixer.
 * Past 128 units, only the first 64, the last 64 and 64 spread over the
 * middle are hashed (with the length), so a huge field value costs a bounded
 * amount per lookup; the table confirms every hash against the key itself,
 * so a collision costs a probe, never a wrong answer.
 */
function hashString(s: string): number {
  const len = s.length;
  let h = 0x811c9dc5 ^ len;
  if (len <= 128) {
    for (let i = 0; i < len; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  } else {
    for (let i = 0; i < 64; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    const step = Math.floor((len - 128) / 64) + 1;
    for (let i = 64; i < len - 64; i += step) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    for (let i = len - 64; i < len; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

function grown(a: Int32Array): Int32Array {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}


/**
 * A lookup by a sequence of keys (one Map per step, keys compared as a Map
 * compares them), so a rule's pattern list or condition list is found without
 * building a string key for it.
 */
interface Trie<V> {
  value: V | undefined;
  next: Map<unknown, Trie<V>> | undefined;
}

function step<V>(node: Trie<V>, key: unknown): Trie<V> {
  let next = node.next?.get(key);
  if (next === undefined) {
    next = { value: undefined, next: undefined };
    (node.next ??= new Map()).set(key, next);
  }
  return next;
}

/**
 * One shared list for every rule whose conditions are the same (same path
 * segments with the same test functions, in the same order: where.ts gives a
 * repeated filter one test function), so the hot path reads one copy instead
 * of one per rule. Looked up by (test, path) per condition; a list found that
 * way is still compared (a hand-made condition's segments need not match its path).
 */
function share(list: readonly CompiledCondition[], shared: Trie<readonly CompiledCondition[]>): readonly CompiledCondition[] {
  if (list.length === 0) return EMPTY;
  let node = shared;
  for (let i = 0; i < list.length; i++) {
    const cond = list[i] as CompiledCondition;
    node = step(step(node, cond.test), cond.path);
  }
  const found = node.value;
  if (found !== undefined && sameConditions(found, list)) return found;
  const own = list.slice();
  if (found === undefined) node.value = own;
  return own;
}

function sameConditions(a: readonly CompiledCondition[], b: readonly CompiledCondition[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as CompiledCondition;
    const y = b[i] as CompiledCondition;
    if (x.test !== y.test || !sameStrings(x.segments, y.segments)) return false;
  }
  return true;
}

/** The selector of a pattern list: one per distinct list (same patterns, same order), looked up pattern by pattern. */
function selectorFor(events: readonly string[], selectors: Selector[], byList: Trie<Selector>): Selector {
  let node = byList;
  for (let i = 0; i < events.length; i++) node = step(node, events[i]);
  const known = node.value;
  if (known !== undefined) return known;
  const selector = compileSelector(events, selectors.length);
  selectors.push(selector);
  node.value = selector;
  return selector;
}

function destId(name: string, destinations: string[], ids: Map<string, number>): number {
  let id = ids.get(name);
  if (id === undefined) {
    id = destinations.length;
    destinations.push(name);
    ids.set(name, id);
  }
  return id;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function compileSelector(events: readonly string[], id: number): Selector {
  const includes = events.filter((p) => !p.startsWith('!'));
  const excludes = events.filter((p) => p.startsWith('!')).map((p) => p.slice(1));
  return {
    id,
    events: events.slice(),
    // A list of only exclusions includes every name.
    includes: (includes.length === 0 ? ['*'] : includes).filter((p) => p.includes('*')).map(globToRegExp),
    exactIncludes: new Set(includes.filter((p) => !p.includes('*'))),
    excludes: excludes.map(globToRegExp),
  };
}

function selectorPicks(s: Selector, type: string): boolean {
  const included = s.exactIncludes.has(type) || s.includes.some((re) => re.test(type));
  return included && !s.excludes.some((re) => re.test(type));
}

/** Does every condition hold for the event? (A rule's whole `where`, or what remains of it after its indexed equality.) */
export function whereMatches(where: readonly CompiledCondition[], event: UnknownEvent): boolean {
  for (let i = 0; i < where.length; i++) {
    const c = where[i] as CompiledCondition;
    if (!c.test(readPath(event, c.segments))) return false;
  }
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
