/** What every destination adapter receives and returns. */
import type { UnknownEvent } from '../events/catalog';
import type { RouterMessage } from '../queue/message';

export interface Delivery {
  event: UnknownEvent;
  /** The raw body exactly as WorkOS sent it. */
  raw: string;
  /** Names of the rules that routed the event to this destination. */
  rules: string[];
  /** Attempts already made before this one. */
  attempts: number;
  /** True when a newer event for the same object was already routed. */
  stale?: boolean;
  /** Sent again by an operator (dead-letter or event replay): delivered even if this destination had it before. */
  replay?: boolean;
  /** Where the event came from (a dead letter records it). */
  source?: RouterMessage['source'];
  /** The ledger shard that admitted the event (a dead letter records it, so its replay is traced where the body is). */
  ledger_shard?: string;
}

export type DeliveryOutcome =
  | { ok: true; status: number }
  | {
      ok: false;
      /** Retry later (408, 429, 5xx, network error, timeout) or give up at once (other 4xx). */
      retryable: boolean;
      status: number | null;
      /** A short machine-readable reason; never a secret or payload content. */
      reason: string;
      /** Server-requested delay (Retry-After), in seconds. */
      retryAfterSeconds?: number;
    };

/** Queues accept delays of at most 12 hours. */
export const MAX_DELAY_SECONDS = 43_200;

/** Exponential backoff from `baseSeconds` with jitter (50–100 % of the step), capped. */
export function backoffSeconds(baseSeconds: number, attempt: number, random: () => number = Math.random): number {
  const step = Math.min(MAX_DELAY_SECONDS, baseSeconds * 2 ** Math.max(0, attempt - 1));
  return Math.max(1, Math.min(MAX_DELAY_SECONDS, Math.round(step / 2 + (random() * step) / 2)));
}

/** Parses Retry-After (delta seconds or an HTTP date) into whole seconds. */
export function parseRetryAfter(value: string | null, nowMs = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(MAX_DELAY_SECONDS, Number(v));
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil((at - nowMs) / 1000)));
}

/** Classifies an HTTP status for retry purposes. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** fetch with a timeout; network errors and timeouts become a retryable outcome. */
export async function fetchWithTimeout(
  url: string,
  init: RequestInit,
  timeoutMs: number,
): Promise<{ ok: true; response: Response } | { ok: false; outcome: DeliveryOutcome }> {
  try {
    const response = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    return { ok: true, response };
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
    return { ok: false, outcome: { ok: false, retryable: true, status: null, reason: timedOut ? 'timeout' : 'network_error' } };
  }
}
