import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type UnknownEvent } from '../../src/events/catalog';
import { Matcher, type MatcherRule, globToRegExp, whereMatches } from '../../src/routing/matcher';
import { parseRouterConfig } from '../../src/config/router-config';
import { type CompiledCondition, compileWhere } from '../../src/routing/where';
import { type RuleSpec as RuleSpec_, configMatcher, directMatcher } from '../helpers/rules';

// ---------------------------------------------------------------------------
// Helpers

function ev(type: string, data: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): UnknownEvent {
  return { id: 'event_TEST', event: type, created_at: '2026-11-20T10:00:00.000Z', data, ...extra } as UnknownEvent;
}

type RuleSpec = RuleSpec_<unknown>;

function compile(where: Record<string, unknown> | undefined): CompiledCondition[] {
  if (where === undefined) return [];
  const w = compileWhere(where, 'where');
  if (!w.ok) throw new Error(w.problems.join('\n'));
  return w.conditions;
}

const names = (rules: readonly { name: string }[]) => rules.map((r) => r.name);

/**
 * Does `where` select `event`? Asked three ways that must agree: through the
 * matcher (which indexes equality conditions), through a config-built matcher,
 * and by evaluating every condition directly.
 */
function whereHit(where: Record<string, unknown>, event: UnknownEvent): boolean {
  const spec = { name: 'r', events: ['*'], where, to: ['d'] };
  const viaDirect = directMatcher([spec]).match(event).rules.length === 1;
  const viaConfig = configMatcher([spec]).match(event).rules.length === 1;
  const viaEval = whereMatches(compile(where), event);
  expect({ viaDirect, viaConfig }).toEqual({ viaDirect: viaEval, viaConfig: viaEval });
  return viaEval;
}

const d = (data: Record<string, unknown>) => ev('user.created', data);
const MISSING = Symbol('missing');
/** An event whose data.x is `value` (absent when MISSING). */
const withX = (value: unknown) => d(value === MISSING ? {} : { x: value });

// ---------------------------------------------------------------------------

