/**
 * Presentation for one Slack destination: what is kept of each event while it
 * waits in the outbox (the message it would be sent as alone, its digest
 * line, its key value), and the digest of many such entries. Depends only on
 * the formatters; the outbox depends on it, never the other way round.
 */
import type { SlackDestination } from '../../config/router-config';
import type { UnknownEvent } from '../../events/catalog';
import { Matcher } from '../../routing/matcher';
import { type DigestGroup, type SlackMessage, digestSampleLine, formatDigest, formatWithWarning, keyFieldOf } from './format';
import { section } from './format/blocks';

/** What the outbox keeps of one event: only what a message needs (plus the raw body, for dead letters). */
export interface RenderedEntry {
  /** The message this event is sent as when it goes out alone (omitted when very large: a digest of one is sent instead). */
  single?: string;
  /** Its line in a digest. */
  sample: string;
  keyField?: string;
  keyValue?: string;
  /** A warning stands out in its message (impersonation, SAML certificate): sent alone, never in a digest. */
  notable?: boolean;
}

/** A rendered single message larger than this is not kept; the event goes out as a digest of one. */
const MAX_SINGLE_BYTES = 16_384;
const SAMPLES_PER_TYPE = 3;
const TOP_VALUES = 5;

export function mentionFor(dest: SlackDestination, rules: readonly string[], type: string): string | undefined {
  const m = dest.mention;
  if (m === undefined) return undefined;
  if (m.rules.length === 0 && m.events.length === 0) return m.text;
  if (m.rules.some((r) => rules.includes(r))) return m.text;
  // The list as a rule reads it: `!` patterns exclude (a list of exclusions only selects every other name).
  if (m.events.length > 0 && Matcher.namesMatch(m.events, type)) return m.text;
  return undefined;
}

/** The event's single message for this destination, and whether it carries a warning. */
export function buildSlackMessage(dest: SlackDestination, event: UnknownEvent, rules: readonly string[]): ReturnType<typeof formatWithWarning> {
  const ctx: Parameters<typeof formatWithWarning>[1] = { rule: rules.join(', '), destination: dest.name };
  if (dest.title !== undefined) ctx.title = dest.title;
  const mention = mentionFor(dest, rules, event.event);
  if (mention !== undefined) ctx.mention = mention;
  return formatWithWarning(event, ctx);
}

export function renderEntry(dest: SlackDestination, event: UnknownEvent, rules: readonly string[]): RenderedEntry {
  const { message, warning } = buildSlackMessage(dest, event, rules);
  const single = JSON.stringify(message);
  const entry: RenderedEntry = { sample: digestSampleLine(event) };
  if (single.length <= MAX_SINGLE_BYTES) entry.single = single;
  if (warning) entry.notable = true;
  const key = keyFieldOf(event);
  if (key !== undefined) {
    entry.keyField = key.field;
    entry.keyValue = key.value;
  }
  return entry;
}

/** The event type operational alerts (src/alerts/notifier.ts) carry in an outbox, and in a dead letter should one be made. */
export const ALERT_EVENT_TYPE = 'router.alert';
/** At most this many waiting alerts go out in one message (a section each; Slack allows 50 blocks). */
export const MAX_ALERTS_PER_MESSAGE = 20;

/** An operational alert: its (already escaped) mrkdwn as a message of its own; `sample` keeps the text. */
export function renderAlert(dest: SlackDestination, text: string): RenderedEntry {
  return { single: JSON.stringify(alertsMessage(dest, [text])), sample: text };
}

/** The mention an alerts message carries: alerts are events of type `router.alert` that no rule routed. */
function alertMention(dest: SlackDestination): string | undefined {
  return mentionFor(dest, [], ALERT_EVENT_TYPE);
}

/**
 * Alerts that waited together (Slack was down, or they came within one
 * window): one message, one section per alert in the order they were raised.
 * Never folded into an event digest, which would only count them.
 */
export function alertsMessage(dest: SlackDestination, texts: readonly string[]): SlackMessage {
  const mention = alertMention(dest);
  const lead = mention !== undefined ? `${mention} ` : '';
  return {
    text: `${lead}${texts.join('\n')}`,
    // Like every message: `verbatim` mrkdwn (no auto-linking), cut visibly at Slack's section limit.
    blocks: texts.map((text, i) => section(i === 0 ? `${lead}${text}` : text)),
  };
}

/** One waiting event, as the digest reads it. */
export interface DigestEntry {
  seq: number;
  event_type: string;
  rules: string[];
  key_field: string | null;
  key_value: string | null;
}

/**
 * Counts entries into digest groups (exact counts per type, top key values)
 * and names which entries' lines to show (the first few of each type).
 */
export class DigestBuilder {
  private readonly groups = new Map<string, { count: number; field: string; values: Map<string, number>; sampleSeqs: number[] }>();
  private readonly rules = new Set<string>();
  private mention: string | undefined;
  total = 0;

  constructor(private readonly dest: SlackDestination) {}

  add(e: DigestEntry): void {
    this.total += 1;
    const g = this.groups.get(e.event_type) ?? { count: 0, field: '', values: new Map<string, number>(), sampleSeqs: [] };
    g.count += 1;
    if (e.key_field !== null && e.key_value !== null) {
      g.field = e.key_field;
      g.values.set(e.key_value, (g.values.get(e.key_value) ?? 0) + 1);
    }
    if (g.sampleSeqs.length < SAMPLES_PER_TYPE) g.sampleSeqs.push(e.seq);
    this.groups.set(e.event_type, g);
    e.rules.forEach((r) => this.rules.add(r));
    this.mention ??= mentionFor(this.dest, e.rules, e.event_type);
  }

  /** The entries whose digest lines are shown. */
  sampleSeqs(): number[] {
    return [...this.groups.values()].flatMap((g) => g.sampleSeqs);
  }

  build(samples: Map<number, string>, windowSeconds: number): SlackMessage {
    const digestGroups: DigestGroup[] = [...this.groups.entries()]
      .sort((a, b) => b[1].count - a[1].count)
      .map(([type, g]) => ({
        type,
        count: g.count,
        topValues: {
          field: g.field,
          values: [...g.values.entries()]
            .sort((a, b) => b[1] - a[1])
            .slice(0, TOP_VALUES)
            .map(([value, count]) => ({ value, count })),
        },
        samples: g.sampleSeqs.flatMap((seq) => {
          const line = samples.get(seq);
          return line !== undefined ? [line] : [];
        }),
      }));
    const ctx: Parameters<typeof formatDigest>[2] = { destination: this.dest.name, rules: [...this.rules] };
    if (this.dest.title !== undefined) ctx.title = this.dest.title;
    if (this.mention !== undefined) ctx.mention = this.mention;
    return formatDigest(digestGroups, windowSeconds, ctx);
  }
}
