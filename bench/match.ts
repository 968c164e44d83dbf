/**
 * `match`: rule matching cost per event as the rule count grows.
 *
 * Configs of 10, 100, 1,000 and 10,000 rules are built through
 * parseRouterConfig (http destinations with url) from the JSON-parsed config,
 * as the Worker receives ROUTER (the JSON.parse is timed apart, for scale),
 * from a realistic mix:
 *   - 5 global rules, the same at every size: everything to an audit sink,
 *     wildcards with an infix `*`, an exclusion, exact names mixed with a
 *     prefix wildcard, and a `where` with suffix / not filters (not indexable);
 *   - per-tenant rules filling the rest, two per tenant, cycling through 5
 *     shapes (so every size from 10 rules up holds every shape, and the sizes
 *     differ only in how many tenants there are): each filters on
 *     `"data.organization_id" = "org_N"` (one shape as an any-of), some with
 *     extra suffix / not conditions, over exact names, wildcards and
 *     exclusions; each tenant has its own http destination.
 * Events come from makeEvent across all 89 catalog types; for types that carry
 * data.organization_id, 75% name a tenant of the config and 25% an unknown org.
 *
 * Baseline (same run, same events): a naive scan that tests every rule in turn
 * with one RegExp per pattern and evaluates its full `where`.
 *
 * Also timed: the config build (parseRouterConfig + new Matcher; target
 * ≤ 10 ms at 10,000 rules, the Workers Free plan's CPU per request), the
 * first event on a fresh Matcher (builds its index) and each later type's
 * first event.
 */
import { EVENT_TYPES, type EventType, type UnknownEvent } from '../src/events/catalog';
import { type Rule, parseRouterConfig } from '../src/config/router-config';
import { parsedConfig, prepareConfig } from '../src/config/load';
import { Matcher, whereMatches } from '../src/routing/matcher';
import { FIXTURES, makeEvent } from '../test/fixtures/events';
import { Progress, type Table, type Target, printTable } from './lib/report';
import type { BenchContext, BenchOutput } from './lib/types';
import { fmt, median, percentile, pct, ratio, spread } from './lib/stats';

const SIZES = [10, 100, 1_000, 10_000] as const;
const GLOBAL_RULES = 5;
const POOL = 4096;

/** Deterministic PRNG (mulberry32) so every run builds the same configs and events. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type RawRule = { name: string; events: string[]; where?: Record<string, unknown>; to: string[] };
type RawDest = { name: string; type: 'http'; url: string };

const GLOBALS: { rule: RawRule; dest: RawDest }[] = [
  { rule: { name: 'audit-everything', events: ['*'], to: ['audit'] }, dest: { name: 'audit', type: 'http', url: 'https://audit.example.com/in' } },
  {
    rule: { name: 'failed-logins', events: ['authentication.*_failed', 'authentication.radar_risk_detected'], to: ['security'] },
    dest: { name: 'security', type: 'http', url: 'https://security.example.com/in' },
  },
  { rule: { name: 'directory-sync', events: ['dsync.*', '!dsync.group.updated'], to: ['crm'] }, dest: { name: 'crm', type: 'http', url: 'https://crm.example.com/in' } },
  {
    rule: { name: 'lifecycle', events: ['user.created', 'user.deleted', 'organization*'], to: ['billing'] },
    dest: { name: 'billing', type: 'http', url: 'https://billing.example.com/in' },
  },
  {
    rule: {
      name: 'staff-or-impersonated',
      events: ['user.*', 'dsync.user.*', '*.deleted', 'session.*'],
      where: { 'data.email': { suffix: ['@example.com', '@example.net'] }, 'data.state': { not: 'inactive' } },
      to: ['internal'],
    },
    dest: { name: 'internal', type: 'http', url: 'https://internal.example.com/in' },
  },
];

/** Tenant rule shapes: [events, extra where conditions]; every one also filters on the tenant's organization_id. */
const TENANT_SHAPES: { events: string[]; extra: (org: string, other: string) => Record<string, unknown> }[] = [
  { events: ['dsync.*'], extra: (org) => ({ 'data.organization_id': org }) },
  { events: ['dsync.user.created', 'dsync.user.updated'], extra: (org) => ({ 'data.organization_id': org, 'data.email': { suffix: '@example.com' } }) },
  { events: ['connection.*', 'organization_domain.*'], extra: (org) => ({ 'data.organization_id': org }) },
  { events: ['*', '!dsync.group.*'], extra: (org) => ({ 'data.organization_id': org, 'data.state': { not: 'inactive' } }) },
  { events: ['session.created', 'organization_membership.*', 'invitation.*'], extra: (org, other) => ({ 'data.organization_id': [org, other] }) },
];