describe('event-name patterns', () => {
  const CASES: Array<[string[], string, boolean]> = [
    // `*` spans dots
    [['dsync.*'], 'dsync.group.user_added', true],
    [['dsync.*'], 'dsync.activated', true],
    [['dsync.*'], 'dsync.user.created', true],
    [['dsync.*'], 'dsync', false],
    [['dsync.*'], 'xdsync.activated', false],
    [['dsync.*'], 'user.created', false],
    [['dsync.*'], 'dsyncXactivated', false],
    [['authentication.*_failed'], 'authentication.sso_failed', true],
    [['authentication.*_failed'], 'authentication.email_verification_failed', true],
    [['authentication.*_failed'], 'authentication.sso_succeeded', false],
    [['authentication.*_failed'], 'authentication.radar_risk_detected', false],
    [['authentication.*_failed'], 'organization_domain.verification_failed', false],
    [['*'], 'user.created', true],
    [['*'], 'dsync.group.user_added', true],
    [['*'], 'acme.widget.exploded', true],
    [['*.created'], 'user.created', true],
    [['*.created'], 'dsync.group.created', true],
    [['*.created'], 'organization_membership.created', true],
    [['*.created'], 'user.updated', false],
    [['*.created'], 'user.created_at', false],
    [['dsync.*.created'], 'dsync.user.created', true],
    [['dsync.*.created'], 'dsync.group.created', true],
    [['dsync.*.created'], 'dsync.user.deleted', false],
    [['dsync.*.created'], 'dsync.activated', false],
    [['dsync.*.created'], 'user.created', false],
    [['organization*'], 'organization.created', true],
    [['organization*'], 'organization_domain.verified', true],
    [['organization*'], 'user.created', false],
    [['*_failed'], 'authentication.sso_failed', true],
    [['*_failed'], 'organization_domain.verification_failed', true],
    [['a*b*c'], 'a.x.b.y.c', true],
    [['a*b*c'], 'abc', true],
    [['a*b*c'], 'a.c.b', false],
    [['user.*'], 'users.created', false],
    [['user.created'], 'user.created', true],
    [['user.created'], 'userXcreated', false],
    [['user.created'], 'user.created.extra', false],
    [['user.created'], 'user', false],
    [['user.created'], 'User.created', false],
    [['user.created', 'user.deleted'], 'user.deleted', true],
    [['user.created', 'user.deleted'], 'user.updated', false],
    // exclusions
    [['dsync.*', '!dsync.group.updated'], 'dsync.group.updated', false],
    [['dsync.*', '!dsync.group.updated'], 'dsync.group.created', true],
    [['dsync.*', '!dsync.group.updated'], 'dsync.group.user_added', true],
    [['dsync.*', '!dsync.group.updated'], 'user.created', false],
    [['dsync.*', '!dsync.group.*'], 'dsync.group.user_added', false],
    [['dsync.*', '!dsync.group.*'], 'dsync.user.created', true],
    [['!dsync.group.updated'], 'dsync.group.updated', false],
    [['!dsync.group.updated'], 'dsync.group.created', true],
    [['!dsync.group.updated'], 'user.created', true],
    [['!dsync.group.updated'], 'acme.widget.exploded', true],
    [['!dsync.*', '!user.*'], 'organization.created', true],
    [['!dsync.*', '!user.*'], 'dsync.activated', false],
    [['!dsync.*', '!user.*'], 'user.created', false],
    [['*', '!*.deleted'], 'user.deleted', false],
    [['*', '!*.deleted'], 'user.created', true],
    [['!*'], 'user.created', false],
    [['user.created', '!user.created'], 'user.created', false],
    [['!user.created', 'user.created'], 'user.created', false],
    [['user.*', '!user.created'], 'user.created', false],
    [['user.*', '!user.created'], 'user.updated', true],
    [['user.created', 'dsync.*', '!dsync.deleted'], 'user.created', true],
    [['user.created', 'dsync.*', '!dsync.deleted'], 'dsync.deleted', false],
    [['user.created', 'dsync.*', '!dsync.deleted'], 'dsync.activated', true],
    [['user.created', 'dsync.*', '!dsync.deleted'], 'user.updated', false],
    [['user.created', '!dsync.*'], 'user.created', true],
    [['user.created', '!dsync.*'], 'user.updated', false],
  ];

  it.each(CASES)('%j selects %s: %s (Matcher.namesMatch)', (patterns, type, expected) => {
    expect(Matcher.namesMatch(patterns, type)).toBe(expected);
  });

  it.each(CASES)('%j selects %s: %s (matcher.match and rulesForType)', (patterns, type, expected) => {
    const m = configMatcher([{ name: 'r', events: patterns, to: ['d'] }]);
    expect(m.match(ev(type)).rules.length === 1).toBe(expected);
    expect(m.match(ev(type)).destinations).toEqual(expected ? ['d'] : []);
    expect(names(m.rulesForType(type))).toEqual(expected ? ['r'] : []);
  });

  it('the matcher agrees with namesMatch for every catalog type and a spread of pattern lists', () => {
    const lists: string[][] = [
      ['*'],
      ['dsync.*', '!dsync.group.updated'],
      ['authentication.*_failed', 'authentication.radar_risk_detected'],
      ['*.created', '!dsync.*'],
      ['!user.*'],
      ['!*.deleted', '!*.updated'],
      ['organization*', '!organization_domain.*'],
      ['user.created', 'user.deleted'],
      ['*_succeeded'],
    ];
    const m = directMatcher(lists.map((events, i) => ({ name: `r${i}`, events, to: [`d${i}`] })));
    for (const type of [...EVENT_TYPES, 'acme.widget.exploded', 'user.created.v2']) {
      const expected = lists.map((l, i) => (Matcher.namesMatch(l, type) ? `r${i}` : null)).filter((x) => x !== null);
      expect(names(m.match(ev(type)).rules), type).toEqual(expected);
      expect(names(m.rulesForType(type)), type).toEqual(expected);
    }
  });

  it('globToRegExp escapes regex metacharacters other than *', () => {
    expect(globToRegExp('user.created').test('user.created')).toBe(true);
    expect(globToRegExp('user.created').test('userXcreated')).toBe(false);
    expect(globToRegExp('a+b').test('aab')).toBe(false);
    expect(globToRegExp('a+b').test('a+b')).toBe(true);
    expect(globToRegExp('*').test('')).toBe(true);
  });
});

