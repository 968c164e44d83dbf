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
 */

const ZWSP = '\u200B';

/** Slack escaping of `&`, `<`, `>` (the only escaping Slack defines). */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const ALWAYS = /[*~`]/g;
// An underscore not flanked by a letter/digit on both sides.
const LOOSE_UNDERSCORE = /(?<![\p{L}\p{N}])_|_(?![\p{L}\p{N}])/gu;
const BROADCAST = /(^|[^\p{L}\p{N}_.-])@(channel|here|everyone)\b/giu;

/** Untrusted text → mrkdwn that renders exactly as the text reads. */
export function literal(text: string): string {
  return escapeMrkdwn(text)
    .replace(ALWAYS, (c) => ZWSP + c + ZWSP)
    .replace(LOOSE_UNDERSCORE, `${ZWSP}_${ZWSP}`)
    .replace(BROADCAST, (_m, pre: string, word: string) => `${pre}@${ZWSP}${word}`);
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$/;

/** An identifier-like value in a code span; anything else as `literal`. */
export function code(text: string): string {
  return SAFE_ID.test(text) && text.length <= 200 ? `\`${text}\`` : literal(text);
}

/** Cut `text` to at most `max` UTF-16 units, ending with `…` when cut. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, Math.max(0, max - 1));
  // Do not leave half a surrogate pair or half an `&amp;` entity behind.
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  cut = cut.replace(/&[a-z]{0,4}$/, '');
  return `${cut}…`;
}

/** Plain text (for `plain_text` objects): collapse whitespace and cut. */
export function plain(text: string, max: number): string {
  return truncate(text.replace(/\s+/g, ' ').trim(), max);
}