/** The same shapes keyed by an email-domain suffix instead of an equality: nothing to index on. */
const UNINDEXED_SHAPES: typeof TENANT_SHAPES = TENANT_SHAPES.map((s) => ({
  events: s.events,
  extra: (org) => ({ 'data.email': { suffix: `@${org.replace('_', '-')}.example` } }),
}));

function tenantOrg(i: number): string {
  return `org_${String(i).padStart(5, '0')}`;
}

function buildRawConfig(size: number, shapes: typeof TENANT_SHAPES): { raw: unknown; tenants: number } {
  const globals = GLOBALS.slice(0, Math.min(GLOBAL_RULES, size));
  const destinations = new Map<string, RawDest>();
  const rules: RawRule[] = [];
  for (const g of globals) {
    destinations.set(g.dest.name, g.dest);
    rules.push(g.rule);
  }
  const tenantRules = size - rules.length;
  const tenants = Math.max(1, Math.ceil(tenantRules / 2));
  for (let i = 0; i < tenantRules; i++) {
    const t = Math.floor(i / 2);
    const org = tenantOrg(t);
    const shape = shapes[(t * 2 + (i % 2)) % shapes.length] as (typeof TENANT_SHAPES)[number];
    const dest = `tenant-${t}`;
    destinations.set(dest, { name: dest, type: 'http', url: `https://hooks.example.com/tenants/${t}` });
    rules.push({ name: `tenant-${t}-${i % 2}`, events: shape.events, where: shape.extra(org, tenantOrg((t + 1) % tenants)), to: [dest] });
  }
  return { raw: { destinations: [...destinations.values()], rules }, tenants };
}

function buildEvents(tenants: number, seed: number): UnknownEvent[] {
  const random = rng(seed);
  const templates = EVENT_TYPES.map((type) => makeEvent(type) as unknown as UnknownEvent);
  const events: UnknownEvent[] = [];
  for (let i = 0; i < POOL; i++) {
    const type = EVENT_TYPES[i % EVENT_TYPES.length] as EventType;
    const tpl = templates[i % templates.length] as UnknownEvent & { data: Record<string, unknown> };
    const hasOrg = typeof (FIXTURES[type].data as Record<string, unknown>).organization_id === 'string';
    const data: Record<string, unknown> = { ...tpl.data };
    if (hasOrg) data.organization_id = random() < 0.75 ? tenantOrg(Math.floor(random() * tenants)) : `org_unknown_${i}`;
    if (typeof data.email === 'string' && random() < 0.5) {
      const t = Math.floor(random() * tenants);
      data.email = `person${i}@${tenantOrg(t).replace('_', '-')}.example`;
    }
    events.push({ ...tpl, id: `event_bench_${i}`, data } as UnknownEvent);
  }
  // Shuffle so consecutive events differ in type and tenant (no accidental cache-friendly order).
  for (let i = events.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [events[i], events[j]] = [events[j] as UnknownEvent, events[i] as UnknownEvent];
  }
  return events;
}

/** The naive baseline: every rule in turn, one RegExp per pattern, full `where` evaluation. */
class NaiveMatcher {
  private readonly compiled: { rule: Rule; includes: RegExp[]; excludes: RegExp[] }[];
  constructor(rules: readonly Rule[]) {
    const toRe = (p: string) => new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    this.compiled = rules.map((rule) => ({
      rule,
      includes: rule.events.filter((p) => !p.startsWith('!')).map(toRe),
      excludes: rule.events.filter((p) => p.startsWith('!')).map((p) => toRe(p.slice(1))),
    }));
  }
  match(event: UnknownEvent): { rules: Rule[]; destinations: string[] } {
    const rules: Rule[] = [];
    for (const c of this.compiled) {
      const included = c.includes.length === 0 || c.includes.some((re) => re.test(event.event));
      if (!included || c.excludes.some((re) => re.test(event.event))) continue;
      if (!whereMatches(c.rule.where, event)) continue;
      rules.push(c.rule);
    }
    const destinations: string[] = [];
    for (const r of rules) for (const d of r.to) if (!destinations.includes(d)) destinations.push(d);
    return { rules, destinations };
  }
}

type MatchFn = (e: UnknownEvent) => { rules: Rule[]; destinations: string[] };

