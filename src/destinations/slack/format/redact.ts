/**
 * Cleaning untrusted text before it is escaped into a Slack message: invisible
 * characters out, line breaks flattened, secrets replaced by `[redacted]`.
 *
 * `sanitize` is applied by `literal`, `code` and `plain` (see `./escape`),
 * the only ways payload text enters a message, before any cutting (so a secret
 * is never cut into an unrecognizable piece first). `./read` additionally
 * refuses sensitive field NAMES; this module catches secrets by VALUE, in any
 * field and inside free text.
 *
 * What `redactSecrets` recognizes (anywhere in a string):
 *  - PEM blocks (`-----BEGIN …-----` to the matching END line, or to the end
 *    of the text when the END line is missing);
 *  - JWTs / JWEs: a base64url segment with `eyJ` (≥ 10 characters from
 *    there) followed by two (or four) more `.`-separated segments;
 *  - prefixed API keys and webhook secrets: `sk_live_…`, `sk_test_…`,
 *    `rk_live_…`, `rk_test_…`, `sk_` + ≥ 20 characters, `whsec_…`, Slack
 *    (`xoxb-…`), GitHub (`ghp_…`, `github_pat_…`), AWS (`AKIA…`), Google
 *    (`AIza…`) keys;
 *  - the password in URL user info (`https://user:PASSWORD@host`);
 *  - `Bearer <token>` (≥ 16 characters);
 *  - values of secret-named query / fragment / `name=value` parameters (after
 *    `?`, `&`, `#`, `;`, whitespace, a bracket or quote, or at the start) and
 *    of secret-named quoted JSON members inside text (`"token": "…"`, also
 *    with spaces around the colon): names that are, or end (after `-`, `_`,
 *    `.` or `[`) in, one of `SECRET_WORDS` (`token`, `code`, `key`, `secret`,
 *    `signature`, `sig`, `password`, `pwd`, `auth`, `credential`, `otp`, `jwt`,
 *    `session`, `ticket`, …), in any letter case, e.g. `access_token`,
 *    `api_key`, `client_secret`, `X-Amz-Signature`; or that end in one of them
 *    capitalised and glued in camelCase after a letter or digit
 *    (`refreshToken`, `clientSecret`, `privateKey`, `APIKey`, `oauth2Token`;
 *    not `monkey` or `keyboard`); a JSON string value cut before its closing
 *    quote is redacted to the end of the text;
 *  - long random-looking tokens: a run of ≥ 32 characters of `[A-Za-z0-9_-]`
 *    that mixes upper case, lower case and digits (or is all hex with letters
 *    and digits), unless it is made of words (`Quarterly_Report_2024`). WorkOS
 *    ids (`user_01H…`, `directory_user_01H…`: a lower-case prefix and a
 *    26-character ULID) and UUIDs do not count as random tokens.
 * The whole secret becomes `[redacted]`; the rest of the text stays.
 *
 * Not recognized (limits): short secrets in free text with no telling shape or
 * name (`my password is hunter2`), secrets split by spaces, standard base64
 * whose `+`/`/` break it into pieces shorter than 32 characters, single-case
 * tokens that are not hex.
 *
 * Cost: two quick pre-checks (a trigger pattern, a 32-character run); the
 * specific scans run only when one finds something. All regexes are compiled
 * once at module load and run in linear time (no nested ambiguous repetition;
 * the run-based ones start only where a run starts).
 */

export const REDACTED = '[redacted]';

// ---------------------------------------------------------------------------
// Invisible and layout characters

/** Any control (Cc), format (Cf) or line/paragraph separator character. */
const INVISIBLE_TEST = /[\p{Cc}\p{Cf}\u2028\u2029]/u;
/**
 * Format and control characters to drop, except: line breaks and tabs (turned
 * into spaces below), and a ZERO WIDTH JOINER between two pictographs (emoji
 * sequences like 👩‍💻), which group 1 keeps.
 */
const INVISIBLE_G =
  /(\p{Extended_Pictographic}[\uFE0F\u{1F3FB}-\u{1F3FF}]?\u200D)(?=\p{Extended_Pictographic})|(\u200B)|(?![\t\n\v\f\r\u0085])[\p{Cc}\p{Cf}]/gu;
/** A run of line breaks and tabs (and the spaces after them). */
const BREAKS_G = /[\t\n\v\f\r\u0085\u2028\u2029][\t\n\v\f\r\u0085\u2028\u2029 ]*/g;

/**
 * Drops bidi embeddings/overrides/isolates, marks, zero-width characters,
 * soft hyphens, tag characters and every other control or format character
 * (keeping ZWJ inside emoji sequences, and ZWSP when `keepZwsp`), and turns
 * each run of line breaks / tabs into a single space.
 */
