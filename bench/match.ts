/**
 * `match`: rule matching cost per event as the rule count grows.
 *
 * Configs of 10, 100, 1,000 and 10,000 rules are built through
 * parseRouterConfig (http destinations with url), from a realistic mix:
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
 */
import { EVENT_TYPES, type EventType, type UnknownEvent } from '../src/events/catalog';
import { type Rule, parseRouterConfig } from '../src/config/router-config';
import { Matcher, whereMatches } from '../src/routing/matcher';
import { FIXTURES, makeEvent } from '../test/fixtures/events';
import { Progress, type Table, type Target, printTable } from './lib/report';
import type { BenchContext, BenchOutput } from './lib/types';
import { fmt, median, pct, ratio, spread } from './lib/stats';

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
  configBuildMs: number;
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
  const { raw, tenants } = buildRawConfig(size, shapes);
  const t0 = performance.now();
  const parsed = parseRouterConfig(raw, () => undefined);
  const configBuildMs = performance.now() - t0;
  if (!parsed.ok) throw new Error(`match: config of ${size} rules invalid: ${parsed.problems.slice(0, 3).join('; ')}`);
  const rules = parsed.config.rules;
  if (rules.length !== size) throw new Error(`match: built ${rules.length} rules, wanted ${size}`);
  const events = buildEvents(tenants, 0xc0ffee + size);

  // Cold: a fresh Matcher seeing each type for the first time (builds its per-type cache).
  const cold = new Matcher(rules);
  const firstOfType = EVENT_TYPES.map((t) => events.find((e) => e.event === t) as UnknownEvent);
  const c0 = performance.now();
  for (const e of firstOfType) cold.match(e);
  const coldUsPerType = ((performance.now() - c0) * 1000) / firstOfType.length;

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
    figures: { rules: size, tenants, configBuildMs, coldUsPerType, avgRulesMatched: matched / events.length, identical },
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
function measureSizes(shapes: typeof TENANT_SHAPES, rounds: number, sliceMs: number, label: string): SizeFigures[] {
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
  return prepared.map((p, i) => ({
    ...p.figures,
    oursNs: median(ours[i] ?? []),
    naiveNs: median(naive[i] ?? []),
    oursRounds: ours[i] ?? [],
    naiveRounds: naive[i] ?? [],
  }));
}

/**
 * Diagnostic: one 10,000-rule matcher, events identical in type mix and match
 * rate, spread over 3 … all tenants. The work per event is the same; only the
 * amount of rule data the events touch (and so the CPU cache hit rate) changes.
 */
function measureLocality(rounds: number, sliceMs: number): { hotTenants: number; ns: number; rounds: number[] }[] {
  const { raw, tenants } = buildRawConfig(10_000, TENANT_SHAPES);
  const parsed = parseRouterConfig(raw, () => undefined);
  if (!parsed.ok) throw new Error('match: locality config invalid');
  const matcher = parsed.config.matcher;
  const fn: MatchFn = (e) => matcher.match(e);
  const pools = [3, 30, 300, tenants].map((hot) => ({ hot, events: buildEvents(hot, 0xbeef) }));
  for (const p of pools) nsPerEvent(fn, p.events, sliceMs / 4);
  const samples = pools.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) pools.forEach((p, k) => samples[k]?.push(nsPerEvent(fn, p.events, sliceMs).ns));
  return pools.map((p, k) => ({ hotTenants: p.hot, ns: median(samples[k] ?? []), rounds: samples[k] ?? [] }));
}

