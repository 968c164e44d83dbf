/**
 * `where` filters: dotted paths into the event, ANDed together.
 *   "data.organization_id" = "org_1"                 equality
 *   "data.organization_id" = ["org_1", "org_2"]      any of
 *   "data.email" = { suffix = "@example.com" }        prefix / suffix (string or list)
 *   "data.impersonator" = { exists = true }           present and not null (false: absent or null)
 *   "data.state" = { not = "active" }                 negation of any condition above
 * An event value that is an array matches when any element does; `exists`
 * on a field read through a list holds when an element has it, not null.
 */

export type Scalar = string | number | boolean | null;

export interface CompiledCondition {
  /** The dotted path as written. */
  path: string;
  segments: string[];
  test: (value: unknown) => boolean;
  /**
   * The values, when the condition is a plain equality / any-of: `test` holds
   * exactly when the value (or an element of it) is one of them, compared as
   * a Map compares keys (SameValueZero). The matcher's index relies on that
   * and does not call `test` for a value it finds there.
   */
  equalityValues?: Scalar[];
}

export type WhereCompileResult = { ok: true; conditions: CompiledCondition[] } | { ok: false; problems: string[] };

const OPERATORS = new Set(['prefix', 'suffix', 'exists', 'not']);

/**
 * Compiled operator tables (prefix / suffix / exists / not) by spec, so that
 * every condition repeating one (the same filter in thousands of per-tenant
 * rules) shares one `test` function: fewer closures to build, and one copy
 * for the matcher to read (it treats conditions with the same path segments
 * and the same test as the same condition). Bounded; only valid specs are kept.
 */
const compiledTables = new Map<string, Compiled>();
const COMPILED_TABLES_LIMIT = 1000;

/**
 * The segments of each valid path seen (bounded): thousands of rules filter
 * on the same few paths, and share one (read-only) segments array per path.
 */
const pathSegments = new Map<string, string[]>();
const PATH_SEGMENTS_LIMIT = 1000;
const PATH = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

function segmentsOf(path: string): string[] | undefined {
  const known = pathSegments.get(path);
  if (known !== undefined) return known;
  if (!PATH.test(path)) return undefined;
  const segments = path.split('.');
  if (pathSegments.size >= PATH_SEGMENTS_LIMIT) pathSegments.clear();
  pathSegments.set(path, segments);
  return segments;
}

/**
 * Compiles a `where` table. `at` names it in problems (`rules[3].where`); it
 * may be a function, called only when there is a problem to report.
 */
export function compileWhere(where: unknown, at: string | (() => string)): WhereCompileResult {
  const name = typeof at === 'string' ? () => at : at;
  if (!isPlainObject(where)) return { ok: false, problems: [`${name()}: must be a table of "path" = condition`] };
  let problems: string[] | undefined;
  const conditions: CompiledCondition[] = [];
  const paths = Object.keys(where);
  if (paths.length === 0) (problems ??= []).push(`${name()}: must name at least one path`);
  for (let i = 0; i < paths.length; i++) {
    const path = paths[i] as string;
    const segments = segmentsOf(path);
    if (segments === undefined) {
      (problems ??= []).push(`${name()}["${path}"]: path must be dot-separated field names, e.g. "data.organization_id"`);
      continue;
    }
    const spec = where[path];
    // The common cases (a plain equality, an operator table seen before) need no problem list and no position.
    const compiled = isScalar(spec) ? equality(spec) : (knownTable(spec) ?? compileCondition(spec, `${name()}["${path}"]`, (problems ??= [])));
    if (compiled === null) continue;
    const condition: CompiledCondition = { path, segments, test: compiled.test };
    if (compiled.equalityValues !== undefined) condition.equalityValues = compiled.equalityValues;
    conditions.push(condition);
  }
  // A copy of exactly its length (a list grown by push keeps room for 17; a large config keeps thousands of these).
  return problems !== undefined && problems.length > 0 ? { ok: false, problems } : { ok: true, conditions: conditions.slice() };
}

interface Compiled {
  test: (value: unknown) => boolean;
  equalityValues?: Scalar[];
}

/**
 * The compiled form of a one-operator table with a string argument seen
 * before (`{ suffix = "@example.com" }`, `{ not = "inactive" }`: the filters
 * thousands of per-tenant rules repeat), found without building its spec key.
 * The same entry compileCondition caches under that key; undefined otherwise.
 */
const simpleTables = new Map<string, Map<string, Compiled>>();

function knownTable(spec: unknown): Compiled | undefined {
  if (!isPlainObject(spec)) return undefined;
  const ops = Object.keys(spec);
  if (ops.length !== 1) return undefined;
  const op = ops[0] as string;
  const arg = spec[op];
  return typeof arg === 'string' ? simpleTables.get(op)?.get(arg) : undefined;
}

function compileCondition(spec: unknown, at: string, problems: string[]): Compiled | null {
  if (isScalar(spec)) return equality(spec);
  if (Array.isArray(spec)) {
    if (spec.length === 0) {
      problems.push(`${at}: an "any of" list must not be empty`);
      return null;
    }
    if (!spec.every(isScalar)) {
      problems.push(`${at}: an "any of" list may hold only strings, numbers, booleans or null`);
      return null;
    }
    const set = new Set<Scalar>(spec);
    return { test: anyElement((v) => isScalar(v) && set.has(v)), equalityValues: [...set] };
  }
  if (!isPlainObject(spec)) {
    problems.push(`${at}: must be a value, a list, or a table with prefix, suffix, exists or not`);
    return null;
  }
  const key = specKey(spec);
  const known = key === undefined ? undefined : compiledTables.get(key);
  if (known !== undefined) return known;
  const compiled = compileTable(spec, at, problems);
  if (compiled !== null && key !== undefined) {
    if (compiledTables.size >= COMPILED_TABLES_LIMIT) {
      compiledTables.clear();
      simpleTables.clear();
    }
    compiledTables.set(key, compiled);
    const ops = Object.keys(spec);
    const arg = spec[ops[0] as string];
    if (ops.length === 1 && typeof arg === 'string') {
      let byArg = simpleTables.get(ops[0] as string);
      if (byArg === undefined) simpleTables.set(ops[0] as string, (byArg = new Map()));
      byArg.set(arg, compiled);
    }
  }
  return compiled;
}