describe('overlapping rules', () => {
  const m = configMatcher([
    { name: 'users', events: ['user.*'], to: ['crm', 'ops'] },
    { name: 'created', events: ['*.created'], to: ['ops', 'audit'] },
    { name: 'all', events: ['*'], to: ['crm', 'archive'] },
    { name: 'exact', events: ['user.created'], to: ['audit', 'slack'] },
  ]);

  it('sends an event to every destination of every matching rule, each once, in rule order', () => {
    const r = m.match(ev('user.created'));
    expect(names(r.rules)).toEqual(['users', 'created', 'all', 'exact']);
    expect(r.destinations).toEqual(['crm', 'ops', 'audit', 'archive', 'slack']);
  });

  it('keeps rule order for a subset of matching rules', () => {
    expect(m.match(ev('user.updated')).destinations).toEqual(['crm', 'ops', 'archive']);
    expect(m.match(ev('dsync.group.created')).destinations).toEqual(['ops', 'audit', 'crm', 'archive']);
    expect(m.match(ev('dsync.activated')).destinations).toEqual(['crm', 'archive']);
  });

  it('orders by rule position, not by pattern kind (exact rules mixed with wildcard rules)', () => {
    const mm = directMatcher([
      { name: 'w0', events: ['*'], to: ['b'] },
      { name: 'e1', events: ['user.created'], to: ['a', 'b'] },
      { name: 'w2', events: ['user.*'], to: ['c'] },
      { name: 'e3', events: ['user.created', 'user.deleted'], to: ['a', 'd'] },
      { name: 'x4', events: ['!dsync.*'], to: ['e'] },
    ]);
    const r = mm.match(ev('user.created'));
    expect(names(r.rules)).toEqual(['w0', 'e1', 'w2', 'e3', 'x4']);
    expect(r.destinations).toEqual(['b', 'a', 'c', 'd', 'e']);
    // Order also holds when the first-matching rule is an exact one.
    const mm2 = directMatcher([
      { name: 'e0', events: ['user.created'], to: ['z'] },
      { name: 'w1', events: ['*'], to: ['y'] },
      { name: 'e2', events: ['user.created'], to: ['x', 'z'] },
    ]);
    expect(mm2.match(ev('user.created')).destinations).toEqual(['z', 'y', 'x']);
  });

  it('lists a rule once even when several of its patterns select the type', () => {
    const mm = directMatcher([{ name: 'r', events: ['user.*', '*.created', 'user.created', 'user.created'], to: ['a'] }]);
    expect(names(mm.match(ev('user.created')).rules)).toEqual(['r']);
    const mm2 = directMatcher([{ name: 'r', events: ['user.created', 'user.created'], to: ['a'] }]);
    expect(names(mm2.match(ev('user.created')).rules)).toEqual(['r']);
  });

  it('orders where-filtered and unconditional rules together by rule position', () => {
    const mm = configMatcher([
      { name: 'org', events: ['user.created'], where: { 'data.organization_id': 'org_1' }, to: ['org-dest', 'shared'] },
      { name: 'plain', events: ['user.*'], to: ['shared', 'plain-dest'] },
      { name: 'gmail', events: ['*'], where: { 'data.email': { suffix: '@gmail.com' } }, to: ['gmail-dest', 'org-dest'] },
    ]);
    const r = mm.match(ev('user.created', { organization_id: 'org_1', email: 'a@gmail.com' }));
    expect(names(r.rules)).toEqual(['org', 'plain', 'gmail']);
    expect(r.destinations).toEqual(['org-dest', 'shared', 'plain-dest', 'gmail-dest']);
  });

  it('returns no rules and no destinations when nothing matches', () => {
    const mm = configMatcher([{ name: 'users', events: ['user.*'], to: ['crm'] }]);
    expect(mm.match(ev('dsync.activated'))).toEqual({ rules: [], destinations: [] });
    expect(directMatcher([]).match(ev('user.created'))).toEqual({ rules: [], destinations: [] });
  });
});