/** ns per event for `fn` cycling through `events` for about `ms`. */
function nsPerEvent(fn: MatchFn, events: readonly UnknownEvent[], ms: number): { ns: number; checksum: number } {
  let n = 0;
  let checksum = 0;
  const start = performance.now();
  let now = start;
  const deadline = start + ms;
  let i = 0;
  while (now < deadline) {
    for (let k = 0; k < 64; k++) {
      const r = fn(events[i] as UnknownEvent);
      checksum += r.destinations.length;
      i = i + 1 === events.length ? 0 : i + 1;
    }
    n += 64;
    now = performance.now();
  }
  return { ns: ((now - start) * 1e6) / n, checksum };
}

interface SizeFigures {
  rules: number;
  tenants: number;
  /** The config's JSON text, as ROUTER is uploaded (KB). */
  configKB: number;
  /** JSON.parse of the config's JSON text: how the runtime hands ROUTER over (reference, not part of the build). */
  jsonParseMs: number;
  configBuildMs: number;
  /** The first event on a fresh Matcher: builds its index (one pass over the rules) and its type's entry. */
  firstMatchMs: number;
  /** Each later first event of a type on that Matcher (its type entry). */
  coldUsPerType: number;
  oursNs: number;
  naiveNs: number;
  oursRounds: number[];
  naiveRounds: number[];
  avgRulesMatched: number;
  identical: boolean;
}

interface Prepared {
  figures: Omit<SizeFigures, 'oursNs' | 'naiveNs' | 'oursRounds' | 'naiveRounds'>;
  events: UnknownEvent[];
  oursFn: MatchFn;
  naiveFn: MatchFn;
}

function prepare(size: number, shapes: typeof TENANT_SHAPES): Prepared {
  const { raw: built, tenants } = buildRawConfig(size, shapes);
  // The config as the Worker receives it: parsed from JSON (flat strings), not assembled by template literals.
  const text = JSON.stringify(built);
  const j0 = performance.now();
  const raw: unknown = JSON.parse(text);
  const jsonParseMs = performance.now() - j0;
  const t0 = performance.now();
  const parsed = parseRouterConfig(raw, () => undefined);
  const configBuildMs = performance.now() - t0;
  if (!parsed.ok) throw new Error(`match: config of ${size} rules invalid: ${parsed.problems.slice(0, 3).join('; ')}`);
  const rules = parsed.config.rules;
  if (rules.length !== size) throw new Error(`match: built ${rules.length} rules, wanted ${size}`);
  const events = buildEvents(tenants, 0xc0ffee + size);

  // Cold: a fresh Matcher; its first event builds the index, then each type's first event builds that type's entry.
  const cold = new Matcher(rules);
  const firstOfType = EVENT_TYPES.map((t) => events.find((e) => e.event === t) as UnknownEvent);
  const f0 = performance.now();
  cold.match(firstOfType[0] as UnknownEvent);
  const firstMatchMs = performance.now() - f0;
  const c0 = performance.now();
  for (const e of firstOfType.slice(1)) cold.match(e);
  const coldUsPerType = ((performance.now() - c0) * 1000) / (firstOfType.length - 1);

  const ours = parsed.config.matcher;
  const naive = new NaiveMatcher(rules);
  // Same answers on every event (this also warms both before timing).
  let identical = true;
  let matched = 0;
  for (const e of events) {
    const x = ours.match(e);
    const y = naive.match(e);
    matched += x.rules.length;
    if (x.rules.map((r) => r.name).join(',') !== y.rules.map((r) => r.name).join(',') || x.destinations.join(',') !== y.destinations.join(',')) identical = false;
  }
  return {
    figures: { rules: size, tenants, configKB: new TextEncoder().encode(text).length / 1024, jsonParseMs, configBuildMs, firstMatchMs, coldUsPerType, avgRulesMatched: matched / events.length, identical },
    events,
    oursFn: (e) => ours.match(e),
    naiveFn: (e) => naive.match(e),
  };
}

/**
 * Every size is prepared first, then measured in interleaved rounds (each
 * round times every size, in rotating order), so drift in the machine's load
 * spreads over all sizes instead of landing on one.
 */
/**
 * The growth ratio measured pairwise: short slices of the largest and the
 * smallest config back to back (alternating which goes first), one ratio per
 * pair, median over the pairs. Each ratio compares two measurements taken
 * within tens of milliseconds of each other, so the machine's drift over
 * seconds (which moves a whole round) cancels out of it.
 */
