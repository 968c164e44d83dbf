/**
 * Bench-only Worker for `npm run bench -- ingest` (never deployed).
 *
 * POST /webhooks/workos — the ceiling: the same framework (Hono) on the same
 *   workerd setup, doing the least a webhook endpoint can do: read the body and
 *   answer 200 with a small JSON body like the router's.
 * POST /webhooks/workos/worker-steps — the router's own Worker-side steps
 *   without the durable accept: the capped body read, the signature check, the
 *   envelope parse and the structured log line, all from src/, then 200. No
 *   Durable Object, no queue. The difference between this and the router is
 *   what accepting durably (ledger RPC, SQLite, queue send) costs.
 */
import { Hono } from 'hono';
import { log } from '../../../src/log';
import { readBodyCapped } from '../../../src/webhook/body';
import { parseEnvelope } from '../../../src/webhook/envelope';
import { verifyWorkOSSignature } from '../../../src/webhook/signature';

const app = new Hono<{ Bindings: { WORKOS_WEBHOOK_SECRET?: string } }>();

app.get('/health', (c) => c.json({ status: 'ok' }));

app.post('/webhooks/workos', async (c) => {
  const body = await c.req.arrayBuffer();
  return c.json({ status: 'accepted', bytes: body.byteLength }, 200);
});

app.post('/webhooks/workos/worker-steps', async (c) => {
  const started = Date.now();
  const body = await readBodyCapped(c.req.raw, 1_048_576);
  if (!body.ok) return c.json({ error: 'payload_too_large' }, 413);
  const verified = await verifyWorkOSSignature({
    header: c.req.header('workos-signature') ?? null,
    body: body.bytes,
    secrets: [c.env.WORKOS_WEBHOOK_SECRET ?? ''],
    toleranceSeconds: 180,
  });
  if (!verified.ok) return c.json({ error: verified.reason }, 401);
  const envelope = parseEnvelope(body.bytes);
  if (!envelope.ok) return c.json({ error: envelope.reason }, 400);
  log('info', 'webhook', {
    event_id: envelope.event.id,
    event_type: envelope.event.event,
    outcome: 'accepted',
    status: 200,
    duration_ms: Date.now() - started,
  });
  return c.json({ status: 'accepted', id: envelope.event.id }, 200);
});

export default app;
