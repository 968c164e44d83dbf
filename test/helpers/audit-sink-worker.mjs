/**
 * audit-sink: the consumer of the `workos-audit` queue in the `workers` and
 * `delivery` test projects (an auxiliary Worker of vitest.config.ts; plain
 * JavaScript, not bundled). It stands where a downstream consumer of the
 * router's `audit` queue destination would: every message body it is handed
 * (the JSON value as sent: a WorkOS envelope, `stale: true` when marked) is
 * kept under its `id` field, in arrival order, duplicates included, and the
 * batch is acked. The tests ask it (service binding AUDIT_SINK):
 *
 *   GET  /deliveries?id=<id>          → JSON array of the bodies received for <id>
 *   POST /counts  {"ids": [<id>, …]}  → JSON array of how many were received for each
 *
 * Storage is module memory: workerd runs one isolate per Worker for the life
 * of the runtime, so the queue handler and fetch share it; each test reads
 * only ids it made itself, within its own run.
 */

/** Event id → bodies received, in arrival order. */
const received = new Map();

function idOf(body) {
  return body !== null && typeof body === 'object' && typeof body.id === 'string' ? body.id : '';
}

export default {
  async queue(batch) {
    // All of a batch is stored before the handler returns (no await in between): once
    // one of its bodies can be read, all of them can, and the broker hands over the
    // next batch only after this one returned.
    for (const message of batch.messages) {
      const id = idOf(message.body);
      let list = received.get(id);
      if (list === undefined) received.set(id, (list = []));
      list.push(message.body);
    }
    batch.ackAll();
  },

  async fetch(request) {
    const url = new URL(request.url);
    if (request.method === 'GET' && url.pathname === '/deliveries') {
      const id = url.searchParams.get('id');
      if (id === null) return Response.json({ error: 'id is required' }, { status: 400 });
      return Response.json(received.get(id) ?? []);
    }
    if (request.method === 'POST' && url.pathname === '/counts') {
      const { ids } = await request.json();
      if (!Array.isArray(ids)) return Response.json({ error: 'ids must be an array' }, { status: 400 });
      return Response.json(ids.map((id) => received.get(id)?.length ?? 0));
    }
    return Response.json({ error: 'not found' }, { status: 404 });
  },
};
