/**
 * Checks the WorkOS event envelope, only after the signature verified:
 * a JSON object with string `id`, string `event` (each 1–256 characters of
 * printable ASCII without spaces), object `data`, string `created_at`,
 * optional object `context`.
 */
import type { UnknownEvent } from '../events/catalog';

export type EnvelopeResult =
  | { ok: true; event: UnknownEvent; text: string }
  | { ok: false; reason: 'invalid_json' | 'invalid_event'; message: string };

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** The longest event id accepted (and looked up by the admin API and the console). */
export const MAX_ID_LENGTH = 256;
/** Bytes 0x21–0x7E only: printable ASCII, no space, no control characters. */
const PRINTABLE_ASCII = /^[\x21-\x7E]+$/;

export function parseEnvelope(bytes: Uint8Array): EnvelopeResult {
  let text: string;
  let value: unknown;
  try {
    text = decoder.decode(bytes);
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'invalid_json', message: 'The request body is not valid UTF-8 JSON.' };
  }
  const problem = envelopeProblem(value);
  if (problem !== null) return { ok: false, reason: 'invalid_event', message: problem };
  return { ok: true, event: value as UnknownEvent, text };
}

/** Returns a sentence naming what is wrong with the envelope, or null when it is valid. */
export function envelopeProblem(value: unknown): string | null {
  if (!isObject(value)) return 'The body must be a JSON object.';
  const idProblem = tokenProblem(value.id, 'id');
  if (idProblem !== null) return idProblem;
  const eventProblem = tokenProblem(value.event, 'event');
  if (eventProblem !== null) return eventProblem;
  if (!isObject(value.data)) return 'The event must have an object "data".';
  if (typeof value.created_at !== 'string' || value.created_at.length === 0) {
    return 'The event must have a string "created_at".';
  }
  if (value.context !== undefined && value.context !== null && !isObject(value.context)) {
    return 'The event "context", when present, must be an object.';
  }
  return null;
}

/**
 * WorkOS event ids and type names are short printable ASCII without spaces
 * (0x21–0x7E). Anything else (control characters, spaces, non-ASCII) could
 * forge log lines or headers downstream, so it is refused. The message never
 * echoes the value.
 */
function tokenProblem(v: unknown, field: 'id' | 'event'): string | null {
  if (typeof v !== 'string' || v.length === 0) return `The event must have a non-empty string "${field}".`;
  if (v.length > MAX_ID_LENGTH) return `The event "${field}" must be at most ${MAX_ID_LENGTH} characters long.`;
  if (!PRINTABLE_ASCII.test(v)) return `The event "${field}" must contain only printable ASCII characters without spaces (0x21–0x7E).`;
  return null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
