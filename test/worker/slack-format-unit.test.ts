import type { ContextBlock, HeaderBlock, KnownBlock, SectionBlock } from '@slack/types';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type EventType, type UnknownEvent } from '../../src/events/catalog';
import {
  escapeMrkdwn,
  formatDigest,
  formatSlackMessage,
  keyFieldOf,
  type DigestGroup,
  type SlackFormatContext,
  type SlackMessage,
} from '../../src/destinations/slack/format';
import { code, literal } from '../../src/destinations/slack/format/escape';
import { alertsMessage } from '../../src/destinations/slack/render';
import type { SlackDestination } from '../../src/config/router-config';
import { FIXTURES, makeEvent } from '../fixtures/events';

const ZWSP = '\u200B';
const CTX: SlackFormatContext = { rule: 'security-alerts', destination: 'security' };

// ---------------------------------------------------------------------------
// Helpers

function asUnknown(event: unknown): UnknownEvent {
  return event as UnknownEvent;
}

function fixture(type: EventType): UnknownEvent {
  return asUnknown(FIXTURES[type]);
}

function event(type: string, data: unknown, extra: Record<string, unknown> = {}): UnknownEvent {
  return asUnknown({ id: 'event_TEST', event: type, created_at: '2026-11-20T10:00:00.000Z', data, ...extra });
}

const isSection = (b: KnownBlock): b is SectionBlock => b.type === 'section';
const isContext = (b: KnownBlock): b is ContextBlock => b.type === 'context';
const isHeader = (b: KnownBlock): b is HeaderBlock => b.type === 'header';

/** Every string Slack would render or parse: `text` and all block texts. */
function allTexts(msg: SlackMessage): string[] {
  const out = [msg.text];
  for (const b of msg.blocks) {
    if (isHeader(b)) out.push(b.text.text);
    if (isSection(b)) {
      if (b.text) out.push(b.text.text);
      for (const f of b.fields ?? []) out.push(f.text);
    }
    if (isContext(b)) for (const e of b.elements) if ('text' in e) out.push(e.text);
  }
  return out;
}

/** A compact view of a single-event message, for golden expectations. */
function view(msg: SlackMessage) {
  const header = msg.blocks.find(isHeader)?.text.text;
  const sections = msg.blocks.filter(isSection);
  const fields: Record<string, string> = {};
  for (const s of sections) {
    for (const f of s.fields ?? []) {
      const m = /^\*([^*]+)\*\n([\s\S]*)$/.exec(f.text);
      if (!m) throw new Error(`field not "*label*\\nvalue": ${f.text}`);
      fields[m[1]!] = m[2]!;
    }
  }
  const texts = sections.map((s) => s.text?.text).filter((t): t is string => t !== undefined);
  const context = msg.blocks.filter(isContext).flatMap((c) => c.elements.map((e) => ('text' in e ? e.text : '')));
  return { text: msg.text, header, texts, fields, context };
}

/** Slack Block Kit limits (and sanity: non-empty texts, known types). */
function expectWithinLimits(msg: SlackMessage): void {
  expect(msg.blocks.length).toBeGreaterThan(0);
  expect(msg.blocks.length).toBeLessThanOrEqual(50);
  expect(msg.text.length).toBeGreaterThan(0);
  for (const b of msg.blocks) {
    expect(['header', 'section', 'context']).toContain(b.type);
    if (isHeader(b)) {
      expect(b.text.type).toBe('plain_text');
      expect(b.text.text.length).toBeGreaterThan(0);
      expect(b.text.text.length).toBeLessThanOrEqual(150);
    }
    if (isSection(b)) {
      expect(b.text !== undefined || (b.fields?.length ?? 0) > 0).toBe(true);
      if (b.text) {
        expect(b.text.text.length).toBeGreaterThan(0);
        expect(b.text.text.length).toBeLessThanOrEqual(3000);
      }
      expect(b.fields?.length ?? 0).toBeLessThanOrEqual(10);
      for (const f of b.fields ?? []) {
        expect(f.text.length).toBeGreaterThan(0);
        expect(f.text.length).toBeLessThanOrEqual(2000);
      }
    }
    if (isContext(b)) {
      expect(b.elements.length).toBeGreaterThan(0);
      expect(b.elements.length).toBeLessThanOrEqual(10);
      for (const e of b.elements) if ('text' in e) expect(e.text.length).toBeLessThanOrEqual(3000);
    }
  }
}

function expectTextNamesEvent(msg: SlackMessage, e: UnknownEvent): void {
  expect(msg.text).toContain(literal(e.event));
  expect(msg.text).toContain(e.id);
  expect(msg.text).toContain(e.created_at);
}

// ---------------------------------------------------------------------------
// Golden messages, one per family

