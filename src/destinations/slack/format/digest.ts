/**
 * Digest messages: many events of a window in one Slack message, grouped by
 * event type, with exact counts, the top values of each type's key field and
 * the first few events of each type in compact form.
 */
import type { KnownBlock } from '@slack/types';
import type { UnknownEvent } from '../../../events/catalog';
import { capBlocks, context, header, LIMITS, section } from './blocks';
import { code, literal, truncate } from './escape';
import { isRecord, textAt } from './read';
import { redactSecrets, sanitize, stripInvisible } from './redact';
import { describe, plainType } from './specs';
import type { SlackFormatContext, SlackMessage } from './types';

export interface DigestGroup {
  type: string;
  count: number;
  topValues: { field: string; values: { value: string; count: number }[] };
  /**
   * The first events of the group: events, or their lines as made by
   * `digestSampleLine` (kept instead of the events while they wait). A line is
   * re-checked before use (no `<`/`>`, no control or format character other
   * than the escaper's ZWSP, secrets redacted, length capped).
   */
  samples: readonly (UnknownEvent | string)[];
}

export type DigestContext = Omit<SlackFormatContext, 'rule'> & { rules: string[] };

// ---------------------------------------------------------------------------
// Key fields

/**
 * The field a digest groups top values by, per event type (first matching
 * prefix wins; the value is read from the first present path). One field name
 * per type, so a group's top values are always of the same field.
 */
const KEY_FIELDS: readonly (readonly [prefix: string, field: string, paths: readonly string[]])[] = [
  ['authentication.', 'ip_address', ['ip_address']],
  ['dsync.user.', 'email', ['email']],
  ['dsync.group.user_', 'email', ['user.email']],
  ['user.', 'email', ['email']],
  ['invitation.', 'email', ['email']],
  ['password_reset.', 'email', ['email']],
  ['magic_auth.', 'email', ['email']],
  ['email_verification.', 'email', ['email']],
  ['session.', 'user_id', ['user_id']],
  ['vault.byok_key.', 'organization_id', ['organization_id']],
  ['vault.', 'actor_name', ['actor_name', 'actor_id']],
  ['pipes.', 'provider', ['provider']],
  ['role.', 'slug', ['slug']],
  ['permission.', 'slug', ['slug']],
  ['flag.', 'slug', ['slug']],
  [
    '',
    'organization_id',
    [
      'organization_id',
      'organization_domain.organization_id',
      'connection.organization_id',
      'group.organization_id',
      'sso.organization_id',
      'owner.id',
    ],
  ],
];

/** Longest key value kept (values are counted, so keep them small; cleaned first, so redacted values count together). */
const MAX_KEY_VALUE = 200;