export interface PairedRatio {
  pairs: number;
  sliceMs: number;
  median: number;
  p25: number;
  p75: number;
}

function pairedRatio(small: Prepared, large: Prepared, pairs: number, sliceMs: number): PairedRatio {
  const ratios: number[] = [];
  for (let k = 0; k < pairs; k++) {
    const first = k % 2 === 0 ? small : large;
    const second = first === small ? large : small;
    const a = nsPerEvent(first.oursFn, first.events, sliceMs).ns;
    const b = nsPerEvent(second.oursFn, second.events, sliceMs).ns;
    ratios.push(first === large ? a / b : b / a);
  }
  return { pairs, sliceMs, median: median(ratios), p25: percentile(ratios, 25), p75: percentile(ratios, 75) };
}

function measureSizes(shapes: typeof TENANT_SHAPES, rounds: number, sliceMs: number, label: string, pairs = 0): { sizes: SizeFigures[]; paired: PairedRatio | undefined } {
  const prepared = SIZES.map((size) => prepare(size, shapes));
  for (const p of prepared) {
    nsPerEvent(p.oursFn, p.events, sliceMs / 2);
    nsPerEvent(p.naiveFn, p.events, sliceMs / 2);
  }
  const ours = prepared.map(() => [] as number[]);
  const naive = prepared.map(() => [] as number[]);
  const progress = new Progress(label, rounds);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < prepared.length; k++) {
      const i = (k + r) % prepared.length;
      const p = prepared[i] as Prepared;
      if (r % 2 === 0) {
        ours[i]?.push(nsPerEvent(p.oursFn, p.events, sliceMs).ns);
        naive[i]?.push(nsPerEvent(p.naiveFn, p.events, sliceMs).ns);
      } else {
        naive[i]?.push(nsPerEvent(p.naiveFn, p.events, sliceMs).ns);
        ours[i]?.push(nsPerEvent(p.oursFn, p.events, sliceMs).ns);
      }
    }
    progress.update(r + 1);
  }
  progress.done();
  const paired = pairs > 0 ? pairedRatio(prepared[0] as Prepared, prepared[prepared.length - 1] as Prepared, pairs, sliceMs / 4) : undefined;
  const sizes = prepared.map((p, i) => ({
    ...p.figures,
    oursNs: median(ours[i] ?? []),
    naiveNs: median(naive[i] ?? []),
    oursRounds: ours[i] ?? [],
    naiveRounds: naive[i] ?? [],
  }));
  return { sizes, paired };
}

/**
 * Diagnostic: one 10,000-rule matcher, events identical in type mix and match
 * rate, spread over 3 … all tenants. The work per event is the same; only the
 * amount of rule data the events touch (and so the CPU cache hit rate) changes.
 */
function measureLocality(rounds: number, sliceMs: number): { hotTenants: number; ns: number; rounds: number[] }[] {
  const { raw, tenants } = buildRawConfig(10_000, TENANT_SHAPES);
  const parsed = parseRouterConfig(JSON.parse(JSON.stringify(raw)), () => undefined);
  if (!parsed.ok) throw new Error('match: locality config invalid');
  const matcher = parsed.config.matcher;
  const fn: MatchFn = (e) => matcher.match(e);
  const pools = [3, 30, 300, tenants].map((hot) => ({ hot, events: buildEvents(hot, 0xbeef) }));
  for (const p of pools) nsPerEvent(fn, p.events, sliceMs / 4);
  const samples = pools.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) pools.forEach((p, k) => samples[k]?.push(nsPerEvent(fn, p.events, sliceMs).ns));
  return pools.map((p, k) => ({ hotTenants: p.hot, ns: median(samples[k] ?? []), rounds: samples[k] ?? [] }));
}

/** Cloudflare's limits page lists 5 KB per environment variable; ROUTER is one. */
const VAR_LIMIT_BYTES = 5 * 1024;

/**
 * The largest config of the realistic mix whose JSON fits in `bytes`, and
 * its build: run first in the process, while the build code is still cold,
 * as in an isolate's first request.
 */
function largestFitting(bytes: number): { rules: number; kb: number; buildMs: number } {
  const size = (n: number) => new TextEncoder().encode(JSON.stringify(buildRawConfig(n, TENANT_SHAPES).raw)).length;
  let n = 1;
  while (n < 1_000 && size(n + 1) <= bytes) n++;
  const raw: unknown = JSON.parse(JSON.stringify(buildRawConfig(n, TENANT_SHAPES).raw));
  const t0 = performance.now();
  const parsed = parseRouterConfig(raw, () => undefined);
  const buildMs = performance.now() - t0;
  if (!parsed.ok) throw new Error(`match: ${n}-rule config invalid`);
  return { rules: n, kb: size(n) / 1024, buildMs };
}