describe('formatSlackMessage: golden messages', () => {
  it('authentication.password_failed: method, email, user, IP, user agent, error', () => {
    const msg = formatSlackMessage(fixture('authentication.password_failed'), CTX);
    expect(view(msg)).toEqual({
      text: 'authentication.password_failed · event_01M7W9Z2K2CGSBZFBE98WHQQH1 · 2026-11-20T11:02:47.650Z',
      header: ':warning: Authentication: password failed',
      texts: ['`authentication.password_failed` · *priya.raman@example.com*'],
      fields: {
        Method: 'password',
        Email: 'priya.raman@example.com',
        User: '`user_01H9J6DAK05TNE3GKRD0BTC6H0`',
        'IP address': '`203.0.113.58`',
        'User agent':
          'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
        'Error code': '`invalid_credentials`',
        Error: 'Invalid credentials.',
      },
      context: [
        'Rule: *security-alerts*',
        'Destination: security',
        'Event: `event_01M7W9Z2K2CGSBZFBE98WHQQH1`',
        'Time: 2026-11-20T11:02:47.650Z',
      ],
    });
    expect(msg.blocks.map((b) => b.type)).toEqual(['header', 'section', 'context']);
    // verbatim: Slack must not auto-link or auto-mention anything in our mrkdwn.
    const section = msg.blocks[1] as SectionBlock;
    expect(section.text).toMatchObject({ type: 'mrkdwn', verbatim: true });
  });

  it('authentication.sso_succeeded shows the SSO connection and organization', () => {
    const f = view(formatSlackMessage(fixture('authentication.sso_succeeded'), CTX)).fields;
    expect(f.Method).toBe('sso');
    expect(f['SSO connection']).toMatch(/^`conn_/);
    expect(f.Organization).toMatch(/^`org_/);
  });

  it('authentication.radar_risk_detected: Radar verdict, control and blocklist', () => {
    const msg = formatSlackMessage(
      event('authentication.radar_risk_detected', {
        ...FIXTURES['authentication.radar_risk_detected'].data,
        control: 'restriction',
        blocklist_type: 'ip_address',
        verdict: 'block',
      }),
      CTX,
    );
    const v = view(msg);
    expect(v.header).toBe(':warning: Authentication: radar risk detected');
    expect(v.fields).toMatchObject({
      Method: 'password',
      Email: 'jonas.eklund@example.com',
      'IP address': '`198.51.100.142`',
      'Radar verdict': '`block`',
      'Radar action': '`login`',
      'Radar control': '`restriction`',
      Blocklist: '`ip_address`',
    });
    expect(v.fields['User agent']).toContain('Edg/131');
  });

  it('dsync.user.*: name, email, directory, organization, state', () => {
    const v = view(formatSlackMessage(fixture('dsync.user.created'), CTX));
    expect(v.header).toBe('Directory Sync: user created');
    expect(v.fields).toMatchObject({
      Name: 'Lena Fischer',
      Email: 'lena.fischer@example.com',
      State: '`active`',
      'Directory user': '`directory_user_01M7WG4CS4WYZQ869NYXMFC3WJ`',
    });
    expect(v.fields.Directory).toMatch(/^`directory_/);
    expect(v.fields.Organization).toMatch(/^`org_/);
    const updated = view(formatSlackMessage(fixture('dsync.user.updated'), CTX));
    expect(updated.fields.Changed).toBe('custom' + '_attributes');
  });

  it('dsync.group.* and dsync.group.user_*: group name, user, directory', () => {
    const group = view(formatSlackMessage(fixture('dsync.group.created'), CTX));
    expect(group.fields.Group).toBeTruthy();
    expect(group.fields['Group ID']).toMatch(/^`directory_group_/);
    const added = view(formatSlackMessage(fixture('dsync.group.user_added'), CTX));
    expect(added.texts[0]).toBe('`dsync.group.user_added` · *raj.patel@example.com*');
    expect(added.fields).toMatchObject({ User: 'Raj Patel', Email: 'raj.patel@example.com', Group: 'Engineering' });
    const dir = view(formatSlackMessage(fixture('dsync.activated'), CTX));
    expect(dir.fields.Directory).toBeTruthy();
    expect(dir.fields.State).toBeTruthy();
    expect(dir.fields.Organization).toMatch(/^`org_/);
  });

  it('connection.*: type, state, organization', () => {
    const v = view(formatSlackMessage(fixture('connection.activated'), CTX));
    expect(v.header).toBe('SSO connection: activated');
    expect(v.fields.Type).toBeTruthy();
    expect(v.fields.State).toBe('`active`');
    expect(v.fields.Organization).toMatch(/^`org_/);
    expect(view(formatSlackMessage(fixture('connection.deactivated'), CTX)).header).toBe(
      ':warning: SSO connection: deactivated',
    );
  });

  it('connection.saml_certificate_renewal_required: expiry date, days left, warning at the top', () => {
    const msg = formatSlackMessage(fixture('connection.saml_certificate_renewal_required'), {
      ...CTX,
      mention: '<!here>',
    });
    const v = view(msg);
    expect(v.header).toBe(':warning: SSO connection: SAML certificate renewal required');
    expect(v.texts[0]).toBe('<!here> :warning: *The SAML certificate expires in 13 days* (2026-12-04T09:00:00.000Z)');
    expect(v.fields).toEqual({
      Connection: '`conn_01H7W6V0NJ165NSC47F6Z2MBGQ`',
      Organization: '`org_01H7SS34ZSYKP6HGNX3JYF5MB6`',
      Certificate: '`RequestSigning`',
      Expires: '2026-12-04T09:00:00.000Z',
      'Days until expiry': '13',
      Expired: 'No',
    });
    const expired = formatSlackMessage(
      event('connection.saml_certificate_renewal_required', {
        ...FIXTURES['connection.saml_certificate_renewal_required'].data,
        certificate: { certificate_type: 'ResponseSigning', expiry_date: '2026-11-01T00:00:00.000Z', is_expired: true },
        days_until_expiry: 0,
      }),
      CTX,
    );
    expect(view(expired).texts[0]).toBe(':warning: *The SAML certificate has expired* (2026-11-01T00:00:00.000Z)');
    expect(view(expired).fields.Expired).toBe('Yes');
    const renewed = view(formatSlackMessage(fixture('connection.saml_certificate_renewed'), CTX));
    expect(renewed.fields).toMatchObject({
      Expires: '2029-11-20T12:09:58.000Z',
      'Renewed at': '2026-11-20T12:09:58.771Z',
    });
  });

  it('organization.*, organization_domain.* (state, failure reason), organization_membership.*', () => {
    const org = view(formatSlackMessage(fixture('organization.created'), CTX));
    expect(org.fields.Organization).toBeTruthy();
    expect(org.fields['Organization ID']).toMatch(/^`org_/);
    const failed = view(formatSlackMessage(fixture('organization_domain.verification_failed'), CTX));
    expect(failed.header).toBe(':warning: Organization domain: verification failed');
    expect(failed.fields).toMatchObject({
      Domain: 'labs.example.com',
      State: '`failed`',
      'Failure reason': 'domain' + '_verification_period_expired',
      Verification: '`dns`',
    });
    const verified = view(formatSlackMessage(fixture('organization_domain.verified'), CTX));
    expect(verified.fields.State).toBe('`verified`');
    const membership = view(formatSlackMessage(fixture('organization_membership.created'), CTX));
    expect(membership.fields.User).toMatch(/^`user_/);
    expect(membership.fields.Role).toBeTruthy();
    expect(membership.fields.Status).toBeTruthy();
  });

  it('invitation.* and user.*', () => {
    const inv = view(formatSlackMessage(fixture('invitation.created'), CTX));
    expect(inv.fields).toMatchObject({
      Email: 'noor.haddad@example.com',
      State: '`pending`',
      'Invited by': '`user_01H9J6DAK05TNE3GKRD0BTC6H0`',
      Expires: '2026-11-27T14:02:07.552Z',
    });
    const user = view(formatSlackMessage(fixture('user.created'), CTX));
    expect(user.fields.Name).toBeTruthy();
    expect(user.fields.Email).toBe('amara.okafor@example.com');
    expect(user.fields['Email verified']).toMatch(/^(Yes|No)$/);
  });

  it('session.created with an impersonator: warning section at the top, who, whom and why', () => {
    const msg = formatSlackMessage(fixture('session.created'), { ...CTX, mention: '<@U123ABC>' });
    const v = view(msg);
    expect(msg.blocks.map((b) => b.type)).toEqual(['header', 'section', 'section', 'context']);
    expect(v.header).toBe(':rotating_light: Session: created');
    expect(v.texts[0]).toBe(
      '<@U123ABC> :rotating_light: *Impersonated session*: dana.whitfield@example.org is impersonating user ' +
        '`user_01M7W1AQRWR246B0P4EYMB471X`\n*Reason:* Investigating a billing export issue reported in ticket #4821.',
    );
    // The mention is in the top section only.
    expect(v.texts[1]).toBe('`session.created` · *user_01M7W1AQRWR246B0P4EYMB471X*');
    expect(v.text.startsWith('<@U123ABC> session.created · ')).toBe(true);
    expect(v.fields).toMatchObject({ 'Auth method': '`impersonation`', Impersonator: 'dana.whitfield@example.org' });
    const revoked = view(formatSlackMessage(fixture('session.revoked'), CTX));
    expect(revoked.header).toBe('Session: revoked');
    expect(revoked.texts).toHaveLength(1);
    expect(revoked.fields.Status).toBe('`revoked`');
  });

  it('vault.*: actor, object, keys', () => {
    const v = view(formatSlackMessage(fixture('vault.dek.read'), CTX));
    expect(v.header).toBe('Vault: DEK read');
    expect(v.fields).toMatchObject({
      Actor: 'Production API key',
      Source: '`api`',
      'Key context': 'organization' + '_id: `org_01H7SS34ZSYKP6HGNX3JYF5MB6`',
    });
    expect(v.fields['Key IDs']).toMatch(/^`vault_key_.*`, `vault_key_.*`$/);
    const byok = view(formatSlackMessage(fixture('vault.byok_key.verification_completed'), CTX));
    expect(byok.fields['Key provider']).toBeTruthy();
    expect(byok.fields.Verified).toMatch(/^(Yes|No)$/);
  });

  it('api_key.*: name, owner, permissions, never the obfuscated value', () => {
    const msg = formatSlackMessage(fixture('api_key.created'), CTX);
    expect(view(msg).fields).toEqual({
      Name: 'Data warehouse sync',
      'API key ID': '`api_key_01M7W3NHWMJQ9170KYR6E0FQE0`',
      Owner: '`organization` `org_01H7SS34ZSYKP6HGNX3JYF5MB6`',
      Permissions: '`reports:read`, `users:read`',
    });
    expect(JSON.stringify(msg)).not.toContain('Q7vX');
    expect(view(msg).context).toContain('By: Priya Raman (dashboard)');
  });

  it('flag.*, role.*, organization_role.*, permission.*, group.*', () => {
    const flag = view(formatSlackMessage(fixture('flag.created'), CTX));
    expect(flag.fields).toMatchObject({ Flag: 'Advanced Audit Logging', Slug: '`advanced-audit-logging`' });
    expect(view(formatSlackMessage(fixture('role.created'), CTX)).fields.Role).toBeTruthy();
    const orgRole = view(formatSlackMessage(fixture('organization_role.created'), CTX));
    expect(orgRole.fields.Role).toBeTruthy();
    expect(orgRole.fields.Organization).toMatch(/^`org_/);
    expect(view(formatSlackMessage(fixture('permission.created'), CTX)).fields.Slug).toBeTruthy();
    const group = view(formatSlackMessage(fixture('group.created'), CTX));
    expect(group.fields.Group).toBeTruthy();
    const member = view(formatSlackMessage(fixture('group.member_added'), CTX));
    expect(member.fields['Group ID']).toBeTruthy();
    expect(member.fields.Membership).toBeTruthy();
  });

  it('password_reset.*, magic_auth.*, email_verification.*: email, user, expiry', () => {
    for (const type of ['password_reset.created', 'magic_auth.created', 'email_verification.created'] as const) {
      const v = view(formatSlackMessage(fixture(type), CTX));
      expect(Object.keys(v.fields)).toEqual(['Email', 'User', 'Expires', 'ID']);
    }
  });

  it('pipes.*: provider, state, user', () => {
    const v = view(formatSlackMessage(fixture('pipes.connected_account.reauthorization_needed'), CTX));
    expect(v.header).toBe(':warning: Pipes: connected account reauthorization needed');
    expect(v.fields.Provider).toBeTruthy();
    expect(v.fields.State).toBe('`needs_reauthorization`');
    expect(v.fields.User).toMatch(/^`user_/);
  });

  it('an unknown event type: generic message with a few top-level scalars, never nested data', () => {
    const msg = formatSlackMessage(
      event('widget.exploded', {
        name: 'Big red button',
        pieces: 42,
        armed: false,
        nested: { deep: 'NESTED_VALUE' },
        list: [{ a: 1 }],
        empty: '',
        nothing: null,
      }),
      { ...CTX, title: 'Custom title' },
    );
    expect(view(msg)).toEqual({
      text: 'widget.exploded · event_TEST · 2026-11-20T10:00:00.000Z',
      header: 'Custom title',
      texts: ['`widget.exploded`'],
      fields: { name: 'Big red button', pieces: '42', armed: 'false' },
      context: [
        'Rule: *security-alerts*',
        'Destination: security',
        'Event: `event_TEST`',
        'Time: 2026-11-20T10:00:00.000Z',
      ],
    });
    expect(JSON.stringify(msg)).not.toContain('NESTED_VALUE');
    const many = formatSlackMessage(
      event('widget.big', Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, `v${i}`]))),
      CTX,
    );
    expect(Object.keys(view(many).fields)).toHaveLength(8);
    expect(view(formatSlackMessage(event('widget.exploded', {}), CTX)).header).toBe('WorkOS event: widget.exploded');
  });

  it('spills fields beyond ten into another section', () => {
    const msg = formatSlackMessage(
      event('authentication.sso_failed', {
        type: 'sso',
        status: 'failed',
        email: 'a@example.com',
        user_id: 'user_1',
        ip_address: '192.0.2.1',
        user_agent: 'ua',
        error: { code: 'c', message: 'm' },
        verdict: 'block',
        action: 'login',
        control: 'bot_detection',
        blocklist_type: 'ip_address',
        radar_detection_id: 'detection_1',
        sso: { connection_id: 'conn_1', organization_id: 'org_1', session_id: 's' },
      }),
      CTX,
    );
    const sections = msg.blocks.filter(isSection);
    expect(sections.map((s) => s.fields?.length)).toEqual([10, 4]);
    expectWithinLimits(msg);
  });
});

// ---------------------------------------------------------------------------
// Every catalog type

describe('formatSlackMessage: every catalog type', () => {
  it.each(EVENT_TYPES.map((t) => [t]))('%s formats within limits, text names type, id and time', (type) => {
    const e = fixture(type);
    const msg = formatSlackMessage(e, { ...CTX, mention: '<!here>' });
    expectWithinLimits(msg);
    expectTextNamesEvent(msg, e);
    expect(msg.text.startsWith('<!here> ')).toBe(true);
    expect(msg.blocks[0]!.type).toBe('header');
    const top = msg.blocks.find(isSection);
    expect(top?.text?.text.startsWith('<!here> ')).toBe(true);
    expect(allTexts(msg).filter((t) => t.includes('<!here>'))).toHaveLength(2);
    const context = msg.blocks.at(-1)!;
    expect(context.type).toBe('context');
    expect(JSON.stringify(context)).toContain('Rule: *security-alerts*');
    expect(JSON.stringify(context)).toContain(e.id);
    expect(JSON.stringify(context)).toContain(e.created_at);
    // A family formatter, not the generic one: at least one labelled fact.
    expect(msg.blocks.filter(isSection).some((s) => (s.fields?.length ?? 0) > 0)).toBe(true);
  });

  const ODD_VALUES: [string, unknown][] = [
    ['null', null],
    ['number', 12345],
    ['boolean', true],
    ['object', { a: { b: 'c' } }],
    ['array', [1, 'two', { three: 3 }]],
    ['huge string', '&<>*_~`'.repeat(3_000)],
  ];

  it.each(ODD_VALUES)('never throws and stays within limits when every field is %s', (_name, odd) => {
    for (const type of EVENT_TYPES) {
      const data = FIXTURES[type].data as Record<string, unknown>;
      const weird = Object.fromEntries(Object.keys(data).map((k) => [k, odd]));
      const e = event(type, weird);
      const msg = formatSlackMessage(e, CTX);
      expectWithinLimits(msg);
      expectTextNamesEvent(msg, e);
    }
  });

  it('never throws on a malformed envelope', () => {
    const bad: unknown[] = [
      null,
      undefined,
      42,
      'x',
      [],
      {},
      { event: 42, id: {}, created_at: [], data: 'nope' },
      { event: 'user.created', id: 'e', created_at: 't', data: null },
      { event: 'user.created', id: 'e', created_at: 't', data: [1, 2] },
      { event: 'x'.repeat(10_000), id: 'y'.repeat(10_000), created_at: 'z'.repeat(10_000), data: {} },
    ];
    for (const b of bad) {
      const msg = formatSlackMessage(asUnknown(b), { ...CTX, title: 'T'.repeat(500) });
      expectWithinLimits(msg);
    }
  });

  it('cuts long values visibly', () => {
    const msg = formatSlackMessage(
      event('authentication.password_failed', { error: { code: 'x', message: 'm'.repeat(5_000) } }),
      { ...CTX, title: 'T'.repeat(500) },
    );
    expect(view(msg).header).toHaveLength(150);
    expect(view(msg).header!.endsWith('…')).toBe(true);
    expect(view(msg).fields.Error!.endsWith('…')).toBe(true);
    expectWithinLimits(msg);
  });
});

// ---------------------------------------------------------------------------
// Escaping

describe('escaping untrusted text', () => {
  const HOSTILE = [
    '<!channel>',
    '<!here|here>',
    '<@U0ADMIN>',
    '<https://evil.example|click>',
    '*bold*',
    '_italic_',
    '~strike~',
    '`code`',
    '&lt;already escaped&gt;',
  ];
  const hostile = HOSTILE.join(' ');

  function expectInert(msg: SlackMessage): void {
    for (const text of allTexts(msg)) {
      // No `<` at all: no mention, no link, no special command can be formed.
      expect(text).not.toMatch(/[<>]/);
      for (const h of ['*bold*', '_italic_', '~strike~', '`code`']) expect(text).not.toContain(h);
      // Already-escaped input is escaped again, so it shows literally.
      expect(text).not.toMatch(/&lt;already/);
    }
    const joined = allTexts(msg).join('\n');
    expect(joined).toContain('&amp;lt;already escaped&amp;gt;');
    expect(joined).toContain(`&lt;!channel&gt;`);
    expect(joined).toContain(`${ZWSP}*${ZWSP}bold${ZWSP}*${ZWSP}`);
    expect(joined).toContain(`${ZWSP}_${ZWSP}italic${ZWSP}_${ZWSP}`);
  }

  it('escapeMrkdwn escapes &, < and > (and nothing else)', () => {
    expect(escapeMrkdwn('a & b <!channel> <https://x|y> *z*')).toBe(
      'a &amp; b &lt;!channel&gt; &lt;https://x|y&gt; *z*',
    );
    expect(escapeMrkdwn('&lt;')).toBe('&amp;lt;');
  });

  it('literal keeps ordinary values copyable and neutralizes formatting', () => {
    expect(literal('first_last@example.com')).toBe('first_last@example.com');
    expect(literal('org_01H7SS34')).toBe('org_01H7SS34');
    expect(literal('_x_')).toBe(`${ZWSP}_${ZWSP}x${ZWSP}_${ZWSP}`);
    expect(literal('a*b')).toBe(`a${ZWSP}*${ZWSP}b`);
    expect(literal('hi @channel')).toBe(`hi @${ZWSP}channel`);
    expect(literal('ops@here.example')).toBe('ops@here.example');
  });

  it('hostile names, emails, user agents and error messages in a family message', () => {
    const msg = formatSlackMessage(
      event('authentication.password_failed', {
        type: hostile,
        email: `${hostile}@example.com`,
        user_id: hostile,
        ip_address: hostile,
        user_agent: hostile,
        error: { code: hostile, message: hostile },
      }),
      CTX,
    );
    expectInert(msg);
    expectWithinLimits(msg);
  });

  it('hostile directory user names', () => {
    const msg = formatSlackMessage(
      event('dsync.user.created', { first_name: '<!channel>', last_name: hostile, email: hostile, state: hostile }),
      CTX,
    );
    expect(view(msg).fields.Name).toContain('&lt;!channel&gt;');
    expectInert(msg);
  });

  it('hostile impersonator and reason in the warning section', () => {
    const msg = formatSlackMessage(
      event('session.created', { user_id: hostile, impersonator: { email: hostile, reason: hostile } }),
      CTX,
    );
    expect(view(msg).texts[0]).toContain('Impersonated session');
    expectInert(msg);
  });

  it('hostile event type, id, time, data keys and rule/destination names (generic formatter)', () => {
    const msg = formatSlackMessage(
      asUnknown({ event: hostile, id: hostile, created_at: hostile, data: { [hostile]: hostile, ok: hostile } }),
      { rule: hostile, destination: hostile },
    );
    expectInert(msg);
    expectWithinLimits(msg);
  });

  it('the configured mention is kept verbatim (trusted)', () => {
    const msg = formatSlackMessage(fixture('user.created'), { ...CTX, mention: '<!subteam^S123>' });
    expect(msg.text.startsWith('<!subteam^S123> ')).toBe(true);
    expect(msg.blocks.find(isSection)?.text?.text.startsWith('<!subteam^S123> ')).toBe(true);
  });

  it('digests escape group types, top values and samples', () => {
    const msg = formatDigest(
      [
        {
          type: hostile,
          count: 3,
          topValues: { field: hostile, values: [{ value: hostile, count: 3 }] },
          samples: [event('user.created', { email: hostile, first_name: hostile })],
        },
      ],
      60,
      { destination: hostile, rules: [hostile] },
    );
    expectInert(msg);
    expectWithinLimits(msg);
  });
});

// ---------------------------------------------------------------------------
// Invisible and layout characters

describe('invisible and layout characters', () => {
  const BIDI = '\u202A\u202B\u202C\u202D\u202E\u2066\u2067\u2068\u2069';
  const FORMAT = '\u200B\u200C\u200E\u200F\u2060\uFEFF\u00AD\u061C\u{E0041}';
  /** Bidi or other format characters, except the escaper's ZWSP and ZWJ (checked separately). */
  const INVISIBLE = /[\u202A-\u202E\u2066-\u2069\u200C\u200E\u200F\u2060\uFEFF\u00AD\u061C\u{E0000}-\u{E007F}]/u;

  it('literal and code drop bidi overrides/isolates and other format characters', () => {
    // "invoice‮fdp.exe" would display as "invoiceexe.pdf".
    expect(literal('invoice\u202Efdp.exe')).toBe('invoicefdp.exe');
    expect(literal(`a${BIDI}b${FORMAT}c`)).toBe('abc');
    expect(code('user_01H9J6DAK05TNE3GKRD0BTC6H0\u202E')).toBe('`user_01H9J6DAK05TNE3GKRD0BTC6H0`');
    expect(code('\u2066org_01H7SS34ZSYKP6HGNX3JYF5MB6\u2069')).toBe('`org_01H7SS34ZSYKP6HGNX3JYF5MB6`');
    // Control characters go too; a ZWSP in the payload is not kept (only the escaper's own).
    expect(literal('a\u0000b\u001Bc\u007Fd\u0085e')).toBe('abcd e');
    expect(literal('sk\u200B_live')).toBe('sk_live');
  });

  it('keeps emoji sequences joined with ZWJ intact', () => {
    expect(literal('👩\u200D💻 on call')).toBe('👩\u200D💻 on call');
    expect(literal('🏳\uFE0F\u200D🌈')).toBe('🏳\uFE0F\u200D🌈');
    expect(literal('a\u200Db')).toBe('ab');
  });

  it('line breaks and tabs become single spaces: one value, one line', () => {
    expect(literal('a\nb\r\nc\td\u2028e\u2029f')).toBe('a b c d e f');
    expect(literal('a \n\n \t b')).toBe('a b');
    expect(code('user_1\nuser_2')).toBe('user_1 user_2');
  });

  it('a payload cannot draw a fake "Rule:" line or reverse text in a family message', () => {
    const fake = 'Chrome\n\nRule: *no-alerts*\nDestination: muted';
    const msg = formatSlackMessage(
      event('authentication.password_failed', {
        email: `\u202Emoc.elpmaxe@nimda\u202C`,
        user_agent: fake,
        error: { code: 'x', message: `line one\nline two\t${BIDI}` },
      }),
      CTX,
    );
    const v = view(msg);
    expect(v.fields['User agent']).toBe(`Chrome Rule: ${ZWSP}*${ZWSP}no-alerts${ZWSP}*${ZWSP} Destination: muted`);
    expect(v.fields.Error).toBe('line one line two ');
    expect(v.fields.Email).toBe('moc.elpmaxe@nimda');
    expect(v.texts[0]).toBe('`authentication.password_failed` · *moc.elpmaxe@nimda*');
    for (const t of allTexts(msg)) expect(t).not.toMatch(INVISIBLE);
    // Only our own line breaks: between a field's label and value.
    for (const s of msg.blocks.filter(isSection)) for (const f of s.fields ?? []) expect(f.text.split('\n')).toHaveLength(2);
  });

  it('impersonation reason, actor name and the generic formatter stay on their lines', () => {
    const session = formatSlackMessage(
      event(
        'session.created',
        { user_id: 'user_1', impersonator: { email: 'a@example.com', reason: `ok\n*Reason:* none\n${BIDI}` } },
        { context: { actor: { name: 'Eve\nRule: *x*', source: 'api\u202E' } } },
      ),
      CTX,
    );
    const warning = view(session).texts[0]!;
    expect(warning.split('\n')).toHaveLength(2);
    expect(warning.endsWith(`*Reason:* ok ${ZWSP}*${ZWSP}Reason:${ZWSP}*${ZWSP} none `)).toBe(true);
    expect(view(session).context).toContain(`By: Eve Rule: ${ZWSP}*${ZWSP}x${ZWSP}*${ZWSP} (api)`);
    const generic = formatSlackMessage(event('custom.thing', { 'na\nme': 'x\ty\nz', [`k${BIDI}`]: `v${FORMAT}` }), CTX);
    expect(view(generic).fields).toEqual({ 'na me': 'x y z', k: 'v' });
    for (const msg of [session, generic]) for (const t of allTexts(msg)) expect(t).not.toMatch(INVISIBLE);
  });

  it('a value of nothing but invisible characters shows as no value', () => {
    const msg = formatSlackMessage(event('user.created', { email: BIDI, first_name: FORMAT, id: 'user_1' }), CTX);
    expect(view(msg).fields).toEqual({ 'User ID': '`user_1`' });
    expect(view(msg).texts[0]).toBe('`user.created` · *user_1*');
  });
});

// ---------------------------------------------------------------------------
// Secrets

describe('secrets are never shown', () => {
  const SECRETS = {
    token: 'SECRET_TOKEN_1',
    code: 'SECRET_CODE_2',
    secret: 'SECRET_SECRET_3',
    password: 'SECRET_PASSWORD_4',
    client_secret: 'SECRET_CLIENT_5',
    verification_token: 'SECRET_VERIFY_6',
    obfuscated_value: 'SECRET_OBFUSCATED_7',
    accept_invitation_url: 'https://app.example/invite?token=SECRET_URL_8',
    password_reset_url: 'https://app.example/reset?token=SECRET_URL_9',
    magic_auth_code: 'SECRET_MAGIC_10',
  };
  const values = Object.values(SECRETS);

  function expectNoSecrets(msg: SlackMessage): void {
    const json = JSON.stringify(msg);
    for (const v of values) expect(json).not.toContain(v);
    expect(json).not.toContain('SECRET_');
  }

  it.each(EVENT_TYPES.map((t) => [t]))('%s with token, code, secret, URL fields', (type) => {
    const data = { ...(FIXTURES[type].data as Record<string, unknown>), ...SECRETS };
    expectNoSecrets(formatSlackMessage(event(type, data), CTX));
  });

  it('an unknown type carrying secrets, also nested', () => {
    const msg = formatSlackMessage(
      event('custom.thing', { ...SECRETS, nested: { ...SECRETS }, name: 'visible' }, { context: { actor: SECRETS } }),
      CTX,
    );
    expectNoSecrets(msg);
    expect(view(msg).fields).toEqual({ name: 'visible' });
  });

  it('invitation / magic auth / password reset fixtures with tokens and codes', () => {
    const types = ['invitation.created', 'magic_auth.created', 'password_reset.created'] as const;
    for (const type of types) {
      const e = makeEvent(type);
      const msg = formatSlackMessage(asUnknown({ ...e, data: { ...e.data, ...SECRETS } }), CTX);
      expectNoSecrets(msg);
      expect(view(msg).fields.Email).toBeTruthy();
    }
  });

  it('digest samples never show secrets', () => {
    const samples = EVENT_TYPES.slice(0, 20).map((t) => event(t, { ...(FIXTURES[t].data as object), ...SECRETS }));
    const msg = formatDigest(
      samples.map((s) => ({ type: s.event, count: 1, topValues: { field: 'x', values: [] }, samples: [s] })),
      60,
      { destination: 'security', rules: ['r'] },
    );
    expectNoSecrets(msg);
  });
});

// ---------------------------------------------------------------------------
// Digests and key fields

function group(type: EventType | string, count: number, samples: UnknownEvent[] = []): DigestGroup {
  return { type, count, topValues: { field: 'organization_id', values: [] }, samples };
}

describe('formatDigest', () => {
  it('one type: exact count in the header, top values, the first few events compactly', () => {
    const samples = Array.from({ length: 5 }, (_, i) =>
      event(
        'authentication.password_failed',
        { ...FIXTURES['authentication.password_failed'].data, ip_address: `203.0.113.${i}` },
        { id: `event_${i}` },
      ),
    );
    const msg = formatDigest(
      [
        {
          type: 'authentication.password_failed',
          count: 312,
          topValues: {
            field: 'ip_address',
            values: [
              { value: '203.0.113.58', count: 300 },
              { value: '198.51.100.7', count: 12 },
            ],
          },
          samples,
        },
      ],
      60,
      { destination: 'security', rules: ['failed-logins'], mention: '<!here>' },
    );
    expectWithinLimits(msg);
    expect(msg.blocks.map((b) => b.type)).toEqual(['header', 'section', 'section', 'context']);
    expect((msg.blocks[0] as HeaderBlock).text.text).toBe('312 × authentication.password_failed in the last 60 s');
    expect((msg.blocks[1] as SectionBlock).text?.text).toBe('<!here> *312 events* of *1 type* in the last 60 s');
    const body = (msg.blocks[2] as SectionBlock).text!.text.split('\n');
    expect(body[0]).toBe('*312 ×* `authentication.password_failed`');
    expect(body[1]).toBe('Top ip_address: `203.0.113.58` (300), `198.51.100.7` (12)');
    expect(body.slice(2)).toHaveLength(3); // the first three samples
    expect(body[2]).toBe(
      '• `event_0` · 2026-11-20T10:00:00.000Z — Method: password · Email: priya.raman@example.com · ' +
        'User: `user_01H9J6DAK05TNE3GKRD0BTC6H0` · IP address: `203.0.113.0` · User agent: Mozilla/5.0 ' +
        '(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 · ' +
        'Error code: `invalid_credentials` · Error: Invalid credentials.',
    );
    expect(JSON.stringify(msg.blocks[3])).toContain('Rule: *failed-logins*');
    expect(msg.text).toBe('<!here> 312 WorkOS events in the last 60 s: 312 × authentication.password_failed');
  });

  it('89 types: every count exact and rendered, total exact, limits respected', () => {
    const groups = EVENT_TYPES.map((t, i) => group(t, (i + 1) * 1_013 + 7, [fixture(t)]));
    const total = groups.reduce((s, g) => s + g.count, 0);
    const msg = formatDigest(groups, 300, { destination: 'security', rules: ['a', 'b'], title: 'Hourly digest' });
    expectWithinLimits(msg);
    expect((msg.blocks[0] as HeaderBlock).text.text).toBe('Hourly digest');
    const fmt = (n: number) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    const body = msg.blocks
      .filter(isSection)
      .map((s) => s.text?.text ?? '')
      .join('\n');
    expect(body).toContain(`*${fmt(total)} events* of *89 types* in the last 300 s`);
    for (const g of groups) expect(body).toMatch(new RegExp(`${fmt(g.count)} ×\\*? \`${g.type.replace(/\./g, '\\.')}\``));
    // Largest groups first, in detail.
    expect(msg.blocks.filter(isSection)[1]!.text!.text).toContain(`*${fmt(groups[88]!.count)} ×* \`vault.names.listed\``);
  });

  it('thousands of types: block limit kept, the rest summed up exactly', () => {
    const groups = Array.from({ length: 3_000 }, (_, i) => group(`custom.type_${'x'.repeat(80)}_${i}`, i + 1));
    const total = groups.reduce((s, g) => s + g.count, 0);
    const msg = formatDigest(groups, 60, { destination: 'security', rules: ['r'] });
    expectWithinLimits(msg);
    expect(msg.blocks).toHaveLength(50);
    const body = msg.blocks
      .filter(isSection)
      .map((s) => s.text?.text ?? '')
      .join('\n');
    expect(body).toContain(`*${total.toLocaleString('en-US')} events* of *3,000 types*`);
    const m = /… and ([\d,]+) more types \(([\d,]+) events\)/.exec(body);
    expect(m).not.toBeNull();
    // Every group is counted exactly once: listed ones + the summed rest.
    const listed = [...body.matchAll(/^\*?([\d,]+) ×/gm)].map((x) => Number(x[1]!.replace(/,/g, '')));
    const rest = Number(m![2]!.replace(/,/g, ''));
    expect(listed.reduce((s, n) => s + n, 0) + rest).toBe(total);
    expect(listed.length + Number(m![1]!.replace(/,/g, ''))).toBe(3_000);
  });

  it('malformed groups do not throw', () => {
    const msg = formatDigest(
      [
        { type: 'user.created', count: Number.NaN, topValues: undefined, samples: undefined } as unknown as DigestGroup,
        { type: 42, count: -5, topValues: { field: 'x', values: [null, { value: 1 }] }, samples: [null] } as unknown as DigestGroup,
      ],
      Number.NaN,
      { destination: 'd', rules: [] },
    );
    expectWithinLimits(msg);
  });
});

describe('keyFieldOf', () => {
  it.each([
    ['authentication.password_failed', { field: 'ip_address', value: '203.0.113.58' }],
    ['authentication.radar_risk_detected', { field: 'ip_address', value: '198.51.100.142' }],
    ['user.created', { field: 'email', value: 'amara.okafor@example.com' }],
    ['dsync.user.created', { field: 'email', value: 'lena.fischer@example.com' }],
    ['dsync.group.user_added', { field: 'email', value: 'raj.patel@example.com' }],
    ['invitation.created', { field: 'email', value: 'noor.haddad@example.com' }],
    ['connection.saml_certificate_renewal_required', { field: 'organization_id', value: 'org_01H7SS34ZSYKP6HGNX3JYF5MB6' }],
    ['organization_domain.verification_failed', { field: 'organization_id', value: 'org_01H7SS34ZSYKP6HGNX3JYF5MB6' }],
    ['api_key.created', { field: 'organization_id', value: 'org_01H7SS34ZSYKP6HGNX3JYF5MB6' }],
    ['vault.dek.read', { field: 'actor_name', value: 'Production API key' }],
  ] as const)('%s → %o', (type, expected) => {
    expect(keyFieldOf(fixture(type))).toEqual(expected);
  });

  it('every catalog type: a consistent field or undefined, never throws', () => {
    for (const type of EVENT_TYPES) {
      const k = keyFieldOf(fixture(type));
      if (k !== undefined) {
        expect(typeof k.field).toBe('string');
        expect(typeof k.value).toBe('string');
      }
      expect(keyFieldOf(event(type, null))).toBeUndefined();
    }
    expect(keyFieldOf(event('custom.thing', { organization_id: 'org_9' }))).toEqual({
      field: 'organization_id',
      value: 'org_9',
    });
    expect(keyFieldOf(asUnknown(null))).toBeUndefined();
  });
});

describe('alertsMessage (operational alerts)', () => {
  const dest = { name: 'ops-alerts', type: 'slack' as const, url: 'https://hooks.slack.test/x', digestWindowSeconds: 1, maxPending: 10_000, timeoutMs: 1000, retry: { maxAttempts: 3, retryDelaySeconds: 1 }, circuit: null, maxPerSecond: null };

  it('sends every section as verbatim mrkdwn (no auto-linking), cut visibly at Slack\'s 3,000-character section limit', () => {
    const long = `:warning: ${'x'.repeat(5_000)}`;
    const message = alertsMessage(dest as SlackDestination, [':warning: *3* new dead letters for *crm* (http_400).', long]);
    expect(message.blocks).toHaveLength(2);
    for (const block of message.blocks as SectionBlock[]) {
      expect(block.type).toBe('section');
      expect(block.text).toMatchObject({ type: 'mrkdwn', verbatim: true });
      expect((block.text?.text ?? '').length).toBeLessThanOrEqual(3_000);
    }
    expect((message.blocks[1] as SectionBlock).text?.text).toMatch(/…$/);
  });
});
