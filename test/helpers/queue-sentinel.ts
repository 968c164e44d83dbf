/**
 * The positive signal a check that a follow-up was NOT enqueued waits for: a
 * sentinel event sent through EVENTS_QUEUE now, to be consumed
 * `delaySeconds` + 2 from now, is taken by this project's consumer after
 * anything enqueued before it with a delay of at most `delaySeconds` (in a
 * later batch: the batch timeout is 1 s). It matches no rule of this
 * project's ROUTER, so it reaches no destination: its `unrouted` line says
 * the consumer took it.
 */
import { env } from 'cloudflare:workers';
import { expect, vi } from 'vitest';
import { routerMessage } from './consumer';
import { watchLogs } from './observe';
import { sampleEvent } from './webhook';

/** `delaySeconds`: the longest delay the follow-up a test looks for could have had. */
export async function sentinelConsumed(delaySeconds: number): Promise<void> {
  const logs = watchLogs();
  const sentinel = sampleEvent({ event: 'session.created', data: { id: `session_${crypto.randomUUID()}`, object: 'session' } });
  await env.EVENTS_QUEUE.send(routerMessage(sentinel), { contentType: 'json', delaySeconds: delaySeconds + 2 });
  await vi.waitFor(() => expect(logs.about(sentinel.id as string, 'unrouted')).not.toEqual([]), { timeout: (delaySeconds + 20) * 1000, interval: 100 });
}
