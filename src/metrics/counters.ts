/**
 * Counters of what the Worker's HTTP side sees (webhook outcomes), kept in
 * memory per isolate and added to the destination registry's storage in
 * batches — at most once every FLUSH_INTERVAL_MS per isolate — so they
 * survive isolate restarts without a Durable Object request per webhook.
 * What an isolate counted since its last flush is lost if it is evicted
 * first (at most FLUSH_INTERVAL_MS of counts).
 */
import { errorName, log } from '../log';
import { registryStub } from '../destinations/registry';

export const FLUSH_INTERVAL_MS = 10_000;

/** `name` and its labels, e.g. ["webhook_requests_total", {"outcome":"accepted"}]. */
export type CounterKey = string;

let pending = new Map<CounterKey, number>();
let lastFlush = Date.now();

export function counterKey(name: string, labels: Record<string, string>): CounterKey {
  return JSON.stringify([name, labels]);
}

export function count(name: string, labels: Record<string, string>, n = 1): void {
  const key = counterKey(name, labels);
  pending.set(key, (pending.get(key) ?? 0) + n);
}

/** Sends what was counted when the interval has passed (or `force`); call through waitUntil. */
export async function flushCounters(env: Env, force = false): Promise<void> {
  const now = Date.now();
  if (pending.size === 0 || (!force && now - lastFlush < FLUSH_INTERVAL_MS)) return;
  const batch = pending;
  pending = new Map();
  lastFlush = now;
  try {
    await registryStub(env).addCounters([...batch]);
  } catch (err) {
    // Put them back: the next flush carries them.
    for (const [k, n] of batch) pending.set(k, (pending.get(k) ?? 0) + n);
    log('warn', 'metrics_flush_failed', { error: errorName(err) });
  }
}
