import type { KnownBlock } from '@slack/types';

export interface SlackFormatContext {
  /** Name of the routing rule that sent this event here. */
  rule: string;
  /** Destination name. */
  destination: string;
  /** Per-destination title override (replaces the default header text). */
  title?: string;
  /**
   * Trusted (from config), e.g. `<!here>`, `<@U123ABC>`, `<!subteam^S123>`:
   * put, unescaped, at the start of the top section and of `text`.
   */
  mention?: string;
}

export interface SlackMessage {
  text: string;
  blocks: KnownBlock[];
}