describe('where operators', () => {
  type Case = [unknown, boolean];

  describe.each<[string, Record<string, unknown>, Case[]]>([
    [
      'string equality',
      { 'data.x': 'org_1' },
      [
        ['org_1', true],
        ['org_2', false],
        ['ORG_1', false],
        ['org_1 ', false],
        [MISSING, false],
        [null, false],
        [['org_0', 'org_1'], true],
        [['org_2', 'org_3'], false],
        [[], false],
        [{ id: 'org_1' }, false],
        [[['org_1']], false],
      ],
    ],
    [
      'number equality',
      { 'data.x': 3 },
      [
        [3, true],
        [3.0, true],
        ['3', false],
        [4, false],
        [true, false],
        [[1, 3], true],
        [MISSING, false],
      ],
    ],
    [
      'zero equality',
      { 'data.x': 0 },
      [
        [0, true],
        [false, false],
        ['0', false],
        [null, false],
        [MISSING, false],
      ],
    ],
    [
      'boolean true equality',
      { 'data.x': true },
      [
        [true, true],
        [false, false],
        ['true', false],
        [1, false],
        [[false, true], true],
        [MISSING, false],
      ],
    ],
    [
      'boolean false equality',
      { 'data.x': false },
      [
        [false, true],
        [true, false],
        ['false', false],
        [0, false],
        [null, false],
        [MISSING, false],
      ],
    ],
    [
      'null equality',
      { 'data.x': null },
      [
        [null, true],
        [MISSING, false],
        ['null', false],
        [0, false],
        [false, false],
        ['', false],
        [[null], true],
        [['a', null], true],
      ],
    ],
    [
      'string equality against a number in the event',
      { 'data.x': '1' },
      [
        [1, false],
        ['1', true],
      ],
    ],
    [
      'any-of strings',
      { 'data.x': ['active', 'pending'] },
      [
        ['active', true],
        ['pending', true],
        ['inactive', false],
        [MISSING, false],
        [null, false],
        [['inactive', 'pending'], true],
        [['inactive'], false],
      ],
    ],
    [
      'any-of mixed scalars',
      { 'data.x': [1, '1', true, null] },
      [
        [1, true],
        ['1', true],
        [true, true],
        [null, true],
        [2, false],
        [false, false],
        ['true', false],
        [MISSING, false],
      ],
    ],
    [
      'any-of with a single element',
      { 'data.x': ['only'] },
      [
        ['only', true],
        ['other', false],
      ],
    ],
    [
      'prefix',
      { 'data.x': { prefix: 'org_' } },
      [
        ['org_1', true],
        ['org_', true],
        ['xorg_1', false],
        ['ORG_1', false],
        [5, false],
        [null, false],
        [MISSING, false],
        [['x', 'org_2'], true],
        [['x', 'y'], false],
      ],
    ],
    [
      'prefix list',
      { 'data.x': { prefix: ['a', 'b'] } },
      [
        ['bx', true],
        ['ax', true],
        ['cx', false],
        [['cx', 'ax'], true],
      ],
    ],
    [
      'suffix',
      { 'data.x': { suffix: '@example.com' } },
      [
        ['ada@example.com', true],
        ['ada@example.com.evil', false],
        ['ada@EXAMPLE.com', false],
        [MISSING, false],
        [['x@y.z', 'b@example.com'], true],
      ],
    ],
    [
      'suffix list',
      { 'data.x': { suffix: ['@a.com', '@b.com'] } },
      [
        ['x@b.com', true],
        ['x@a.com', true],
        ['x@c.com', false],
      ],
    ],
    [
      'prefix and suffix together (both must hold)',
      { 'data.x': { prefix: 'user_', suffix: '_x' } },
      [
        ['user_1_x', true],
        ['user_1', false],
        ['1_x', false],
        [['user_1', '2_x'], true],
      ],
    ],
    [
      'exists = true',
      { 'data.x': { exists: true } },
      [
        ['x', true],
        ['', true],
        [0, true],
        [false, true],
        [[], true],
        [{}, true],
        [null, false],
        [MISSING, false],
      ],
    ],
    [
      'exists = false',
      { 'data.x': { exists: false } },
      [
        [MISSING, true],
        [null, true],
        ['x', false],
        ['', false],
        [0, false],
        [false, false],
        [[], false],
      ],
    ],
    [
      'not equality',
      { 'data.x': { not: 'active' } },
      [
        ['inactive', true],
        ['active', false],
        [MISSING, true],
        [null, true],
        [['active', 'x'], false],
        [['x', 'y'], true],
      ],
    ],
    [
      'not any-of',
      { 'data.x': { not: ['a', 'b'] } },
      [
        ['c', true],
        ['a', false],
        ['b', false],
        [MISSING, true],
        [['c', 'b'], false],
      ],
    ],
    [
      'not number',
      { 'data.x': { not: 5 } },
      [
        [5, false],
        ['5', true],
        [6, true],
      ],
    ],
    [
      'not null',
      { 'data.x': { not: null } },
      [
        ['x', true],
        [null, false],
        [MISSING, true],
      ],
    ],
    [
      'not prefix',
      { 'data.x': { not: { prefix: 'test_' } } },
      [
        ['prod_1', true],
        ['test_1', false],
        [MISSING, true],
        [['prod_1', 'test_1'], false],
      ],
    ],
    [
      'not suffix list',
      { 'data.x': { not: { suffix: ['@a.com', '@b.com'] } } },
      [
        ['x@c.com', true],
        ['x@a.com', false],
      ],
    ],
    [
      'not exists = true (same as exists = false)',
      { 'data.x': { not: { exists: true } } },
      [
        [MISSING, true],
        [null, true],
        ['x', false],
        [0, false],
      ],
    ],
    [
      'not exists = false (same as exists = true)',
      { 'data.x': { not: { exists: false } } },
      [
        [MISSING, false],
        [null, false],
        ['x', true],
      ],
    ],
    [
      'exists combined with not',
      { 'data.x': { exists: true, not: 'banned' } },
      [
        ['ok', true],
        ['banned', false],
        [MISSING, false],
        [null, false],
      ],
    ],
  ])('%s', (_label, where, cases) => {
    it.each(cases)('data.x = %j → %s', (value, expected) => {
      expect(whereHit(where, withX(value))).toBe(expected);
    });
  });

  it('reads nested paths such as context.actor.id', () => {
    const where = { 'context.actor.id': 'user_1' };
    expect(whereHit(where, ev('user.created', {}, { context: { actor: { id: 'user_1', name: 'Ada' } } }))).toBe(true);
    expect(whereHit(where, ev('user.created', {}, { context: { actor: { id: 'user_2' } } }))).toBe(false);
    expect(whereHit(where, ev('user.created', {}, { context: { actor: null } }))).toBe(false);
    expect(whereHit(where, ev('user.created', {}, { context: { actor: 'user_1' } }))).toBe(false);
    expect(whereHit(where, ev('user.created', {}, { context: {} }))).toBe(false);
    expect(whereHit(where, ev('user.created'))).toBe(false);
    expect(whereHit({ 'context.actor.id': { exists: false } }, ev('user.created'))).toBe(true);
  });

  it('reads deep data paths and treats a missing or non-object step as missing', () => {
    const where = { 'data.a.b.c': 'deep' };
    expect(whereHit(where, d({ a: { b: { c: 'deep' } } }))).toBe(true);
    expect(whereHit(where, d({ a: { b: { c: ['x', 'deep'] } } }))).toBe(true);
    expect(whereHit(where, d({ a: { b: null } }))).toBe(false);
    expect(whereHit(where, d({ a: 'string' }))).toBe(false);
    expect(whereHit(where, d({ a: 5 }))).toBe(false);
    expect(whereHit(where, d({}))).toBe(false);
    expect(whereHit(where, ev('user.created', undefined as never))).toBe(false);
  });

  it('reads top-level envelope fields', () => {
    expect(whereHit({ event: 'user.created' }, ev('user.created'))).toBe(true);
    expect(whereHit({ event: 'user.deleted' }, ev('user.created'))).toBe(false);
    expect(whereHit({ id: { prefix: 'event_' } }, ev('user.created'))).toBe(true);
  });

  it('ANDs every condition of a where table', () => {
    const where = { 'data.organization_id': 'org_1', 'data.role': ['admin', 'owner'], 'data.email': { suffix: '@corp.com' } };
    expect(whereHit(where, d({ organization_id: 'org_1', role: 'admin', email: 'a@corp.com' }))).toBe(true);
    expect(whereHit(where, d({ organization_id: 'org_2', role: 'admin', email: 'a@corp.com' }))).toBe(false);
    expect(whereHit(where, d({ organization_id: 'org_1', role: 'member', email: 'a@corp.com' }))).toBe(false);
    expect(whereHit(where, d({ organization_id: 'org_1', role: 'owner', email: 'a@home.com' }))).toBe(false);
    expect(whereHit(where, d({ organization_id: 'org_1', role: 'owner' }))).toBe(false);
  });

  it('matches array event values element-wise for every operator', () => {
    expect(whereHit({ 'data.roles': 'admin' }, d({ roles: ['member', 'admin'] }))).toBe(true);
    expect(whereHit({ 'data.roles': ['owner', 'admin'] }, d({ roles: ['member', 'admin'] }))).toBe(true);
    expect(whereHit({ 'data.roles': { prefix: 'adm' } }, d({ roles: ['member', 'admin'] }))).toBe(true);
    expect(whereHit({ 'data.roles': { suffix: 'ber' } }, d({ roles: ['member', 'admin'] }))).toBe(true);
    expect(whereHit({ 'data.roles': { not: 'admin' } }, d({ roles: ['member', 'admin'] }))).toBe(false);
    expect(whereHit({ 'data.roles': 'owner' }, d({ roles: ['member', 'admin'] }))).toBe(false);
    expect(whereHit({ 'data.roles': 'admin' }, d({ roles: [] }))).toBe(false);
    expect(whereHit({ 'data.roles': 3 }, d({ roles: [1, 2, 3] }))).toBe(true);
    expect(whereHit({ 'data.roles': null }, d({ roles: [1, null] }))).toBe(true);
    expect(whereHit({ 'data.roles': true }, d({ roles: [false, true] }))).toBe(true);
  });

  it('lists a rule once when several array elements hit its any-of', () => {
    const m = directMatcher([{ name: 'r', events: ['*'], where: { 'data.tags': ['a', 'b'] }, to: ['x'] }]);
    const r = m.match(d({ tags: ['a', 'a', 'b'] }));
    expect(names(r.rules)).toEqual(['r']);
    expect(r.destinations).toEqual(['x']);
  });

  // Paths should only see the event's own JSON fields; readPath walks the prototype
  // chain, so `data.constructor` / `data.toString` / `data.__proto__` "exist" on every event.
  it('does not see inherited object properties as event fields', () => {
    expect(whereHit({ 'data.constructor': { exists: true } }, d({}))).toBe(false);
  });
  it('does not see __proto__ as an event field', () => {
    expect(whereHit({ 'data.__proto__': { exists: true } }, d({}))).toBe(false);
  });
  it('does not see toString as an event field', () => {
    expect(whereHit({ 'data.toString': { exists: false } }, d({}))).toBe(true);
  });
});

