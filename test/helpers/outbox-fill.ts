/** Test helper: a Slack outbox brought to `max_pending` with placeholder entries (ids `filler_<n>`). */
import { runInDurableObject } from 'cloudflare:test';
import type { outboxStub } from '../../src/destinations/slack/outbox';

/** Adds placeholder entries until the outbox holds `total` (10,000: the default max_pending). */
export async function fillOutbox(outbox: ReturnType<typeof outboxStub>, total = 10_000): Promise<void> {
  await runInDurableObject(outbox, (_i, state) => {
    const n = total - state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM entries').one().n;
    state.storage.sql.exec(
      `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
       INSERT INTO entries (event_id, event_type, rules, single, sample, key_field, key_value, raw, received_at)
       SELECT 'filler_' || i, 'user.created', '[]', NULL, 'x', NULL, NULL, '{}', ? FROM c`,
      n,
      Date.now(),
    );
  });
}

/** Removes the placeholder entries. */
export async function emptyFiller(outbox: ReturnType<typeof outboxStub>): Promise<void> {
  await runInDurableObject(outbox, (_i, state) => void state.storage.sql.exec("DELETE FROM entries WHERE event_id LIKE 'filler_%'"));
}
