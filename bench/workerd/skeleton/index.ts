/**
 * Bench-only Worker for `npm run bench -- ingest` (never deployed): the floor
 * of the router's design. It makes the same runtime hops per event as the
 * router and does nothing else, so its CPU per event is what any
 * implementation of this design pays on the same setup:
 *
 *   POST /webhooks/workos  read the body, check the WorkOS signature (the
 *                          router's own verifyWorkOSSignature), read the id,
 *                          one Durable Object RPC carrying the body, answer
 *   SkeletonLedger.admit   one SQLite lookup of the id; when new, one queue
 *                          send and one SQLite row (the durable accept)
 *   queue consumer         one HTTP POST of each body to SINK_URL, then ack
 *
 * Left out, on purpose: configuration, routing rules, retries and dead
 * letters, ordering, the delivery trace, the destination registry,
 * counters, log lines. The router's CPU above this floor is the price of
 * those.
 */
import { DurableObject } from 'cloudflare:workers';
import { Hono } from 'hono';
import { verifyWorkOSSignature } from '../../../src/webhook/signature';

interface SkeletonEnv {
  WORKOS_WEBHOOK_SECRET?: string;
  SINK_URL: string;
  LEDGER: DurableObjectNamespace<SkeletonLedger>;
  QUEUE: Queue<{ id: string; body: string }>;
}

const SHARDS = 16;

export class SkeletonLedger extends DurableObject<SkeletonEnv> {
  constructor(ctx: DurableObjectState, env: SkeletonEnv) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID');
  }

  async admit(id: string, body: string): Promise<'accepted' | 'duplicate'> {
    const sql = this.ctx.storage.sql;
    if (sql.exec('SELECT 1 FROM seen WHERE id = ?', id).toArray().length > 0) return 'duplicate';
    await this.env.QUEUE.send({ id, body }, { contentType: 'json' });
    sql.exec('INSERT OR REPLACE INTO seen (id, body) VALUES (?, ?)', id, body);
    return 'accepted';
  }
}

function shardOf(id: string): string {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (Math.imul(h, 31) + id.charCodeAt(i)) | 0;
  return `shard-${(h >>> 0) % SHARDS}`;
}

const app = new Hono<{ Bindings: SkeletonEnv }>();

app.get('/health', (c) => c.json({ status: 'ok' }));

app.post('/webhooks/workos', async (c) => {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  const verified = await verifyWorkOSSignature({
    header: c.req.header('workos-signature') ?? null,
    body: bytes,
    secrets: [c.env.WORKOS_WEBHOOK_SECRET ?? ''],
    toleranceSeconds: 180,
  });
  if (!verified.ok) return c.json({ error: verified.reason }, 401);
  const body = new TextDecoder().decode(bytes);
  const id = (JSON.parse(body) as { id: string }).id;
  const ledger = c.env.LEDGER.get(c.env.LEDGER.idFromName(shardOf(id)));
  const status = await ledger.admit(id, body);
  return c.json({ status, id }, 200);
});

export default {
  fetch: app.fetch,
  async queue(batch: MessageBatch<{ id: string; body: string }>, env: SkeletonEnv): Promise<void> {
    await Promise.all(
      batch.messages.map(async (m) => {
        const res = await fetch(env.SINK_URL, { method: 'POST', headers: { 'content-type': 'application/json' }, body: m.body.body });
        await res.body?.cancel();
        if (res.ok) m.ack();
        else m.retry();
      }),
    );
  },
} satisfies ExportedHandler<SkeletonEnv, { id: string; body: string }>;