export function stripInvisible(text: string, keepZwsp = false): string {
  if (!INVISIBLE_TEST.test(text)) return text;
  return text
    .replace(INVISIBLE_G, (_m, emoji: string | undefined, zwsp: string | undefined) => emoji ?? (keepZwsp ? (zwsp ?? '') : ''))
    .replace(BREAKS_G, (_m, offset: number, whole: string) => (offset > 0 && whole.charAt(offset - 1) === ' ' ? '' : ' '));
}

// ---------------------------------------------------------------------------
// Secrets

/**
 * Cheap pre-checks: no trigger and no 32-character run, nothing to redact.
 * Each trigger must let through everything its scan below could match (a JSON
 * member may have spaces before its colon: `"password" : "…"`).
 */
const JSON_TEST = /"\s*:/;
const TRIGGER = /-----BEGIN |eyJ|sk_|rk_|whsec_|xox[abposr]-|gh[pousr]_|github_pat_|A[KS]IA|AIza|:\/\/|=|"\s*:|[Bb]earer|BEARER/;
const LONG_RUN = /[A-Za-z0-9_-]{32}/;

const PEM_G = /-----BEGIN [A-Z0-9 ]{1,64}-----[\s\S]*?(?:-----END [A-Z0-9 ]{1,64}-----|$)/g;

/**
 * A maximal dotted run of base64url segments (`a.b.c`), tried only where one
 * starts, so each is scanned once (linear). `redactJwts` looks inside.
 */
const DOTTED_G = /(?<![A-Za-z0-9_.-])[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)+/g;
/** A JWT header is base64url JSON: `eyJ` (`{"`) and at least 7 more characters. */
const JWT_HEADER_MIN = 10;

/**
 * JWTs (`eyJ…` header, payload, signature) and JWEs (five parts) in a dotted
 * run, also when glued to a word in front; the rest of the run is kept.
 */
function redactJwts(run: string): string {
  if (!run.includes('eyJ')) return run;
  const segs = run.split('.');
  const out: string[] = [];
  let changed = false;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    const at = seg.indexOf('eyJ');
    if (at >= 0 && seg.length - at >= JWT_HEADER_MIN && i + 2 < segs.length) {
      const parts = i + 4 < segs.length && segs[i + 3] !== '' && segs[i + 4] !== '' ? 5 : 3;
      out.push(REDACTED);
      i += parts - 1;
      changed = true;
    } else {
      out.push(seg);
    }
  }
  return changed ? out.join('.') : run;
}

const KEY_BODY = '[A-Za-z0-9_+/=-]';
const KEYS_G = new RegExp(
  // Distinctive prefixes, also when glued to a word in front…
  `(?:sk|rk)_(?:live|test)_${KEY_BODY}{4,}|whsec_${KEY_BODY}{8,}|` +
    // …others only at the start of a word.
    '(?<![A-Za-z0-9])(?:' +
    [
      `sk_${KEY_BODY}{20,}`,
      'xox[abposr]-[A-Za-z0-9-]{10,}',
      'gh[pousr]_[A-Za-z0-9]{30,}',
      'github_pat_[A-Za-z0-9_]{30,}',
      'A[KS]IA[0-9A-Z]{16}',
      'AIza[0-9A-Za-z_-]{35}',
    ].join('|') +
    ')',
  'g',
);

const USERINFO_G = /(:\/\/[^\s/?#@:]{0,256}):([^\s/?#@]{1,256})@/g;

const BEARER_TEST = /[Bb]earer|BEARER/;
const BEARER_G = /\b((?:[Bb]earer|BEARER)\s+)[A-Za-z0-9._~+/=-]{16,}/g;

/** Words that make a parameter or JSON member name secret, alone or as the last part of a name (`x-api-key`, `user[password]`). */
const SECRET_WORDS =
  'token|code|key|apikey|secret|signature|sig|password|passwd|pwd|pass|passphrase|passcode|auth|credential|credentials|otp|jwt|session|ticket|verifier|accesstoken';
/**
 * The same words capitalised (`Token`, `Key`…), for camelCase names: matched
 * case-sensitively after a letter or digit (`refreshToken`, `APIKey`), so a
 * word that merely ends in one (`monkey`, `barcode`) is not a secret name.
 */
const CAMEL_WORDS = SECRET_WORDS.split('|')
  .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
  .join('|');
const SECRET_NAME = new RegExp(`^(?:[\\s\\S]*[-_.[])?(?:${SECRET_WORDS})\\]?$`, 'i');
const CAMEL_SECRET_NAME = new RegExp(`[A-Za-z0-9](?:${CAMEL_WORDS})\\]?$`);

function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name) || CAMEL_SECRET_NAME.test(name);
}

/**
 * A secret `name=value` after `?`, `&`, `#`, `;`, whitespace, an opening
 * bracket or quote, or at the start; the value ends at a separator. Only
 * secret names match, so a harmless parameter never swallows the next one.
 * `PARAM_G` takes names that are or end (after `-_.[`) in a secret word, in
 * any case; `CAMEL_PARAM_G` (case-sensitive) those ending in a camelCase one.
 */