/**
 * A 10,000-rule config as the Worker meets it from router.json: built at the
 * isolate's startup by the Worker's own `prepareConfig` (validation, then the
 * matcher's index and entry for every catalog type), then the config step
 * of the first request (`parsedConfig` on a request's env holding the same
 * config: what the request pays). Run early in the process, code still cold.
 */
function startupBuild(size: number, cycles: number): { rules: number; startupMs: number; requestUs: number; laterUs: number; reused: boolean; cycleStartupMs: number[]; cycleRequestUs: number[] } {
  const text = JSON.stringify(buildRawConfig(size, TENANT_SHAPES).raw);
  const cycleStartupMs: number[] = [];
  const cycleRequestUs: number[] = [];
  let rules = 0;
  let laterUs = 0;
  let reused = true;
  // The first cycle runs while the code is cold (an isolate's startup); the others show the spread (a garbage
  // collection of the build's garbage may land in the first request's step).
  for (let c = 0; c < cycles; c++) {
    const raw: unknown = JSON.parse(text);
    const envOf = () => ({ ROUTER: raw }) as unknown as Env;
    const t0 = performance.now();
    prepareConfig(envOf());
    cycleStartupMs.push(performance.now() - t0);
    const first = envOf();
    const r0 = performance.now();
    const result = parsedConfig(first);
    cycleRequestUs.push((performance.now() - r0) * 1000);
    if (!result.ok) throw new Error(`match: ${size}-rule config invalid at startup`);
    rules = result.config.rules.length;
    const second = envOf();
    const l0 = performance.now();
    const again = parsedConfig(second);
    laterUs = (performance.now() - l0) * 1000;
    reused &&= again === result;
  }
  return { rules, startupMs: cycleStartupMs[0] as number, requestUs: cycleRequestUs[0] as number, laterUs, reused, cycleStartupMs, cycleRequestUs };
}

/** The platform's limit on a Worker's startup (its global scope), per Cloudflare's limits page. */
const STARTUP_LIMIT_MS = 1000;