/**
 * A plain equality. Map/Set/=== keep types apart: "1" never equals 1. The
 * matcher's index (a Map: SameValueZero) agrees with === on every scalar but
 * NaN, which === never equals: a NaN condition is left to its test (never
 * true). A list field matches when an element does (indexOf compares with ===).
 */
function equality(spec: Scalar): Compiled {
  const test = (v: unknown): boolean => v === spec || (Array.isArray(v) && v.indexOf(spec) >= 0);
  return Number.isNaN(spec) ? { test } : { test, equalityValues: [spec] };
}

function compileTable(spec: Record<string, unknown>, at: string, problems: string[]): Compiled | null {
  const ops = Object.entries(spec);
  if (ops.length === 0) {
    problems.push(`${at}: an operator table must use prefix, suffix, exists or not`);
    return null;
  }
  const tests: Array<(value: unknown) => boolean> = [];
  for (const [op, arg] of ops) {
    const opAt = `${at}.${op}`;
    if (!OPERATORS.has(op)) {
      problems.push(`${opAt}: unknown operator (use prefix, suffix, exists or not)`);
      continue;
    }
    if (op === 'prefix' || op === 'suffix') {
      const list = typeof arg === 'string' ? [arg] : arg;
      if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string' && s.length > 0)) {
        problems.push(`${opAt}: must be a non-empty string or a list of them`);
        continue;
      }
      const strings = list as string[];
      tests.push(
        anyElement((v) =>
          typeof v === 'string' && strings.some((s) => (op === 'prefix' ? v.startsWith(s) : v.endsWith(s))),
        ),
      );
    } else if (op === 'exists') {
      if (typeof arg !== 'boolean') {
        problems.push(`${opAt}: must be true or false`);
        continue;
      }
      tests.push((v) => isPresent(v) === arg);
    } else {
      if (isPlainObject(arg) && 'not' in arg) {
        problems.push(`${opAt}: "not" cannot be nested; write the condition without the double negation`);
        continue;
      }
      const inner = compileCondition(arg, opAt, problems);
      if (inner !== null) tests.push((v) => !inner.test(v));
    }
  }
  if (tests.length !== ops.length) return null;
  return { test: (v) => tests.every((t) => t(v)) };
}

/**
 * Identifies a spec: two specs with the same key compile to conditions that
 * behave the same. Type-tagged ("1", 1, true and null differ; -0 and 0, which
 * === and Set treat alike, share a key; NaN has its own); lists and tables
 * keep their order (another order only means another key). Undefined for
 * anything a config cannot hold.
 */
function specKey(spec: unknown): string | undefined {
  if (typeof spec === 'string') return JSON.stringify(spec);
  if (typeof spec === 'number') return `#${String(spec)}`;
  if (typeof spec === 'boolean' || spec === null) return String(spec);
  if (typeof spec !== 'object') return undefined;
  const list = Array.isArray(spec);
  let key = list ? '[' : '{';
  for (const [k, v] of Object.entries(spec)) {
    const inner = specKey(v);
    if (inner === undefined) return undefined;
    key += list ? `${inner},` : `${JSON.stringify(k)}:${inner},`;
  }
  return `${key}${list ? ']' : '}'}`;
}

/**
 * Reads a dotted path out of an event; undefined when any step is missing. A
 * step into a list of objects reads that field of each element (a list of
 * the values found): `data.domains.domain` on `{ domains: [{ domain: "a" },
 * { domain: "b" }] }` is `["a", "b"]`, which a condition matches when any
 * element does. A numeric step still indexes the list.
 */
export function readPath(root: unknown, segments: readonly string[]): unknown {
  let cur: unknown = root;
  for (const seg of segments) {
    if (Array.isArray(cur) && !/^(0|[1-9][0-9]*)$/.test(seg)) {
      const found: unknown[] = [];
      for (const el of cur) {
        // Own fields only: `constructor`, `__proto__`, `toString` are not event fields.
        if (el !== null && typeof el === 'object' && !Array.isArray(el) && Object.hasOwn(el, seg)) {
          const v = (el as Record<string, unknown>)[seg];
          if (Array.isArray(v)) found.push(...v);
          else found.push(v);
        }
      }
      if (found.length === 0) return undefined;
      gathered.add(found);
      cur = found;
      continue;
    }
    // Own fields only: `constructor`, `__proto__`, `toString` are not event fields.
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** Lists readPath made by reading a field of each element of a list (not lists the event itself holds). */
const gathered = new WeakSet<unknown[]>();

/**
 * `exists`: present and not null. A field read from each element of a list
 * is present when it is in one of them, not null: `[{ domain: null }]` has no
 * domain. A list the event itself holds is present, empty or not.
 */
function isPresent(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  return !(Array.isArray(v) && gathered.has(v)) || v.some((x) => x !== undefined && x !== null);
}

export function isScalar(v: unknown): v is Scalar {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

function anyElement(test: (v: unknown) => boolean): (v: unknown) => boolean {
  return (v) => (Array.isArray(v) ? v.some(test) : test(v));
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
