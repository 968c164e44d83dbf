/**
 * Block Kit builders that enforce Slack's limits by construction: every text
 * is cut visibly (ending with `…`) before it could exceed its limit.
 * Inputs are mrkdwn that is already safe (see `./escape`).
 */
import type { ContextBlock, HeaderBlock, KnownBlock, MrkdwnElement, SectionBlock } from '@slack/types';
import { plain, truncate } from './escape';

export const LIMITS = {
  blocks: 50,
  headerText: 150,
  sectionText: 3_000,
  sectionFields: 10,
  fieldText: 2_000,
  contextElements: 10,
  /** Our own cap per context element (Slack allows more). */
  contextText: 1_000,
} as const;

/** `verbatim`: no auto-linking of bare URLs, channel names or mentions. */
export function mrkdwn(text: string, max: number): MrkdwnElement {
  return { type: 'mrkdwn', text: truncate(text, max) || ' ', verbatim: true };
}

export function header(text: string): HeaderBlock {
  return { type: 'header', text: { type: 'plain_text', text: plain(text, LIMITS.headerText) || ' ', emoji: true } };
}

export function section(text: string): SectionBlock {
  return { type: 'section', text: mrkdwn(text, LIMITS.sectionText) };
}

/** One "label: value" pair; `value` is safe mrkdwn. */
export interface Field {
  label: string;
  value: string;
}

export function fieldText(f: Field): string {
  return `*${f.label}*\n${f.value}`;
}

/**
 * Sections holding `fields`, ten per section; the first section also carries
 * `text` when given.
 */
export function fieldSections(fields: readonly Field[], text?: string): SectionBlock[] {
  const out: SectionBlock[] = [];
  for (let i = 0; i < fields.length || (i === 0 && text !== undefined); i += LIMITS.sectionFields) {
    const chunk = fields.slice(i, i + LIMITS.sectionFields).map((f) => mrkdwn(fieldText(f), LIMITS.fieldText));
    const block: SectionBlock = i === 0 && text !== undefined ? section(text) : { type: 'section' };
    if (chunk.length > 0) block.fields = chunk;
    out.push(block);
  }
  return out;
}

export function context(texts: readonly string[]): ContextBlock {
  const kept = texts.filter((t) => t.trim() !== '');
  const elements = kept.slice(0, LIMITS.contextElements).map((t) => mrkdwn(t, LIMITS.contextText));
  return { type: 'context', elements: elements.length > 0 ? elements : [mrkdwn(' ', 1)] };
}

/**
 * At most 50 blocks: when there are more, the middle is cut and a note says
 * how many blocks were left out; the last block (our context) is kept.
 */
export function capBlocks(blocks: readonly KnownBlock[]): KnownBlock[] {
  if (blocks.length <= LIMITS.blocks) return [...blocks];
  const last = blocks[blocks.length - 1]!;
  const head = blocks.slice(0, LIMITS.blocks - 2);
  const omitted = blocks.length - head.length - 1;
  return [...head, context([`… ${omitted} more blocks not shown`]), last];
}