describe('a path through a list of objects', () => {
  // WorkOS lists objects, not strings: dsync.activated's data.domains is [{ object, id, domain }].
  const activated = (domains: unknown) => ev('dsync.activated', { id: 'directory_01', domains });
  const TWO = [
    { object: 'organization_domain', id: 'org_domain_1', domain: 'example.com' },
    { object: 'organization_domain', id: 'org_domain_2', domain: 'acme.io' },
  ];

  it('reads the field of every element: equality, any-of, suffix and exists match when any element does', () => {
    expect(whereHit({ 'data.domains.domain': 'acme.io' }, activated(TWO))).toBe(true);
    expect(whereHit({ 'data.domains.domain': 'other.com' }, activated(TWO))).toBe(false);
    expect(whereHit({ 'data.domains.domain': ['x.org', 'example.com'] }, activated(TWO))).toBe(true);
    expect(whereHit({ 'data.domains.domain': { suffix: '.io' } }, activated(TWO))).toBe(true);
    expect(whereHit({ 'data.domains.domain': { exists: true } }, activated(TWO))).toBe(true);
    expect(whereHit({ 'data.domains.domain': { exists: true } }, activated([]))).toBe(false);
    expect(whereHit({ 'data.domains.domain': { not: 'acme.io' } }, activated(TWO))).toBe(false);
    expect(whereHit({ 'data.domains.domain': { not: 'other.com' } }, activated(TWO))).toBe(true);
  });

  it('a numeric step still indexes the list; elements that are not objects, or lack the field, are skipped', () => {
    expect(whereHit({ 'data.domains.1.domain': 'acme.io' }, activated(TWO))).toBe(true);
    expect(whereHit({ 'data.domains.0.domain': 'acme.io' }, activated(TWO))).toBe(false);
    expect(whereHit({ 'data.domains.domain': 'acme.io' }, activated(['acme.io', null, { id: 'x' }, TWO[1]]))).toBe(true);
    expect(whereHit({ 'data.domains.domain': { exists: true } }, activated(['acme.io', { id: 'x' }]))).toBe(false);
    // Own fields only, in elements too.
    expect(whereHit({ 'data.domains.constructor': { exists: true } }, activated(TWO))).toBe(false);
  });

  it('exists through a list: a field that is null in every element is not present (it matched exists = true and failed exists = false)', () => {
    const nulls = [{ id: 'a', domain: null }, { id: 'b', domain: null }];
    expect(whereHit({ 'data.domains.domain': { exists: true } }, activated(nulls))).toBe(false);
    expect(whereHit({ 'data.domains.domain': { exists: false } }, activated(nulls))).toBe(true);
    expect(whereHit({ 'data.domains.domain': { not: { exists: true } } }, activated(nulls))).toBe(true);
    // One element with it, not null: present.
    expect(whereHit({ 'data.domains.domain': { exists: true } }, activated([...nulls, TWO[0]]))).toBe(true);
    // Equality with null still reads each element's null (a JSON config can ask for it).
    expect(whereHit({ 'data.domains.domain': null }, activated(nulls))).toBe(true);
    // A list the event itself holds is present, even empty or holding only null.
    expect(whereHit({ 'data.domains': { exists: true } }, activated([]))).toBe(true);
    expect(whereHit({ 'data.domains': { exists: true } }, activated([null]))).toBe(true);
  });
});

