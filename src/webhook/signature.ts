/**
 * WorkOS webhook signature verification: the trust boundary.
 *
 * `WorkOS-Signature: t=<unix ms>, v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`
 *
 * - Parsing never throws: a malformed header is a typed failure.
 * - `t=` and `v1=` in any order, spaces after commas, several `v1=` values
 *   (any one may match), unknown keys ignored (future schemes).
 * - Several secrets (rotation): any one verifies.
 * - HMAC computed once per secret with WebCrypto; compared in constant time.
 * - Imported keys are cached per isolate, never re-imported per request.
 *
 * Reasons are typed inside; callers map them to generic error bodies.
 */

export type SignatureFailure =
  | 'missing_signature'
  | 'malformed_signature'
  | 'timestamp_out_of_tolerance'
  | 'signature_mismatch';

export type VerifyResult = { ok: true; timestampMs: number } | { ok: false; reason: SignatureFailure };

export interface ParsedSignatureHeader {
  timestampMs: number;
  /** The raw `t` digits exactly as sent: the signed string uses them verbatim. */
  timestampText: string;
  /** Decoded `v1` digests (32 bytes each). */
  digests: Uint8Array[];
}

const MAX_HEADER_LENGTH = 4096;
const MAX_DIGESTS = 8;
const DIGEST_HEX = /^[0-9a-fA-F]{64}$/;
const TIMESTAMP = /^\d{1,16}$/;

/** Parses a `WorkOS-Signature` header. Returns null when malformed; never throws. */
export function parseSignatureHeader(header: string): ParsedSignatureHeader | null {
  if (header.length === 0 || header.length > MAX_HEADER_LENGTH) return null;
  let timestampText: string | undefined;
  const digests: Uint8Array[] = [];
  for (const part of header.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) return null;
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    if (key === 't') {
      if (timestampText !== undefined || !TIMESTAMP.test(value)) return null;
      timestampText = value;
    } else if (key === 'v1') {
      if (!DIGEST_HEX.test(value)) return null;
      if (digests.length >= MAX_DIGESTS) return null;
      digests.push(hexToBytes(value));
    }
  }
  if (timestampText === undefined || digests.length === 0) return null;
  return { timestampMs: Number(timestampText), timestampText, digests };
}

export interface VerifyOptions {
  /** Raw `WorkOS-Signature` header value, or null when absent. */
  header: string | null;
  /** The raw request body bytes, exactly as received. */
  body: Uint8Array;
  /** One or more secrets; any one may verify. */
  secrets: readonly string[];
  /** Accepted clock distance in either direction. */
  toleranceSeconds: number;
  /** Current time in ms (injectable for tests). */
  nowMs?: number;
}

export async function verifyWorkOSSignature(opts: VerifyOptions): Promise<VerifyResult> {
  if (opts.header === null || opts.header.trim() === '') return { ok: false, reason: 'missing_signature' };
  const parsed = parseSignatureHeader(opts.header);
  if (parsed === null) return { ok: false, reason: 'malformed_signature' };
  const now = opts.nowMs ?? Date.now();
  if (Math.abs(now - parsed.timestampMs) > opts.toleranceSeconds * 1000) {
    return { ok: false, reason: 'timestamp_out_of_tolerance' };
  }
  const message = signedPayload(parsed.timestampText, opts.body);
  let matched = false;
  for (const secret of opts.secrets) {
    const key = verifyKeys.cached(secret) ?? (await verifyKeys.load(secret));
    const expected = new Uint8Array(await crypto.subtle.sign('HMAC', key, message));
    for (const digest of parsed.digests) {
      // Evaluate every candidate (no early exit) so timing does not reveal which matched.
      if (constantTimeEqual(expected, digest)) matched = true;
    }
  }
  return matched ? { ok: true, timestampMs: parsed.timestampMs } : { ok: false, reason: 'signature_mismatch' };
}

/** Computes a `WorkOS-Signature` header value for `body` (used to re-sign forwarded requests). */
export async function signWorkOSPayload(secret: string, body: Uint8Array | string, timestampMs = Date.now()): Promise<string> {
  const bytes = typeof body === 'string' ? encoder.encode(body) : body;
  const t = String(Math.trunc(timestampMs));
  const key = signingKeys.cached(secret) ?? (await signingKeys.load(secret));
  const mac = await crypto.subtle.sign('HMAC', key, signedPayload(t, bytes));
  return `t=${t}, v1=${bytesToHex(new Uint8Array(mac))}`;
}

/** Splits `WORKOS_WEBHOOK_SECRET` ("a,b") into its secrets; blanks dropped. */
export function parseSecretList(value: unknown): string[] {
  if (typeof value !== 'string') return [];
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

const encoder = new TextEncoder();

/**
 * Imported HMAC keys, per isolate: resolved ones (read synchronously on the
 * hot path) and imports under way; cleared when full. Two of them, so the
 * destinations' signing secrets (one per HTTP destination) can never push
 * the webhook's own secrets out: verification imports a key once per isolate
 * whatever the number of destinations.
 */
class KeyCache {
  private readonly imported = new Map<string, CryptoKey>();
  private readonly pending = new Map<string, Promise<CryptoKey>>();
  constructor(private readonly limit: number) {}

  /** The key if imported already (no await on the hot path). */
  cached(secret: string): CryptoKey | undefined {
    return this.imported.get(secret);
  }

  load(secret: string): Promise<CryptoKey> {
    let key = this.pending.get(secret);
    if (key === undefined) {
      if (this.imported.size >= this.limit) this.imported.clear();
      key = crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']).then(
        (k) => {
          this.imported.set(secret, k);
          this.pending.delete(secret);
          return k;
        },
        (err: unknown) => {
          // A failed import must not poison the cache.
          this.pending.delete(secret);
          throw err;
        },
      );
      this.pending.set(secret, key);
    }
    return key;
  }
}

/** `WORKOS_WEBHOOK_SECRET`'s keys (a rotation list: a handful). */
const verifyKeys = new KeyCache(64);
/** The destinations' `signing_secret` keys (one per HTTP destination at most). */
const signingKeys = new KeyCache(1024);

/** `"<t>." + body` as one buffer (the timestamp is ASCII digits: written byte by byte). */
function signedPayload(timestampText: string, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const n = timestampText.length;
  const out = new Uint8Array(n + 1 + body.length);
  for (let i = 0; i < n; i++) out[i] = timestampText.charCodeAt(i);
  out[n] = 0x2e; // '.'
  out.set(body, n + 1);
  return out;
}

/** Compares two byte strings without an early exit (length is not secret). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Decodes hex already checked against DIGEST_HEX. */
function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  return out;
}

function nibble(c: number): number {
  // '0'-'9' → 0-9, 'a'-'f' / 'A'-'F' → 10-15
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
function bytesToHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += HEX[b];
  return s;
}
