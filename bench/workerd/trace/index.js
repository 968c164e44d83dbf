/**
 * Bench-only entry for `npm run bench -- trace`: the router exactly as
 * deployed (every export of src/index.ts), except that the delivery trace's
 * buckets also accept `seed()`, which writes a synthetic week of traffic with
 * SQL alone (fast), and a `/__bench/seed` route to call it. Queries are then
 * timed through the real `GET /admin/events` routes. Never deployed.
 */
import router, { DeliveryTrace as BaseTrace } from '../../../src/index.ts';

export * from '../../../src/index.ts';

const TYPES = [
  'user.created', 'user.updated', 'user.deleted', 'dsync.user.created', 'dsync.user.updated', 'dsync.user.deleted',
  'dsync.group.created', 'dsync.group.user_added', 'organization.updated', 'organization_membership.created',
  'authentication.email_verification_succeeded', 'authentication.password_failed', 'session.created', 'connection.activated',
  'role.created', 'organization_domain.verified', 'vault.data.read', 'api_key.created', 'invitation.created', 'magic_auth.created',
];

export class DeliveryTrace extends BaseTrace {
  /**
   * Writes `count` acceptances, one every `stepMs` from `fromMs`, numbered from
   * `first`: every one to `crm`; every other one to `warehouse` too. States:
   * 0.5 % dead-lettered, 1 % retrying, 0.5 % held, the rest delivered.
   */
  async seed(fromMs, stepMs, first, count) {
    const sql = this.ctx.storage.sql;
    sql.exec('CREATE TABLE IF NOT EXISTS bench_types (k INTEGER PRIMARY KEY, name TEXT NOT NULL)');
    if (sql.exec('SELECT COUNT(*) AS n FROM bench_types').one().n === 0) {
      TYPES.forEach((t, i) => sql.exec('INSERT INTO bench_types (k, name) VALUES (?, ?)', i, t));
    }
    const insert = (destination, every) =>
      sql.exec(
        `WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 + ?2 - 1)
         INSERT INTO trace (accepted_at, event_id, destination, event_type, source, stale, body_shard, rules, state, next_attempt_at, attempts, updated_at)
         SELECT ?3 + (i - ?1) * ?4, printf('event_%026d', i), ?5, t.name, CASE WHEN i % 50 = 7 THEN 'reconcile' ELSE 'webhook' END, 0, 'ledger-' || (i % 16),
                '["r1"]',
                CASE WHEN i % 200 = 4 THEN 'dead_lettered' WHEN i % 100 = 5 THEN 'retrying' WHEN i % 200 = 9 THEN 'held' ELSE 'delivered' END,
                CASE WHEN i % 100 = 5 THEN ?3 + (i - ?1) * ?4 + 60000 ELSE NULL END,
                json_array(json_object('at', ?3 + (i - ?1) * ?4 + 20, 'status', CASE WHEN i % 200 = 4 THEN 503 ELSE 200 END, 'error', NULL, 'duration_ms', 35)),
                ?3 + (i - ?1) * ?4 + 60
         FROM n JOIN bench_types t ON t.k = n.i % ${TYPES.length}
         WHERE n.i % ?6 = 0`,
        first,
        count,
        fromMs,
        stepMs,
        destination,
        every,
      ).rowsWritten;
    for (const d of ['crm', 'warehouse']) sql.exec('INSERT OR IGNORE INTO trace_destinations (destination) VALUES (?)', d);
    for (const t of TYPES) sql.exec('INSERT OR IGNORE INTO trace_types (event_type) VALUES (?)', t);
    const written = insert('crm', 1) + insert('warehouse', 2);
    const alarm = await this.ctx.storage.getAlarm();
    if (alarm === null) await this.ctx.storage.setAlarm(Date.now() + 30 * 86_400_000);
    return written;
  }
}

export default {
  ...router,
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/__bench/seed') {
      const p = (n) => Number(url.searchParams.get(n));
      const name = url.searchParams.get('bucket') ?? '';
      const stub = env.DELIVERY_TRACE.get(env.DELIVERY_TRACE.idFromName(name));
      try {
        const written = await stub.seed(p('from'), p('step'), p('first'), p('count'));
        return Response.json({ written });
      } catch (err) {
        return Response.json({ error: String(err) }, { status: 500 });
      }
    }
    return router.fetch(request, env, ctx);
  },
};