export function keyFieldOf(event: UnknownEvent): { field: string; value: string } | undefined {
  if (!isRecord(event) || typeof event.event !== 'string') return undefined;
  const type = event.event;
  const entry = KEY_FIELDS.find(([prefix]) => type.startsWith(prefix));
  if (entry === undefined) return undefined;
  const [, field, paths] = entry;
  for (const path of paths) {
    const value = textAt(event.data, path);
    if (value !== undefined) return { field, value: sanitize(value).slice(0, MAX_KEY_VALUE) };
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Rendering

const DETAILED_GROUPS = 10;
const SAMPLES_PER_GROUP = 3;
const TOP_VALUES = 5;
const SAMPLE_LINE = 500;
/** A section's text budget, leaving room for a closing "…" line. */
const SECTION_BUDGET = LIMITS.sectionText - 100;

function count(n: unknown): number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? Math.floor(n) : 0;
}

/** Exact integer with thousands separators: 12,345. */
function num(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function plural(n: number, word: string): string {
  return `${num(n)} ${word}${n === 1 ? '' : 's'}`;
}

function windowText(seconds: number): string {
  return Number.isFinite(seconds) ? `${num(Math.round(seconds))} s` : '? s';
}

function str(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}

/** Whole lines while they fit in `max`; then an ellipsis line. */
function joinLines(lines: readonly string[], max: number): string {
  let out = '';
  for (const line of lines) {
    const next = out === '' ? line : `${out}\n${line}`;
    if (next.length > max) return `${out}\n…`;
    out = next;
  }
  return out;
}

/**
 * An event's line in a digest (safe mrkdwn, one line):
 * "• `evt_…` · time — Label: value · Label: value" (whole facts only).
 */
export function digestSampleLine(event: UnknownEvent): string {
  const e: Record<string, unknown> = isRecord(event) ? event : {};
  const type = str(e.event, '');
  const data = isRecord(e.data) ? e.data : {};
  const d = describe(type, data);
  let line = `• ${code(str(e.id, '(no id)'))} · ${literal(str(e.created_at, '(no time)'))}`;
  if (d.warning !== undefined) line += ' :rotating_light:';
  let sep = ' — ';
  for (const f of d.fields) {
    const part = `${sep}${f.label}: ${f.value.replace(/\s*\n\s*/g, ' ')}`;
    if (line.length + part.length > SAMPLE_LINE) return `${line} …`;
    line += part;
    sep = ' · ';
  }
  return line;
}

/**
 * A line made earlier by `digestSampleLine` (it may have waited in storage):
 * checked again, since it goes into the message as is.
 */
function recheckLine(line: string): string {
  const clean = redactSecrets(stripInvisible(line, true)).replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return truncate(clean, SAMPLE_LINE + 10);
}

function groupSection(g: DigestGroup): string {
  const lines = [`*${num(count(g.count))} ×* ${code(str(g.type, '(unknown type)'))}`];
  const top = isRecord(g.topValues) && Array.isArray(g.topValues.values) ? g.topValues.values : [];
  const values = top.filter((v) => isRecord(v) && typeof v.value === 'string');
  if (values.length > 0) {
    const shown = values
      .slice(0, TOP_VALUES)
      .map((v) => `${code(v.value, 100)} (${num(count(v.count))})`)
      .join(', ');
    const more = values.length > TOP_VALUES ? ` +${values.length - TOP_VALUES} more` : '';
    lines.push(`Top ${literal(str(g.topValues.field, 'value'))}: ${shown}${more}`);
  }
  const samples: readonly unknown[] = Array.isArray(g.samples) ? g.samples.slice(0, SAMPLES_PER_GROUP) : [];
  lines.push(...samples.map((s) => (typeof s === 'string' ? recheckLine(s) : digestSampleLine(s as UnknownEvent))));
  return joinLines(lines, SECTION_BUDGET);
}

/**
 * Sections listing "count × type" for groups without a detailed section, in
 * at most `maxSections` sections; what does not fit is summed up exactly.
 */
function countSections(groups: readonly DigestGroup[], maxSections: number): string[] {
  const sections: string[] = [];
  let cur = '*Also:*';
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    const line = `${num(count(g.count))} × ${code(str(g.type, '(unknown type)'), 100)}`;
    if (cur.length + line.length + 1 <= SECTION_BUDGET) {
      cur += `\n${line}`;
      continue;
    }
    if (sections.length + 1 >= maxSections) {
      const rest = groups.slice(i);
      const events = rest.reduce((s, r) => s + count(r.count), 0);
      sections.push(`${cur}\n… and ${plural(rest.length, 'more type')} (${plural(events, 'event')})`);
      return sections;
    }
    sections.push(cur);
    cur = line;
  }
  sections.push(cur);
  return sections;
}

export function formatDigest(groups: DigestGroup[], windowSeconds: number, ctx: DigestContext): SlackMessage {
  const list = Array.isArray(groups) ? groups.filter(isRecord) : [];
  const sorted = [...list].sort((a, b) => count(b.count) - count(a.count));
  const total = sorted.reduce((s, g) => s + count(g.count), 0);
  const within = `in the last ${windowText(windowSeconds)}`;
  const only = sorted.length === 1 ? sorted[0] : undefined;

  const headerText =
    ctx.title ??
    (only !== undefined
      ? `${num(count(only.count))} × ${plainType(str(only.type, '(unknown type)'))} ${within}`
      : `${plural(total, 'WorkOS event')} (${plural(sorted.length, 'type')}) ${within}`);
  const mention = ctx.mention ? `${ctx.mention} ` : '';

  const blocks: KnownBlock[] = [
    header(headerText),
    section(`${mention}*${plural(total, 'event')}* of *${plural(sorted.length, 'type')}* ${within}`),
  ];
  for (const g of sorted.slice(0, DETAILED_GROUPS)) blocks.push(section(groupSection(g)));
  const rest = sorted.slice(DETAILED_GROUPS);
  if (rest.length > 0) {
    const room = LIMITS.blocks - blocks.length - 1;
    for (const text of countSections(rest, room)) blocks.push(section(text));
  }
  const rules = Array.isArray(ctx.rules) ? ctx.rules : [];
  blocks.push(
    context([
      `${rules.length === 1 ? 'Rule' : 'Rules'}: ${rules.map((r) => `*${literal(String(r))}*`).join(', ') || '—'}`,
      `Destination: ${literal(String(ctx.destination))}`,
      `Window: ${windowText(windowSeconds)}`,
    ]),
  );

  const byType = sorted.map((g) => `${num(count(g.count))} × ${literal(str(g.type, '(unknown type)'))}`).join(', ');
  const text = truncate(`${mention}${plural(total, 'WorkOS event')} ${within}: ${byType}`, 2_000);
  return { text, blocks: capBlocks(blocks) };
}
