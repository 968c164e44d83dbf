/**
 * Making untrusted text safe for Slack `mrkdwn`.
 *
 * Two layers:
 *
 * 1. `escapeMrkdwn`: Slack's own escaping of its three control characters
 *    (`&` → `&amp;`, `<` → `&lt;`, `>` → `&gt;`). Without `<` no mention
 *    (`<!channel>`, `<@U…>`) and no link (`<https://…|label>`) can be formed;
 *    already-escaped input (`&lt;`) is escaped again and so shows literally.
 *
 * 2. `literal`: additionally neutralizes the formatting characters `*` `_` `~`
 *    and the backtick. Slack has no escape for them, so we insert a ZERO WIDTH
 *    SPACE (U+200B) on BOTH sides of the character. Slack only treats a marker
 *    as opening/closing when it touches a word boundary on one side and text on
 *    the other; with a ZWSP on both sides the marker either sits between two
 *    "spaces" (if Slack treats ZWSP as a boundary) or inside a word (if it
 *    does not), and neither can format. Chosen over wrapping values in code
 *    spans (a backtick in the value would break out, and names would render
 *    monospace) and over look-alike substitutes (they change visible text).
 *    Cost: a copied value contains invisible ZWSPs. To keep the common case
 *    copyable, an underscore between two letters/digits (`first_last@x.com`,
 *    `org_01H…`, `billing_admin`) is left alone: mid-word it cannot format.
 *    `*`, `~` and the backtick are rare in real data and always neutralized.
 *    Broadcast words (`@channel`, `@here`, `@everyone`) get a ZWSP after the
 *    `@` too, for surfaces that parse them without `<…>`; all our mrkdwn text
 *    objects are also sent with `verbatim: true` (no auto-linking of bare URLs,
 *    channel names or mentions).
 *
 * Identifiers (`id` kind) whose characters are all in a safe set are shown in a
 * code span instead: monospace, copyable, nothing inside can format.
 *
 * Before either layer, `literal`, `code` and `plain` clean the text with
 * `sanitize` (see `./redact`): invisible/format characters (bidi overrides,
 * zero-width characters…) are dropped, line breaks and tabs become spaces (every
 * value renders on one line, so a payload cannot draw a fake "Rule:" line), and
 * secrets are replaced by `[redacted]`. They are the only doors for payload
 * text into a message, and they clean before they cut (`max`), so a secret is
 * never cut into an unrecognizable piece first.
 */
import { sanitize } from './redact';

const ZWSP = '\u200B';

/** Slack escaping of `&`, `<`, `>` (the only escaping Slack defines). */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const ALWAYS = /[*~`]/g;
// An underscore not flanked by a letter/digit on both sides.
const LOOSE_UNDERSCORE = /(?<![\p{L}\p{N}])_|_(?![\p{L}\p{N}])/gu;
const BROADCAST = /(^|[^\p{L}\p{N}_.-])@(channel|here|everyone)\b/giu;

/** Half a surrogate pair, or a ZERO WIDTH JOINER (and what joins to it), at the end. */
const DANGLING = /[\uD800-\uDBFF]$|\u200D[\uFE0F\uD800-\uDBFF]?$/;

/** Cut raw (unescaped) text to `max` UTF-16 units ending with `…`, when longer or when `force`d. */
function cut(text: string, max: number, force = false): string {
  if (!force && text.length <= max) return text;
  // Do not leave half a surrogate pair or an emoji's dangling ZERO WIDTH JOINER behind.
  const s = text.slice(0, Math.max(0, max - 1)).replace(DANGLING, '');
  return `${s}…`;
}

/**
 * How far past `max` a long value is cleaned: beyond that, nothing can be
 * shown, so the cost of cleaning stays bounded by the limit, not the payload.
 */
const WINDOW_SLACK = 4_096;
const SPACE = /\s/;

/**
 * `sanitize(text)`, cut to `max` (cleaned first, so no secret is cut into an
 * unrecognizable piece before redaction). A long text is cleaned only up to
 * `max + WINDOW_SLACK`, and back to the last whitespace before that, so that
 * no secret is cut in two either (when there is no whitespace, all is cleaned).
 */
function clean(text: string, max: number | undefined): string {
  if (max === undefined) return sanitize(text);
  if (text.length <= max + WINDOW_SLACK) return cut(sanitize(text), max);
  let end = max + WINDOW_SLACK;
  while (end > 0 && !SPACE.test(text.charAt(end - 1))) end--;
  if (end === 0) return cut(sanitize(text), max);
  return cut(sanitize(text.slice(0, end)), max, true);
}

/** Clean text (already sanitized) → mrkdwn that renders exactly as it reads. */
function neutralize(text: string): string {
  return escapeMrkdwn(text)
    .replace(ALWAYS, (c) => ZWSP + c + ZWSP)
    .replace(LOOSE_UNDERSCORE, `${ZWSP}_${ZWSP}`)
    .replace(BROADCAST, (_m, pre: string, word: string) => `${pre}@${ZWSP}${word}`);
}

/**
 * Untrusted text → mrkdwn that renders exactly as the text reads (cleaned, on
 * one line, secrets redacted), cut to `max` characters (before escaping).
 */
export function literal(text: string, max?: number): string {
  return neutralize(clean(text, max));
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$/;

/** An identifier-like value in a code span; anything else as `literal`. */
export function code(text: string, max?: number): string {
  const s = clean(text, max);
  return SAFE_ID.test(s) && s.length <= 200 ? `\`${s}\`` : neutralize(s);
}

/** Cut `text` to at most `max` UTF-16 units, ending with `…` when cut. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  // Do not leave half a surrogate pair, a dangling ZWJ, half an `&amp;`
  // entity or a marker that lost its closing ZWSP behind.
  const cut = text
    .slice(0, Math.max(0, max - 1))
    .replace(DANGLING, '')
    .replace(/&[a-z]{0,4}$/, '')
    .replace(/\u200B[*_~`]$/, '');
  return `${cut}…`;
}

/** Plain text (for `plain_text` objects): cleaned like `literal`, whitespace collapsed, cut. */
export function plain(text: string, max: number): string {
  return truncate(sanitize(text).replace(/\s+/g, ' ').trim(), max);
}
