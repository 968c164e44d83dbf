/**
 * Slack messages for WorkOS events: one message per event
 * (`formatSlackMessage`) or one per digest window (`formatDigest`).
 *
 * Layout of a single-event message:
 *   header   — the title (`ctx.title` or e.g. "Authentication: password failed")
 *   section  — only when something must stand out (impersonated session,
 *              expiring SAML certificate): a warning, with the mention
 *   section  — mention (if no warning), `event.type` · subject, and the
 *              family's "label: value" facts as fields (ten per section)
 *   context  — rule, destination, event id, event time
 *
 * All payload text is cleaned (invisible characters, line breaks, secrets by
 * value: see `./redact`), escaped and neutralized (see `./escape`); sensitive
 * fields are never read (see `./read`); limits are enforced by the builders
 * (see `./blocks`).
 */
import type { KnownBlock } from '@slack/types';
import type { UnknownEvent } from '../../../events/catalog';
import { capBlocks, context, fieldSections, header, section } from './blocks';
import { code, literal, truncate } from './escape';
import { isRecord, textAt } from './read';
import { describe, titleOf, type Description } from './specs';
import type { SlackFormatContext, SlackMessage } from './types';

export type { SlackFormatContext, SlackMessage } from './types';
export { digestSampleLine, formatDigest, keyFieldOf, type DigestContext, type DigestGroup } from './digest';
export { escapeMrkdwn } from './escape';
export { redactSecrets, sanitize } from './redact';

const MAX_TEXT = 3_000;
/** Event type, id and time (the router accepts ids and types up to 256 characters). */
const MAX_NAME = 300;

function str(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}

/** "By: Jane (dashboard)" from the envelope's `context.actor`, when present. */
function actorOf(context: unknown): string {
  const name = textAt(context, 'actor.name') ?? textAt(context, 'actor.id');
  if (name === undefined) return '';
  const source = textAt(context, 'actor.source');
  return `By: ${literal(name, 200)}${source !== undefined ? ` (${literal(source, 50)})` : ''}`;
}

export function formatSlackMessage(event: UnknownEvent, ctx: SlackFormatContext): SlackMessage {
  return formatWithWarning(event, ctx).message;
}

/**
 * The message, and whether it carries a warning that must stand out (an
 * impersonated session, an expiring or expired SAML certificate): the outbox
 * sends such an event in a message of its own, never folded into a digest.
 */
export function formatWithWarning(event: UnknownEvent, ctx: SlackFormatContext): { message: SlackMessage; warning: boolean } {
  const e: Record<string, unknown> = isRecord(event) ? event : {};
  const type = str(e.event, '(unknown type)');
  const id = str(e.id, '(no id)');
  const time = str(e.created_at, '(no time)');
  const data = isRecord(e.data) ? e.data : {};

  let d: Description;
  try {
    d = describe(type, data);
  } catch {
    d = { fields: [] };
  }

  const defaultTitle = titleOf(type);
  const title =
    ctx.title ??
    (d.warning !== undefined && !defaultTitle.startsWith(':') ? `:rotating_light: ${defaultTitle}` : defaultTitle);
  let mention = ctx.mention ? `${ctx.mention} ` : '';
  const blocks: KnownBlock[] = [header(title)];
  if (d.warning !== undefined) {
    blocks.push(section(`${mention}${d.warning}`));
    mention = '';
  }
  const summary = `${mention}${code(type, MAX_NAME)}${d.subject !== undefined ? ` · ${d.subject}` : ''}`;
  blocks.push(...fieldSections(d.fields, summary));
  blocks.push(
    context([
      `Rule: *${literal(ctx.rule)}*`,
      `Destination: ${literal(ctx.destination)}`,
      `Event: ${code(id, MAX_NAME)}`,
      `Time: ${literal(time, MAX_NAME)}`,
      actorOf(e.context),
    ]),
  );

  const lead = ctx.mention ? `${ctx.mention} ` : '';
  const text = truncate(
    `${lead}${literal(type, MAX_NAME)} · ${literal(id, MAX_NAME)} · ${literal(time, MAX_NAME)}`,
    MAX_TEXT,
  );
  return { message: { text, blocks: capBlocks(blocks) }, warning: d.warning !== undefined };
}
