/**
 * The queue settings the delivery promises rest on, read from wrangler.toml as
 * wrangler reads them (they cannot be observed from inside workerd).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'smol-toml';
import { describe, expect, it } from 'vitest';

interface Consumer {
  queue: string;
  max_retries?: number;
  retry_delay?: number;
  dead_letter_queue?: string;
}

const toml = parse(readFileSync(resolve(__dirname, '../../wrangler.toml'), 'utf8')) as unknown as { queues: { consumers: Consumer[] } };
const consumer = (name: string) => toml.queues.consumers.find((c) => c.queue === name);

describe('wrangler.toml queue consumers', () => {
  it('the router queue sends what it gives up on to the DLQ', () => {
    expect(consumer('workos-router-events')).toMatchObject({ dead_letter_queue: 'workos-router-events-dlq', max_retries: 100 });
  });

  it('the DLQ consumer retries generously (the platform default of 3 would discard dead letters when the store is down)', () => {
    const dlq = consumer('workos-router-events-dlq');
    expect(dlq?.max_retries).toBeGreaterThanOrEqual(100);
    expect(dlq?.retry_delay).toBeGreaterThanOrEqual(60);
  });
});