describe('indexed, unconditional and scanned rules for one type', () => {
  const m = configMatcher([
    { name: 'all-users', events: ['user.created'], to: ['all'] },
    { name: 'org1', events: ['user.*'], where: { 'data.organization_id': 'org_1' }, to: ['org1'] },
    { name: 'gmail', events: ['user.created'], where: { 'data.email': { suffix: '@gmail.com' } }, to: ['gmail'] },
    { name: 'org2-or-3', events: ['*'], where: { 'data.organization_id': ['org_2', 'org_3'] }, to: ['org23'] },
    { name: 'admins', events: ['user.created'], where: { 'data.role': 'admin' }, to: ['admins'] },
    { name: 'org1-admins', events: ['user.created'], where: { 'data.organization_id': 'org_1', 'data.role': 'admin' }, to: ['org1-admins'] },
    { name: 'not-test', events: ['user.created'], where: { 'data.email': { not: { prefix: 'test' } }, 'data.organization_id': 'org_1' }, to: ['not-test'] },
    { name: 'no-org', events: ['user.created'], where: { 'data.organization_id': { exists: false } }, to: ['no-org'] },
  ]);
  const hit = (data: Record<string, unknown>, type = 'user.created') => names(m.match(ev(type, data)).rules);

  it.each<[Record<string, unknown>, string[]]>([
    [{}, ['all-users', 'no-org']],
    [{ organization_id: 'org_1' }, ['all-users', 'org1', 'not-test']],
    [{ organization_id: 'org_1', email: 'test@x.com' }, ['all-users', 'org1']],
    [{ organization_id: 'org_1', role: 'admin' }, ['all-users', 'org1', 'admins', 'org1-admins', 'not-test']],
    [{ organization_id: 'org_2', role: 'admin', email: 'a@gmail.com' }, ['all-users', 'gmail', 'org2-or-3', 'admins']],
    [{ organization_id: 'org_3' }, ['all-users', 'org2-or-3']],
    [{ organization_id: 'org_4', email: 'b@gmail.com' }, ['all-users', 'gmail']],
    [{ organization_id: ['org_1', 'org_3'] }, ['all-users', 'org1', 'org2-or-3', 'not-test']],
    [{ organization_id: null, role: 'admin' }, ['all-users', 'admins', 'no-org']],
    [{ organization_id: 1 }, ['all-users']],
  ])('user.created with data %j → %j', (data, expected) => {
    expect(hit(data)).toEqual(expected);
  });

  it('applies the same indexes per type (user.updated only sees the rules naming it)', () => {
    expect(hit({ organization_id: 'org_1', role: 'admin', email: 'a@gmail.com' }, 'user.updated')).toEqual(['org1']);
    expect(hit({ organization_id: 'org_3' }, 'dsync.activated')).toEqual(['org2-or-3']);
    expect(hit({ organization_id: 'org_1' }, 'dsync.activated')).toEqual([]);
  });

  it('gives the same answer on repeated matches (cached type entries)', () => {
    const data = { organization_id: 'org_1', role: 'admin' };
    const first = hit(data);
    for (let i = 0; i < 5; i++) expect(hit(data)).toEqual(first);
    expect(hit({})).toEqual(['all-users', 'no-org']);
  });

  it('rulesForType lists every rule the type selects, ignoring where, in config order', () => {
    expect(names(m.rulesForType('user.created'))).toEqual(['all-users', 'org1', 'gmail', 'org2-or-3', 'admins', 'org1-admins', 'not-test', 'no-org']);
    expect(names(m.rulesForType('user.updated'))).toEqual(['org1', 'org2-or-3']);
    expect(names(m.rulesForType('dsync.activated'))).toEqual(['org2-or-3']);
  });
});