export async function runMatch(ctx: BenchContext): Promise<BenchOutput> {
  const rounds = ctx.quick ? 3 : 7;
  const sliceMs = ctx.quick ? 100 : 200;
  const main = measureSizes(TENANT_SHAPES, rounds, sliceMs, 'realistic mix');
  const unindexed = measureSizes(UNINDEXED_SHAPES, Math.max(3, rounds - 2), sliceMs, 'unindexable tenant filters');
  const p3 = new Progress('locality diagnostic', 1);
  const locality = measureLocality(rounds, sliceMs * 0.75);
  p3.done();

  const base = main[0] as SizeFigures;
  const table: Table = {
    title: 'Realistic mix: ns per event (median of rounds), ours vs naive scan',
    columns: ['rules', 'tenants', 'rules matched/event', 'ours ns/event', 'ours vs 10 rules', 'naive ns/event', 'naive vs 10 rules', 'ours speed-up', 'ours spread', 'same results', 'config build ms', 'cold µs/type'],
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
      f.configBuildMs.toFixed(1),
      f.coldUsPerType.toFixed(1),
    ]),
    note:
      '"vs 10 rules" = ns/event at that size ÷ ns/event at 10 rules (same run). "speed-up" = naive ns ÷ ours ns. "config build ms" = parseRouterConfig + new Matcher, paid once per isolate. "cold µs/type" = first event of each type on a fresh Matcher (builds its per-type cache; later events of that type reuse it).',
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
  const targets: Target[] = [
    { what: 'ours: ns/event at 10,000 rules ÷ at 10 rules', target: '≤ 1.5×', measured: ratio(growth), met: growth <= 1.5 },
    { what: 'ours and naive give identical results on every event', target: 'yes', measured: main.every((f) => f.identical) && unindexed.every((f) => f.identical) ? 'yes' : 'no', met: main.every((f) => f.identical) && unindexed.every((f) => f.identical) },
  ];
  const utop = unindexed[unindexed.length - 1] as SizeFigures;
  const hot3 = locality[0] as { ns: number };
  const hotAll = locality[locality.length - 1] as { ns: number };
  const findings: string[] = [
    `Realistic mix: ours costs ${fmt(base.oursNs)} ns/event at 10 rules and ${fmt(top.oursNs)} ns/event at 10,000 (${ratio(growth)}, target ≤ 1.5×: ${growth <= 1.5 ? 'met' : 'missed'}); the naive scan goes from ${fmt(base.naiveNs)} to ${fmt(top.naiveNs)} ns/event (${ratio(top.naiveNs / base.naiveNs, 0)}), so at 10,000 rules ours is ${ratio(top.naiveNs / top.oursNs, 0)} faster than the naive scan. The two always return the same rules and destinations.`,
    'Why the work per event does not grow: the rules a type name selects are computed once per distinct type and cached (exact names from a map; wildcard and exclusion rules scanned only on the first sight of a type); within a type, rules whose `where` has an equality / any-of are indexed by (path, value), so an event evaluates only the rules of its own organization_id plus the unindexed global rules. Rules matched per event stay at ~1.6 at every size.',
    `What grows is not work but memory traffic (diagnostic table): on the same 10,000-rule matcher, with the same operations per event, events that touch only 3 tenants cost ${fmt(hot3.ns)} ns (${ratio(hot3.ns / base.oursNs)} the 10-rule figure) and events spread over all ${fmt(top.tenants)} tenants ${fmt(hotAll.ns)} ns (${ratio(hotAll.ns / hot3.ns)} more). With thousands of tenants each event reads rule objects, \`where\` closures and index buckets that are no longer in the CPU caches; the smaller remainder at 3 tenants is most likely the larger tables and heap themselves (per-type indexes of ~5,000 keys instead of 3; not isolated further here). ${growth > 1.5 ? `That is why the 10,000-rule figure misses 1.5× (${ratio(growth)} in this run; the ratio is near the line and moves from run to run on this shared machine, see the spread column): it is cache misses on a working set that grows with the number of distinct tenants in the traffic, not a scan.` : `The 1.5× target holds in this run (${ratio(growth)}), near the line: the ratio moves from run to run on this shared machine (see the spread column).`} To lower it (not applied: src/ is not the benchmark's to change), make the per-event path touch less memory: key the (path, value) index by the scalar itself instead of building a \`typeof:value\` string per lookup (a Map already tells 1 from "1", and the equality test could reuse the lookup instead of recomputing the key), and keep each bucket's remaining conditions inline with the rule reference.`,
    `One-time costs that do grow with the rule count: building the config (parseRouterConfig + Matcher) takes ${top.configBuildMs.toFixed(0)} ms at 10,000 rules vs ${base.configBuildMs.toFixed(1)} ms at 10, paid once per isolate on its first request and counted against that request\'s CPU time${top.configBuildMs > 10 ? ' (more than the Workers Free plan\'s 10 ms CPU limit per request)' : ''}; the first event of each type on a fresh Matcher costs ${fmt(top.coldUsPerType)} µs at 10,000 rules (a scan of every wildcard / exclusion rule) vs ${top.coldUsPerType > 0 ? base.coldUsPerType.toFixed(0) : '0'} µs at 10, i.e. up to ${fmt((top.coldUsPerType * 89) / 1000)} ms spread over the first events of an isolate.`,
    `Where the design stops being flat (stress table): rules whose \`where\` has no equality / any-of condition (here a suffix filter per tenant) cannot be indexed and are evaluated for every event of their types, so the cost grows linearly again: ${fmt(ubase.oursNs)} → ${fmt(utop.oursNs)} ns/event from 10 to 10,000 rules (${ratio(utop.oursNs / ubase.oursNs, 0)}), still ${ratio(utop.naiveNs / utop.oursNs, 1)} faster than the naive scan because the type filtering is cached. Worth a line in the README: per-tenant rules should filter on an equality (organization_id, directory_id, …).`,
  ];
  return { tables: [table, table3, table2], targets, findings, raw: { main, locality, unindexed, pool: POOL, globalRules: GLOBAL_RULES } };
}