const PARAM_LEAD = `(^|[?&#;\\s(,"'{|])`;
const PARAM_NAME_CHARS = '[A-Za-z0-9%.~[\\]_-]';
const PARAM_VALUE = '=[^&#;\\s"\'<>()|,`]+';
const PARAM_G = new RegExp(`${PARAM_LEAD}((?:${PARAM_NAME_CHARS}{0,64}[-_.[])?(?:${SECRET_WORDS})\\]?)${PARAM_VALUE}`, 'gi');
const CAMEL_PARAM_G = new RegExp(`${PARAM_LEAD}(${PARAM_NAME_CHARS}{0,64}[A-Za-z0-9](?:${CAMEL_WORDS})\\]?)${PARAM_VALUE}`, 'g');

/**
 * `"name": "value"` or `"name": 123` inside text (a JSON body quoted in an
 * error message). A string value cut before its closing quote (a truncated
 * body) runs to the end of the text: group 4 is the closing quote, or empty.
 * The value loop stops only at a `"` or the end, so this never backtracks.
 */
const JSON_G = /("([A-Za-z0-9_.-]{1,64})"\s*:\s*)(?:"((?:[^"\\]|\\[\s\S])*)("|\\?$)|(\d+))/g;

const LONG_RUN_G = /[A-Za-z0-9_-]{32,}/g;
/** A WorkOS id's ULID part (after a lower-case prefix and `_`). */
const ULID_ID_G = /(?<=[a-z0-9])_[0-9A-HJKMNP-TV-Z]{26}(?![A-Za-z0-9])/g;
const UUID_G = /(?<![A-Za-z0-9])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![A-Za-z0-9])/g;
/** One word of an identifier made of words: `Report`, `FINAL`, `v2`, `2024` (at most 24 characters). */
const WORD = /^(?:[A-Z]*|[A-Z]?[a-z]*)[0-9]*$/;
const MAX_WORD = 24;
const HEX = /^(?:[0-9a-f]+|[0-9A-F]+)$/;
const UPPER = /[A-Z]/;
const LOWER = /[a-z]/;
const DIGIT = /[0-9]/;
const LETTER = /[A-Za-z]/;

function isRandomLooking(piece: string): boolean {
  if (piece.length < 32) return false;
  if (piece.split(/[-_]+/).every((w) => w.length <= MAX_WORD && WORD.test(w))) return false;
  if (UPPER.test(piece) && LOWER.test(piece) && DIGIT.test(piece)) return true;
  return HEX.test(piece) && DIGIT.test(piece) && LETTER.test(piece);
}

/** A long run is a secret when some piece of it, WorkOS ids and UUIDs taken out, looks random. */
function isSecretRun(run: string): boolean {
  let rest = run;
  if (run.includes('_')) rest = rest.replace(ULID_ID_G, ' ');
  if (run.includes('-')) rest = rest.replace(UUID_G, ' ');
  return rest === run ? isRandomLooking(run) : rest.split(' ').some(isRandomLooking);
}

function redactOnce(text: string): string {
  const long = text.length >= 32 && LONG_RUN.test(text);
  if (!long && !TRIGGER.test(text)) return text;
  let s = text;
  if (s.includes('-----BEGIN ')) s = s.replace(PEM_G, REDACTED);
  if (s.includes('eyJ')) s = s.replace(DOTTED_G, redactJwts);
  s = s.replace(KEYS_G, REDACTED);
  if (BEARER_TEST.test(s)) s = s.replace(BEARER_G, `$1${REDACTED}`);
  if (s.includes('=')) s = s.replace(PARAM_G, `$1$2=${REDACTED}`).replace(CAMEL_PARAM_G, `$1$2=${REDACTED}`);
  if (JSON_TEST.test(s)) {
    s = s.replace(JSON_G, (m: string, lead: string, name: string, str: string | undefined, close: string | undefined) =>
      isSecretName(name) ? (str !== undefined ? `${lead}"${REDACTED}${close === '"' ? '"' : ''}` : `${lead}${REDACTED}`) : m,
    );
  }
  if (s.includes('://')) s = s.replace(USERINFO_G, `$1:${REDACTED}@`);
  if (long) s = s.replace(LONG_RUN_G, (run: string) => (isSecretRun(run) ? REDACTED : run));
  return s;
}

/**
 * `text` with every recognized secret (see the module comment) replaced by
 * `[redacted]`; the rest stays readable (`?token=[redacted]&lang=en`).
 * Idempotent (a redaction can expose another shape, e.g. user info once a
 * parameter is gone: it runs again until nothing changes, at most 3 times);
 * never throws.
 */
export function redactSecrets(text: string): string {
  let s = redactOnce(text);
  for (let i = 0; i < 2 && s !== text; i++) {
    text = s;
    s = redactOnce(s);
  }
  return s;
}

/** Untrusted text, cleaned: invisible characters out, line breaks flattened, secrets redacted. */
export function sanitize(text: string): string {
  return redactSecrets(stripInvisible(text));
}