describe('1,000 per-tenant rules', () => {
  const N = 1000;
  const tenantRules: RuleSpec[] = Array.from({ length: N }, (_, i) => ({
    name: `tenant-${i}`,
    events: i % 2 === 0 ? ['user.*'] : ['user.created', 'user.updated', 'user.deleted'],
    where: { 'data.organization_id': `org_${i}` },
    to: [`tenant-${i}`],
  }));
  const rules: RuleSpec[] = [...tenantRules, { name: 'catch-all', events: ['*'], to: ['archive'] }];

  it('fires only the right tenant rule (plus the unconditional one)', () => {
    const m = configMatcher(rules);
    for (const i of [0, 1, 2, 537, 998, 999]) {
      const r = m.match(ev('user.created', { organization_id: `org_${i}` }));
      expect(names(r.rules)).toEqual([`tenant-${i}`, 'catch-all']);
      expect(r.destinations).toEqual([`tenant-${i}`, 'archive']);
    }
    expect(m.match(ev('user.created', { organization_id: 'org_1000' })).destinations).toEqual(['archive']);
    expect(m.match(ev('user.created', {})).destinations).toEqual(['archive']);
    expect(m.match(ev('dsync.activated', { organization_id: 'org_5' })).destinations).toEqual(['archive']);
  });

  it('routes every tenant correctly', () => {
    const m = configMatcher(rules);
    for (let i = 0; i < N; i++) {
      const type = i % 3 === 0 ? 'user.created' : i % 3 === 1 ? 'user.updated' : 'user.deleted';
      expect(m.match(ev(type, { organization_id: `org_${i}` })).destinations).toEqual([`tenant-${i}`, 'archive']);
    }
  });

  it('evaluates only the candidate rules, not all 1,000 (equality index)', () => {
    let evaluations = 0;
    const counted = new Matcher(
      tenantRules.map((r) => ({
        name: r.name,
        events: r.events,
        to: r.to,
        where: compile(r.where).map((c) => ({
          ...c,
          test: (v: unknown) => {
            evaluations++;
            return c.test(v);
          },
        })),
      })),
    );
    for (const i of [3, 404, 999]) {
      evaluations = 0;
      expect(names(counted.match(ev('user.created', { organization_id: `org_${i}` })).rules)).toEqual([`tenant-${i}`]);
      expect(evaluations).toBeLessThanOrEqual(1);
    }
    evaluations = 0;
    expect(counted.match(ev('user.created', { organization_id: 'org_unknown' })).rules).toEqual([]);
    expect(evaluations).toBe(0);
  });

  it('an array of organization ids fires each named tenant once, in rule order', () => {
    const m = configMatcher(rules);
    const r = m.match(ev('user.created', { organization_id: ['org_700', 'org_12', 'org_700'] }));
    expect(names(r.rules)).toEqual(['tenant-12', 'tenant-700', 'catch-all']);
  });
});

describe('event names outside the catalog', () => {
  const m = configMatcher([
    { name: 'everything', events: ['*'], to: ['all'] },
    { name: 'acme', events: ['acme.*'], to: ['acme'] },
    { name: 'created', events: ['*.created'], to: ['created'] },
    { name: 'users', events: ['user.*'], to: ['users'] },
    { name: 'exact-unknown', events: ['acme.widget.created'], to: ['exact'] },
    { name: 'not-users', events: ['!user.*'], to: ['not-users'] },
    { name: 'acme-no-deleted', events: ['acme.*', '!acme.*.deleted'], where: { 'data.tier': 'gold' }, to: ['gold'] },
  ]);

  it('routes an unknown event name by pattern', () => {
    expect(names(m.match(ev('acme.widget.created', { tier: 'gold' })).rules)).toEqual([
      'everything',
      'acme',
      'created',
      'exact-unknown',
      'not-users',
      'acme-no-deleted',
    ]);
    expect(names(m.match(ev('acme.widget.deleted', { tier: 'gold' })).rules)).toEqual(['everything', 'acme', 'not-users']);
    expect(names(m.match(ev('user.widget_added')).rules)).toEqual(['everything', 'users']);
    expect(names(m.match(ev('brand_new')).rules)).toEqual(['everything', 'not-users']);
  });

  it('rulesForType works for unknown names', () => {
    expect(names(m.rulesForType('acme.widget.created'))).toEqual(['everything', 'acme', 'created', 'exact-unknown', 'not-users', 'acme-no-deleted']);
    expect(names(m.rulesForType('acme.widget.deleted'))).toEqual(['everything', 'acme', 'not-users']);
  });

  it('stays correct beyond the type cache size (many distinct names)', () => {
    const mm = directMatcher([
      { name: 'acme', events: ['acme.*'], to: ['a'] },
      { name: 'exact', events: ['acme.t7'], to: ['e'] },
    ]);
    for (let i = 0; i < 5000; i++) {
      expect(mm.match(ev(`acme.t${i}`)).destinations).toEqual(i === 7 ? ['a', 'e'] : ['a']);
    }
    expect(mm.match(ev('acme.t7')).destinations).toEqual(['a', 'e']);
    expect(mm.match(ev('other.t7')).destinations).toEqual([]);
  });
});

