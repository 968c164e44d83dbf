/**
 * The one accept path shared by webhooks and reconciliation: route the event
 * to its ledger shard, which checks the id and ordering, enqueues and
 * records it in a single Durable Object request. Reconciliation hands a
 * page's events to each shard in one request (`admitEvents`).
 */
import type { RouterConfig, RouterSettings } from '../config/router-config';
import type { AdmitRequest, AdmitResult } from '../dedup/ledger';
import { ledgerStubByName, orderingKeyOf, shardName, shardOf } from '../dedup/shard';
import type { UnknownEvent } from '../events/catalog';
import { errorName, log } from '../log';
import type { RouterMessage } from '../queue/message';

/**
 * An event to admit: the parsed event and the exact text it came as, and
 * whether a rule routes it (an event no rule routes is still deduplicated,
 * but does not move its object's ordering record: README, Out-of-order
 * protection, counts the newest event *routed*).
 */
export interface Admission {
  event: UnknownEvent;
  text: string;
  bodyBytes: number;
  routed: boolean;
}

/** Bodies carried by one ledger request of `admitEvents` at most (well under an RPC message's limit). */
export const ADMIT_CALL_BYTES = 4 * 1024 * 1024;

/** Whether a rule of `config` routes the event (its `where` included). */
export function isRouted(config: RouterConfig, event: UnknownEvent): boolean {
  return config.matcher.match(event).rules.length > 0;
}

function admitRequestOf(settings: RouterSettings, a: Admission, source: RouterMessage['source']): AdmitRequest {
  const { event } = a;
  const createdAtMs = Date.parse(event.created_at);
  const ordering = orderingKeyOf(event);
  // The shard key (what shardKeyOf gives), from the ordering key already at hand.
  const key = ordering?.key ?? event.id;
  const shard = shardName(shardOf(key, settings.dedupShards));
  // Since dedup_shards changed (dedup_shards_previous): the shard the event met before, when it is another one.
  const previous = settings.dedupShardsPrevious === undefined ? shard : shardName(shardOf(key, settings.dedupShardsPrevious));
  const ordered = ordering !== undefined && !Number.isNaN(createdAtMs);
  return {
    id: event.id,
    type: event.event,
    created_at: event.created_at,
    body: a.text,
    bodyBytes: a.bodyBytes,
    source,
    shard,
    ...(previous !== shard ? { previousShard: previous } : {}),
    // The shard key, where the ledger could not tell it from the request (an ordering key without a date).
    ...(ordering !== undefined && !ordered ? { shardKey: key } : {}),
    retentionMs: settings.dedupRetentionDays * 86_400_000,
    ...(ordered
      ? { ordering: { ...ordering, createdAtMs, deletion: event.event.endsWith('.deleted'), ...(a.routed ? {} : { routed: false }) } }
      : {}),
  };
}

export async function admitEvent(env: Env, config: RouterConfig, event: UnknownEvent, text: string, bodyBytes: number, source: RouterMessage['source']): Promise<AdmitResult> {
  const req = admitRequestOf(config.settings, { event, text, bodyBytes, routed: isRouted(config, event) }, source);
  try {
    return await ledgerStubByName(env, req.shard).admit(req);
  } catch (err) {
    log('error', 'ledger_unavailable', { event_id: event.id, error: errorName(err) });
    return { status: 'unavailable' };
  }
}

/**
 * Admits several events with one ledger request per shard (more only when
 * their bodies pass `ADMIT_CALL_BYTES`), the requests running side by side.
 * Results come back in the order given; a request that fails answers
 * `unavailable` for each of its events. Events about one object keep the
 * order given. `onCall` is told of each ledger request made.
 */
export async function admitEvents(
  env: Env,
  settings: RouterSettings,
  admissions: readonly Admission[],
  source: RouterMessage['source'],
  onCall: () => void = () => {},
): Promise<AdmitResult[]> {
  type Call = { at: number[]; reqs: AdmitRequest[]; bytes: number };
  const byShard = new Map<string, Call[]>();
  for (const [i, a] of admissions.entries()) {
    const req = admitRequestOf(settings, a, source);
    const calls = byShard.get(req.shard) ?? [];
    byShard.set(req.shard, calls);
    let call = calls.at(-1);
    if (call === undefined || call.bytes + a.bodyBytes > ADMIT_CALL_BYTES) {
      call = { at: [], reqs: [], bytes: 0 };
      calls.push(call);
    }
    call.at.push(i);
    call.reqs.push(req);
    call.bytes += a.bodyBytes;
  }
  const results: AdmitResult[] = admissions.map(() => ({ status: 'unavailable' }));
  // Shards side by side; one shard's requests one after another, so its events keep their order.
  await Promise.all(
    [...byShard].map(async ([shard, calls]) => {
      for (const call of calls) {
        onCall();
        try {
          const answers = await ledgerStubByName(env, shard).admitMany(call.reqs);
          for (const [k, i] of call.at.entries()) results[i] = answers[k] ?? { status: 'unavailable' };
        } catch (err) {
          log('error', 'ledger_unavailable', { shard, events: call.reqs.length, error: errorName(err) });
        }
      }
    }),
  );
  return results;
}