export async function runMatch(ctx: BenchContext): Promise<BenchOutput> {
  const rounds = ctx.quick ? 3 : 7;
  const sliceMs = ctx.quick ? 100 : 200;
  const fits = largestFitting(VAR_LIMIT_BYTES);
  const startup = startupBuild(10_000, ctx.quick ? 3 : 6);
  const measured = measureSizes(TENANT_SHAPES, rounds, sliceMs, 'realistic mix', ctx.quick ? 20 : 80);
  const main = measured.sizes;
  const paired = measured.paired as PairedRatio;
  const unindexed = measureSizes(UNINDEXED_SHAPES, Math.max(3, rounds - 2), sliceMs, 'unindexable tenant filters').sizes;
  const p3 = new Progress('locality diagnostic', 1);
  const locality = measureLocality(rounds, sliceMs * 0.75);
  p3.done();

  const base = main[0] as SizeFigures;
  const table: Table = {
    title: 'Realistic mix: ns per event (median of rounds), ours vs naive scan',
    columns: [
      'rules',
      'tenants',
      'rules matched/event',
      'ours ns/event',
      'ours vs 10 rules',
      'naive ns/event',
      'naive vs 10 rules',
      'ours speed-up',
      'ours spread',
      'same results',
      'config KB',
      'config build ms',
      'JSON.parse ms',
      'first match ms',
      'cold µs/type',
    ],
    rows: main.map((f) => [
      fmt(f.rules),
      fmt(f.tenants),
      f.avgRulesMatched.toFixed(2),
      fmt(f.oursNs),
      ratio(f.oursNs / base.oursNs),
      fmt(f.naiveNs),
      ratio(f.naiveNs / base.naiveNs),
      ratio(f.naiveNs / f.oursNs, 1),
      pct(spread(f.oursRounds)),
      f.identical ? 'yes' : 'NO',
      f.configKB.toFixed(1),
      f.configBuildMs.toFixed(1),
      f.jsonParseMs.toFixed(1),
      f.firstMatchMs.toFixed(1),
      f.coldUsPerType.toFixed(1),
    ]),
    note:
      '"vs 10 rules" = ns/event at that size ÷ ns/event at 10 rules (same run). "speed-up" = naive ns ÷ ours ns. "config KB" = the config\'s JSON text, as ROUTER is uploaded (Cloudflare lists 5 KB per environment variable). "config build ms" = parseRouterConfig + new Matcher on the JSON-parsed config (wall time, once per isolate, the first build at that size in this process). "JSON.parse ms" = parsing the same config from its JSON text, for reference (the runtime does it to hand ROUTER over; not part of the build). "first match ms" = the first event on a fresh Matcher (builds its index: one pass over the rules). "cold µs/type" = each later first event of a type on that Matcher (builds the type\'s entry; later events of the type reuse it).',
  };
  printTable(table);
  const ubase = unindexed[0] as SizeFigures;
  const table2: Table = {
    title: 'Stress case: tenant rules filtered by an email-domain suffix instead of an organization_id equality (nothing to index)',
    columns: ['rules', 'ours ns/event', 'ours vs 10 rules', 'naive ns/event', 'ours speed-up', 'same results'],
    rows: unindexed.map((f) => [fmt(f.rules), fmt(f.oursNs), ratio(f.oursNs / ubase.oursNs), fmt(f.naiveNs), ratio(f.naiveNs / f.oursNs, 1), f.identical ? 'yes' : 'NO']),
    note: 'Not the target\'s workload: it shows where the matcher\'s per-event cost stops being independent of the rule count.',
  };
  printTable(table2);

  const table3: Table = {
    title: 'Diagnostic: the same 10,000-rule matcher, events spread over fewer or more tenants',
    columns: ['tenants the events touch', 'ours ns/event', 'vs 3 tenants', 'vs 10-rule config'],
    rows: locality.map((l) => [fmt(l.hotTenants), fmt(l.ns), ratio(l.ns / (locality[0]?.ns ?? Number.NaN)), ratio(l.ns / base.oursNs)]),
    note: 'Same matcher, same type mix, same match rate and the same operations per event: only the amount of distinct rule data the events touch changes, and with it how often that data is still in the CPU caches.',
  };
  printTable(table3);

  const top = main[main.length - 1] as SizeFigures;
  const growth = top.oursNs / base.oursNs;
  const GROWTH_TARGET = 1.3;
  const BUILD_TARGET_MS = 10;
  const identical = main.every((f) => f.identical) && unindexed.every((f) => f.identical);
  const buildMet = top.configBuildMs <= BUILD_TARGET_MS;
  const targets: Target[] = [
    {
      what: `ours: ns/event at 10,000 rules ÷ at 10 rules, paired (median of ${paired.pairs} back-to-back pairs)`,
      target: `≤ ${GROWTH_TARGET}×`,
      measured: `${ratio(paired.median)} (IQR ${ratio(paired.p25)}–${ratio(paired.p75)})`,
      met: paired.median <= GROWTH_TARGET,
    },
    { what: 'ours: the same ratio from the table (median of each size over its rounds)', target: `≤ ${GROWTH_TARGET}×`, measured: ratio(growth), met: growth <= GROWTH_TARGET },
    { what: 'ours and naive give identical results on every event', target: 'yes', measured: identical ? 'yes' : 'no', met: identical },
    {
      what: 'config work paid by the first request at 10,000 rules (router.json; built at the isolate\'s startup)',
      target: `≤ ${BUILD_TARGET_MS} ms`,
      measured: `${fmt(Math.max(...startup.cycleRequestUs), 1)} µs (worst of ${startup.cycleRequestUs.length})`,
      met: startup.reused && Math.max(...startup.cycleRequestUs) / 1000 <= BUILD_TARGET_MS,
    },
    {
      what: 'that startup build at 10,000 rules (validation, index, every catalog type), cold',
      target: `≤ ${fmt(STARTUP_LIMIT_MS)} ms (startup limit)`,
      measured: `${startup.startupMs.toFixed(1)} ms`,
      met: startup.startupMs <= STARTUP_LIMIT_MS,
    },
    {
      what: `config build at the largest ROUTER a 5 KB variable holds (${fits.rules} rules of this mix), cold`,
      target: `≤ ${BUILD_TARGET_MS} ms`,
      measured: `${fits.buildMs.toFixed(1)} ms`,
      met: fits.buildMs <= BUILD_TARGET_MS,
    },
  ];
  const utop = unindexed[unindexed.length - 1] as SizeFigures;
  const hot3 = locality[0] as { ns: number };
  const hotAll = locality[locality.length - 1] as { ns: number };
  const monotonic = locality.every((l, i) => i === 0 || l.ns >= (locality[i - 1] as { ns: number }).ns);
  const minMatched = Math.min(...main.map((f) => f.avgRulesMatched));
  const maxMatched = Math.max(...main.map((f) => f.avgRulesMatched));
  const findings: string[] = [
    `Realistic mix: ours costs ${fmt(base.oursNs)} ns/event at 10 rules and ${fmt(top.oursNs)} ns/event at 10,000 (${ratio(growth)}, target ≤ ${GROWTH_TARGET}×: ${growth <= GROWTH_TARGET ? 'met' : 'missed'}); the naive scan goes from ${fmt(base.naiveNs)} to ${fmt(top.naiveNs)} ns/event (${ratio(top.naiveNs / base.naiveNs, 0)}), so at 10,000 rules ours is ${ratio(top.naiveNs / top.oursNs, 0)} faster than the naive scan. The two ${identical ? 'returned the same rules and destinations on every event' : 'DISAGREED on some events'}.`,
    `Paired measurement of the same ratio: ${paired.pairs} pairs of ${paired.sliceMs} ms slices, the 10,000-rule and the 10-rule matcher back to back (alternating which goes first), one ratio per pair: median ${ratio(paired.median)}, interquartile range ${ratio(paired.p25)}–${ratio(paired.p75)} (target ≤ ${GROWTH_TARGET}×: ${paired.median <= GROWTH_TARGET ? 'met' : 'missed'}). The table's ratio divides two medians each taken over rounds seconds apart, so the machine's drift between those seconds lands in it (per-round ns of one config vary by the spread column); a pair's two slices are tens of milliseconds apart and share the machine's state, so the paired median is the steadier estimate of the same quantity. Both are reported.`,
    `Why the work per event does not grow: which rules a type name selects is computed once per distinct type and cached (one test per distinct pattern list, not per rule); rules whose \`where\` has an equality / any-of are indexed by (path, value) in one index shared by every type and keyed by the value itself, so the lookup is the equality test and an event evaluates only the remaining conditions of its own organization_id's rules, plus the type's unindexed rules. Rules matched per event stay between ${minMatched.toFixed(2)} and ${maxMatched.toFixed(2)} at every size.`,
    `What growth remains is memory traffic, not work (diagnostic table, measured in its own rounds after the main table, so compare its rows with each other): on the same 10,000-rule matcher, with the same operations per event, events spread over all ${fmt(top.tenants)} tenants cost ${ratio(hotAll.ns / hot3.ns)} what events touching only 3 tenants cost (${fmt(hotAll.ns)} vs ${fmt(hot3.ns)} ns). With thousands of tenants, the hash slot, the index bucket (its packed key and rule records) and the matched rules an event reads are less often still in the CPU caches.${monotonic ? '' : ' (The rows do not rise steadily in this run: the machine\'s noise is of the same size as the effect.)'} ${growth <= GROWTH_TARGET ? `The ${GROWTH_TARGET}× target holds in this run (${ratio(growth)}); the ratio moves from run to run on this shared machine (see the spread column).` : `The 10,000-rule figure misses ${GROWTH_TARGET}× in this run (${ratio(growth)}): that growth, plus this shared machine's noise, which moves the ratio from run to run (see the spread column).`}`,
    `Built at startup, not in a request: the Worker builds its config in its global scope (src/index.ts calls prepareConfig with the env imported from cloudflare:workers), where Cloudflare's limits page sets a limit of its own, "Worker startup time: 1 second"; a request's env holding the same config (the same router.json object, or ROUTER's same text) and the same secrets and bindings reuses that build. At 10,000 rules the startup build (validation, then the matcher's index and the entry of every one of the ${fmt(EVENT_TYPES.length)} catalog types) took ${startup.startupMs.toFixed(1)} ms cold, first in the process (${startup.cycleStartupMs.slice(1).map((v) => v.toFixed(0)).join(', ')} ms in ${startup.cycleStartupMs.length - 1} more cycles; limit ${fmt(STARTUP_LIMIT_MS)} ms), and the first request's config step after it ${startup.cycleRequestUs.map((v) => fmt(v, 1)).join(', ')} µs in the ${startup.cycleRequestUs.length} cycles (target ≤ ${BUILD_TARGET_MS} ms, worst case: ${startup.reused && Math.max(...startup.cycleRequestUs) / 1000 <= BUILD_TARGET_MS ? 'met' : 'missed'}; a later request's ${fmt(startup.laterUs, 1)} µs${startup.reused ? '' : '; the startup build was NOT reused'}): what is left for a request is comparing the config and the secrets and bindings it names; a figure in milliseconds there is a garbage collection of the build's garbage that landed in it, which the first request may meet in workerd as well. An event type outside the catalog still builds its entry on first sight (the cold µs/type column). Whether startup CPU also counts toward the first request's limit, Cloudflare's pages do not say; if it did, a config this large would want the Paid plan's CPU limit.`,
    `Config build without that (parseRouterConfig + new Matcher in a request, as before): ${top.configBuildMs.toFixed(1)} ms at 10,000 rules (and ${fmt(top.tenants)} destinations) vs ${base.configBuildMs.toFixed(1)} ms at 10 (over ${BUILD_TARGET_MS} ms at 10,000: ${buildMet ? 'no' : 'yes'}). It is all parseRouterConfig: every destination (a plain https URL is recognised by one pattern; any other URL goes through the URL parser) and every rule (name and duplicates; each distinct event pattern checked against the catalog once, not once per rule; destinations; \`where\` compiled: one test function per equality, one shared segments list per path, one shared test per repeated operator table; stale) are validated up front, so every problem is still reported at once, as \`npm run check\` reports it. new Matcher only keeps the rules. For scale, JSON.parse of the same config text takes ${top.jsonParseMs.toFixed(1)} ms on this machine (the build is ${ratio(top.configBuildMs / top.jsonParseMs, 1)} that).${buildMet ? '' : ` Why it misses: validating up front is one pass over 10,000 rules and ${fmt(top.tenants)} destinations in code that has barely run yet (an isolate's first request), on a shared 2-core machine where merely parsing the config's JSON costs ${top.jsonParseMs.toFixed(1)} ms; a config this large wants the Paid plan's CPU limit.`}`,
    `How large a config can be deployed: Cloudflare's limits page lists 5 KB per environment variable (developers.cloudflare.com/workers/platform/limits, "Environment variable size"), and ROUTER is one, uploaded as JSON: ${fmt(main[0]?.rules ?? 10)} rules of this mix take ${(main[0]?.configKB ?? 0).toFixed(1)} KB, 10,000 take ${(top.configKB / 1024).toFixed(1)} MB. The largest that fits 5 KB has ${fits.rules} rules (${fits.kb.toFixed(1)} KB) and builds in ${fits.buildMs.toFixed(1)} ms, measured first in the process while the code is cold, as in an isolate's first request (target ≤ ${BUILD_TARGET_MS} ms: ${fits.buildMs <= BUILD_TARGET_MS ? 'met' : 'missed'}). So every config Cloudflare accepts as a variable fits the Free plan's CPU even when built in a request. A larger one goes in router.json, bundled with the Worker (the Worker size limit applies: 3 MB compressed on Free; the 10,000-rule config compresses far below it, see test/e2e/router-file-e2e.test.ts), and \`npm run check\` warns when ROUTER passes 5 KB.`,
    `Lazy work, after the build: the first event on a fresh Matcher builds its index in one pass over the rules (${top.firstMatchMs.toFixed(1)} ms at 10,000 rules vs ${base.firstMatchMs.toFixed(2)} ms at 10${top.firstMatchMs > BUILD_TARGET_MS ? `: also more than ${BUILD_TARGET_MS} ms, paid by the first request of the isolate that matches an event or lists a type\'s rules: a queue batch or a reconciliation run` : ''}); after that, the first event of each other type costs ${fmt(top.coldUsPerType, 1)} µs at 10,000 rules (testing each distinct pattern list once and listing the type's unindexed rules) vs ${fmt(base.coldUsPerType, 1)} µs at 10.`,
    `Where the design stops being flat (stress table): rules whose \`where\` has no equality / any-of condition (here a suffix filter per tenant) cannot be indexed and are evaluated for every event of their types, so the cost grows linearly again: ${fmt(ubase.oursNs)} → ${fmt(utop.oursNs)} ns/event from 10 to 10,000 rules (${ratio(utop.oursNs / ubase.oursNs, 0)}), still ${ratio(utop.naiveNs / utop.oursNs, 1)} faster than the naive scan because the type filtering is cached. Per-tenant rules should filter on an equality (organization_id, directory_id, …).`,
  ];
  return { tables: [table, table3, table2], targets, findings, raw: { main, paired, locality, unindexed, fits, startup, pool: POOL, globalRules: GLOBAL_RULES } };
}