describe('rulesForType', () => {
  const m = directMatcher([
    { name: 'a', events: ['user.created'], to: ['x'] },
    { name: 'b', events: ['user.*'], where: { 'data.organization_id': ['org_1', 'org_2'] }, to: ['x'] },
    { name: 'c', events: ['*'], where: { 'data.email': { prefix: 'a' } }, to: ['y'] },
    { name: 'd', events: ['!user.created'], to: ['z'] },
    { name: 'e', events: ['user.created'], where: { 'data.organization_id': 'org_9', 'data.role': 'admin' }, to: ['z'] },
    { name: 'f', events: ['user.created'], where: { 'data.role': ['admin'] }, to: ['w'] },
  ]);

  it('returns the rules whose names select the type, each once, in config order, ignoring where', () => {
    expect(names(m.rulesForType('user.created'))).toEqual(['a', 'b', 'c', 'e', 'f']);
    expect(names(m.rulesForType('user.updated'))).toEqual(['b', 'c', 'd']);
    expect(names(m.rulesForType('dsync.activated'))).toEqual(['c', 'd']);
  });

  it('returns an empty list when no rule selects the type', () => {
    expect(directMatcher([{ name: 'a', events: ['user.created'], to: ['x'] }]).rulesForType('user.deleted')).toEqual([]);
  });

  it('returns the same rule objects as the config', () => {
    const result = parseRouterConfig(
      {
        destinations: [{ name: 'x', type: 'http', url: 'https://x.example/x' }],
        rules: [
          { name: 'r1', events: ['user.*'], where: { 'data.a': 1 }, to: ['x'] },
          { name: 'r2', events: ['user.created'], to: ['x'] },
        ],
      },
      () => undefined,
    );
    if (!result.ok) throw new Error(result.problems.join('\n'));
    const { matcher, rules } = result.config;
    expect(matcher.rulesForType('user.created')).toEqual([rules[0], rules[1]]);
    expect(matcher.rulesForType('user.created')[0]).toBe(rules[0]);
    expect(matcher.match(ev('user.created', { a: 1 })).rules[0]).toBe(rules[0]);
  });

  it('does not depend on match having been called first, and vice versa', () => {
    const fresh = directMatcher([{ name: 'b', events: ['user.*'], where: { 'data.organization_id': 'org_1' }, to: ['x'] }]);
    expect(names(fresh.match(ev('user.created', { organization_id: 'org_1' })).rules)).toEqual(['b']);
    expect(names(fresh.rulesForType('user.created'))).toEqual(['b']);
    const fresh2 = directMatcher([{ name: 'b', events: ['user.*'], where: { 'data.organization_id': 'org_1' }, to: ['x'] }]);
    expect(names(fresh2.rulesForType('user.created'))).toEqual(['b']);
    expect(names(fresh2.match(ev('user.created', { organization_id: 'org_1' })).rules)).toEqual(['b']);
  });
});

describe('Matcher.namesMatch', () => {
  it.each<[string[], string, boolean]>([
    [['user.created'], 'user.created', true],
    [['user.created'], 'user.updated', false],
    [['user.*'], 'user.updated', true],
    [['!user.*'], 'dsync.activated', true],
    [['!user.*'], 'user.updated', false],
    [['!user.*', '!dsync.*'], 'organization.created', true],
    [['dsync.*', '!dsync.group.updated'], 'dsync.group.updated', false],
    [['dsync.*', '!dsync.group.updated'], 'dsync.group.deleted', true],
    [['*'], 'anything.at.all', true],
    [['*', '!*'], 'user.created', false],
  ])('%j, %s → %s', (patterns, type, expected) => {
    expect(Matcher.namesMatch(patterns, type)).toBe(expected);
  });

  it('treats a list of only exclusions as matching everything else', () => {
    const patterns = ['!dsync.group.updated', '!user.*'];
    for (const type of EVENT_TYPES) {
      expect(Matcher.namesMatch(patterns, type), type).toBe(type !== 'dsync.group.updated' && !type.startsWith('user.'));
    }
  });
});

describe('per-value result cache (single-equality rules)', () => {
  it('keeps null and a missing field apart, and types apart', async () => {
    const { parseRouterConfig } = await import('../../src/config/router-config');
    const r = parseRouterConfig(
      {
        destinations: [
          { name: 'n', type: 'http', url: 'https://n.example/' },
          { name: 's', type: 'http', url: 'https://s.example/' },
          { name: 'one', type: 'http', url: 'https://one.example/' },
        ],
        rules: [
          { name: 'null', events: ['user.updated'], where: { 'data.org': null }, to: ['n'] },
          { name: 'str1', events: ['user.updated'], where: { 'data.org': '1' }, to: ['s'] },
          { name: 'num1', events: ['user.updated'], where: { 'data.org': 1 }, to: ['one'] },
        ],
      },
      () => undefined,
    );
    if (!r.ok) throw new Error(r.problems.join('\n'));
    const m = r.config.matcher;
    const ev = (data: Record<string, unknown>) => ({ id: 'e', event: 'user.updated', data, created_at: 'x' });
    for (let round = 0; round < 2; round++) {
      // twice: the second round is served from the cache
      expect(m.match(ev({ org: null })).destinations).toEqual(['n']);
      expect(m.match(ev({})).destinations).toEqual([]);
      expect(m.match(ev({ org: '1' })).destinations).toEqual(['s']);
      expect(m.match(ev({ org: 1 })).destinations).toEqual(['one']);
      expect(m.match(ev({ org: ['1', 1] })).destinations).toEqual(['s', 'one']);
      expect(m.match(ev({ org: { nested: true } })).destinations).toEqual([]);
    }
  });
});
