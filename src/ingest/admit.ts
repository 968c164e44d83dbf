/**
 * The one accept path shared by webhooks and reconciliation: route the event
 * to its ledger shard, which checks the id and ordering, enqueues and
 * records it in a single Durable Object request.
 */
import type { RouterSettings } from '../config/router-config';
import type { AdmitResult } from '../dedup/ledger';
import { ledgerStub, orderingKeyOf, shardKeyOf } from '../dedup/shard';
import type { UnknownEvent } from '../events/catalog';
import { errorName, log } from '../log';
import type { RouterMessage } from '../queue/message';

export async function admitEvent(
  env: Env,
  settings: RouterSettings,
  event: UnknownEvent,
  text: string,
  bodyBytes: number,
  source: RouterMessage['source'],
): Promise<AdmitResult> {
  const { name: shard, stub } = ledgerStub(env, shardKeyOf(event), settings.dedupShards);
  const createdAtMs = Date.parse(event.created_at);
  const ordering = orderingKeyOf(event);
  try {
    return await stub.admit({
      id: event.id,
      type: event.event,
      created_at: event.created_at,
      body: text,
      bodyBytes,
      source,
      shard,
      retentionMs: settings.dedupRetentionDays * 86_400_000,
      ...(ordering !== undefined && !Number.isNaN(createdAtMs)
        ? { ordering: { ...ordering, createdAtMs, deletion: event.event.endsWith('.deleted') } }
        : {}),
    });
  } catch (err) {
    log('error', 'ledger_unavailable', { event_id: event.id, error: errorName(err) });
    return { status: 'unavailable' };
  }
}
