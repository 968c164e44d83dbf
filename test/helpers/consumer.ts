/** Helpers for consumer tests: build batches of router messages and run the real queue handler. */
import { createExecutionContext, createMessageBatch, getQueueResult } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { expect, vi } from 'vitest';
import worker from '../../src/index';
import type { RouterMessage } from '../../src/queue/message';

let seq = 0;

export function routerMessage(event: Record<string, unknown>, extra: Partial<RouterMessage> = {}): RouterMessage {
  return {
    v: 1,
    id: event.id as string,
    type: event.event as string,
    created_at: event.created_at as string,
    source: 'webhook',
    accepted_at: Date.now(),
    body: JSON.stringify(event),
    ...extra,
  };
}

export function testEnv(router: unknown, extra: Record<string, unknown> = {}): Env {
  return { ...env, ROUTER: router, ...extra } as unknown as Env;
}

export async function runBatch(messages: RouterMessage[], runEnv: Env, queue = 'workos-router-events', attempts = 1) {
  const batch = createMessageBatch<RouterMessage>(
    queue,
    messages.map((body) => ({ id: `msg-${++seq}`, timestamp: new Date(), attempts, body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch as MessageBatch<unknown>, runEnv, ctx);
  const result = await getQueueResult(batch, ctx);
  return { batch, result };
}

/**
 * Runs one message, at `attempts`, through the real queue handler and returns
 * the delays of the retries it asked the platform for (the platform's message
 * observed, not stubbed); the message must not be acked.
 */
export async function retryDelaysOf(body: RouterMessage, attempts: number, runEnv: Env = env): Promise<(number | undefined)[]> {
  const batch = createMessageBatch<RouterMessage>('workos-router-events', [{ id: `msg-${++seq}`, timestamp: new Date(), attempts, body }]);
  const message = batch.messages[0] as Message<RouterMessage>;
  const retry = vi.spyOn(message, 'retry');
  const ack = vi.spyOn(message, 'ack');
  const ctx = createExecutionContext();
  await worker.queue(batch as MessageBatch<unknown>, runEnv, ctx);
  await getQueueResult(batch, ctx);
  expect(ack).not.toHaveBeenCalled();
  return retry.mock.calls.map((c) => c[0]?.delaySeconds);
}
