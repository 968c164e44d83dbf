/**
 * Bench-only Worker entry for `npm run bench -- cost` (plain JS so the Node
 * typecheck of bench/ does not pull the Worker's types in).
 *
 * Re-exports the router (src/index.ts: every export, every handler) with
 * counting wrappers around:
 *   - the fetch and queue handlers (invocations, messages per batch);
 *   - every env binding they and the Durable Objects see: Durable Object
 *     namespaces (each stub method call = one billed DO request), queue
 *     producers (send / sendBatch, message bytes);
 *   - the Durable Object classes (incoming RPC calls, SQLite rows read and
 *     written, active wall time per object);
 *   - global fetch (outgoing HTTP subrequests; in this app only the queue
 *     consumer fetches).
 * GET /__bench/counters returns the counters, merged across isolates (the
 * Durable Objects are asked over RPC; those calls are not counted).
 */
import router, {
  DedupLedger as BaseLedger,
  DeadLetterStore as BaseDeadLetters,
  DestinationRegistry as BaseRegistry,
  DeliveryTrace as BaseTrace,
  Reconciler as BaseReconciler,
} from '../../../src/index.ts';

// Every other export of the router (Durable Object classes added later included)
// passes through unchanged; the local class exports below take precedence.
export * from '../../../src/index.ts';

// Random values are not allowed at global scope: the isolate's id is drawn on first use.
let isolateId = null;
const isolate = () => (isolateId ??= crypto.randomUUID());

function freshCounters() {
  return {
    fetchInvocations: {},
    queueInvocations: {},
    scheduledInvocations: 0,
    queueMessagesReceived: {},
    doCalls: {},
    doIncoming: {},
    queueSends: {},
    queueMessagesSent: {},
    queueMessageBytes: {},
    queueMessageChunks: {},
    httpSubrequests: {},
    sqlRowsRead: 0,
    sqlRowsWritten: 0,
    sqlStatements: 0,
    doActiveMs: 0,
    /** Trace rows removed by a bucket's expiry (deleteAll: not SQL, counted here as rows). */
    traceRowsExpired: 0,
    /** storage.setAlarm() calls by object kind: each is billed as one row written. */
    setAlarms: {},
    /** Synchronous KV API calls (storage.kv) by object kind: a put or delete writes a row, a get reads one. */
    kvWrites: {},
    kvReads: {},
  };
}

let counters = freshCounters();
const cursors = [];

function inc(map, key, n = 1) {
  map[key] = (map[key] ?? 0) + n;
}

// ---------------------------------------------------------------------------
// env wrapping
// ---------------------------------------------------------------------------

// RPC stubs answer any property name with another RPC property, so `method.apply`
// would be a remote call named "apply": always call through Reflect.apply.
function wrapStub(stub, ns, context) {
  return new Proxy(stub, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (typeof prop !== 'string' || typeof value !== 'function' || prop === 'then') return value;
      return (...args) => {
        inc(counters.doCalls, `${context}: ${ns}.${prop}`);
        return Reflect.apply(value, target, args);
      };
    },
  });
}

function wrapNamespace(namespace, name, context) {
  return new Proxy(namespace, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (typeof value !== 'function') return value;
      if (prop === 'get' || prop === 'getByName') return (...args) => wrapStub(Reflect.apply(value, target, args), name, context);
      return ((...a) => Reflect.apply(value, target, a));
    },
  });
}

function messageBytes(body) {
  try {
    return new TextEncoder().encode(typeof body === 'string' ? body : JSON.stringify(body)).byteLength;
  } catch {
    return 0;
  }
}

function countMessage(name, context, body) {
  // Queues bill per 64 KB chunk (1 KB = 1,000 bytes; about 100 bytes of metadata per message).
  const bytes = messageBytes(body);
  inc(counters.queueMessagesSent, `${context}: ${name}`);
  inc(counters.queueMessageBytes, `${context}: ${name}`, bytes);
  inc(counters.queueMessageChunks, `${context}: ${name}`, Math.max(1, Math.ceil((bytes + 100) / 64_000)));
}

function wrapQueue(queue, name, context) {
  return new Proxy(queue, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (prop === 'send') {
        return (body, opts) => {
          inc(counters.queueSends, `${context}: ${name}.send`);
          countMessage(name, context, body);
          return Reflect.apply(value, target, [body, opts]);
        };
      }
      if (prop === 'sendBatch') {
        return (messages, opts) => {
          inc(counters.queueSends, `${context}: ${name}.sendBatch`);
          for (const m of messages) countMessage(name, context, m.body);
          return Reflect.apply(value, target, [messages, opts]);
        };
      }
      return typeof value === 'function' ? ((...a) => Reflect.apply(value, target, a)) : value;
    },
  });
}

const envProxies = new Map(); // context -> WeakMap(env -> proxy)

function wrapEnv(env, context) {
  let byEnv = envProxies.get(context);
  if (byEnv === undefined) {
    byEnv = new WeakMap();
    envProxies.set(context, byEnv);
  }
  const cached = byEnv.get(env);
  if (cached !== undefined) return cached;
  const wrapped = {};
  for (const key of Object.keys(env)) {
    const value = env[key];
    if (value !== null && typeof value === 'object' && typeof value.idFromName === 'function') wrapped[key] = wrapNamespace(value, key, context);
    else if (value !== null && typeof value === 'object' && typeof value.send === 'function' && typeof value.sendBatch === 'function') wrapped[key] = wrapQueue(value, key, context);
    else wrapped[key] = value;
  }
  byEnv.set(env, wrapped);
  return wrapped;
}

// ---------------------------------------------------------------------------
// global fetch
// ---------------------------------------------------------------------------

const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  let key = 'other';
  try {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    key = `${url.host}${url.pathname}`;
  } catch {
    // keep 'other'
  }
  inc(counters.httpSubrequests, key);
  return realFetch(input, init);
};

// ---------------------------------------------------------------------------
// Durable Objects
// ---------------------------------------------------------------------------

/**
 * The runtime only accepts its own DurableObjectState as `ctx`, so the objects
 * get the real one; their SQL handle (`this.sql`, a plain property at run time)
 * is replaced after construction by a wrapper that keeps every cursor, whose
 * rowsRead / rowsWritten are summed at read-out. (Schema statements run in the
 * constructors are not counted.) `storage.setAlarm()` is counted too: the
 * pricing page bills each call as one row written.
 */
function countSetAlarm(storage, kind) {
  const real = storage.setAlarm;
  storage.setAlarm = (...args) => {
    inc(counters.setAlarms, kind);
    return Reflect.apply(real, storage, args);
  };
}

/** The synchronous KV API of a SQLite-backed object: its rows are billed as SQLite rows (a list's rows are not counted). */
function countKv(kv, kind) {
  for (const [method, map] of [['put', 'kvWrites'], ['delete', 'kvWrites'], ['get', 'kvReads']]) {
    const real = kv[method];
    kv[method] = (...args) => {
      const result = Reflect.apply(real, kv, args);
      // A delete writes a row only when the key was there (it answers whether it was).
      if (method !== 'delete' || result === true) inc(counters[map], kind);
      return result;
    };
  }
}

function wrapSql(sql) {
  return new Proxy(sql, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (prop === 'exec') {
        return (...args) => {
          const cursor = Reflect.apply(value, target, args);
          counters.sqlStatements++;
          cursors.push({ sql: String(args[0]).replace(/\s+/g, ' ').trim().slice(0, 72), cursor });
          return cursor;
        };
      }
      return typeof value === 'function' ? ((...a) => Reflect.apply(value, target, a)) : value;
    },
  });
}

/** Tracks the union of an object's busy intervals (duration is billed while active, shared by overlapping requests). */
class ActiveClock {
  active = 0;
  since = 0;
  enter() {
    if (this.active++ === 0) this.since = Date.now();
  }
  leave() {
    if (--this.active === 0) counters.doActiveMs += Date.now() - this.since;
  }
}

async function timed(clock, name, fn) {
  inc(counters.doIncoming, name);
  clock.enter();
  try {
    return await fn();
  } finally {
    clock.leave();
  }
}

export class DedupLedger extends BaseLedger {
  #clock = new ActiveClock();
  constructor(ctx, env) {
    countSetAlarm(ctx.storage, 'ledger');
    super(ctx, wrapEnv(env, 'ledger DO'));
    this.sql = wrapSql(ctx.storage.sql);
  }
  /** Set while admitMany hands its events to admit (synchronously): those are not requests of their own. */
  #inMany = false;
  admit(req) {
    if (this.#inMany) return super.admit(req);
    return timed(this.#clock, 'DedupLedger.admit', () => super.admit(req));
  }
  admitMany(reqs) {
    return timed(this.#clock, 'DedupLedger.admitMany', () => {
      this.#inMany = true;
      try {
        return super.admitMany(reqs);
      } finally {
        this.#inMany = false;
      }
    });
  }
  getBody(id) {
    return timed(this.#clock, 'DedupLedger.getBody', () => super.getBody(id));
  }
  isCommitted(id) {
    return timed(this.#clock, 'DedupLedger.isCommitted', () => super.isCommitted(id));
  }
  alarm(info) {
    return timed(this.#clock, 'DedupLedger.alarm', () => super.alarm(info));
  }
  /** The bench's "time passes": every row expires now (not counted), then the sweep runs (counted). */
  async __benchExpireAll() {
    const raw = this.ctx.storage.sql;
    for (const t of ['ledger', 'bodies', 'objects']) raw.exec(`UPDATE ${t} SET expires_at = 0`);
    raw.exec('UPDATE ledger_days SET drop_at = 0');
    await this.alarm();
  }
  /** Not counted: the benchmark's read-out. */
  async __benchCounters() {
    return snapshot();
  }
}

export class DeadLetterStore extends BaseDeadLetters {
  constructor(ctx, env) {
    countSetAlarm(ctx.storage, 'dead letters');
    super(ctx, wrapEnv(env, 'dead-letter DO'));
    this.sql = wrapSql(ctx.storage.sql);
  }
  add(records) {
    inc(counters.doIncoming, 'DeadLetterStore.add');
    return super.add(records);
  }
}

export class DestinationRegistry extends BaseRegistry {
  #clock = new ActiveClock();
  constructor(ctx, env) {
    countSetAlarm(ctx.storage, 'destination registry');
    super(ctx, env);
    this.sql = wrapSql(ctx.storage.sql);
  }
  paused() {
    return timed(this.#clock, 'DestinationRegistry.paused', () => super.paused());
  }
  blocked() {
    return timed(this.#clock, 'DestinationRegistry.blocked', () => super.blocked());
  }
  reserve(requests, horizonMs) {
    return timed(this.#clock, 'DestinationRegistry.reserve', () => super.reserve(requests, horizonMs));
  }
  report(reports, circuits) {
    return timed(this.#clock, 'DestinationRegistry.report', () => super.report(reports, circuits));
  }
  /** The webhook Worker's counters, flushed at most once per 10 s per isolate. */
  addCounters(entries) {
    return timed(this.#clock, 'DestinationRegistry.addCounters', () => super.addCounters(entries));
  }
  alarm(info) {
    return timed(this.#clock, 'DestinationRegistry.alarm', () => super.alarm(info));
  }
}

export class Reconciler extends BaseReconciler {
  #clock = new ActiveClock();
  constructor(ctx, env) {
    countSetAlarm(ctx.storage, 'reconciler');
    countKv(ctx.storage.kv, 'reconciler');
    super(ctx, wrapEnv(env, 'reconciler DO'));
  }
  run(opts) {
    return timed(this.#clock, 'Reconciler.run', () => super.run(opts));
  }
}

export class DeliveryTrace extends BaseTrace {
  #clock = new ActiveClock();
  constructor(ctx, env) {
    countSetAlarm(ctx.storage, 'trace bucket');
    super(ctx, env);
    this.sql = wrapSql(ctx.storage.sql);
  }
  record(writes, expiresAt) {
    return timed(this.#clock, 'DeliveryTrace.record', () => super.record(writes, expiresAt));
  }
  /** The bench's "time passes": the bucket's retention alarm runs now. */
  async __benchExpire() {
    counters.traceRowsExpired += this.ctx.storage.sql.exec('SELECT COUNT(*) AS n FROM trace').one().n;
    await this.alarm();
  }
  alarm(info) {
    return timed(this.#clock, 'DeliveryTrace.alarm', () => super.alarm(info));
  }
}

function snapshot() {
  let rowsRead = 0;
  let rowsWritten = 0;
  const sqlByStatement = {};
  for (const { sql, cursor } of cursors) {
    rowsRead += cursor.rowsRead;
    rowsWritten += cursor.rowsWritten;
    const s = (sqlByStatement[sql] ??= { calls: 0, rowsRead: 0, rowsWritten: 0 });
    s.calls++;
    s.rowsRead += cursor.rowsRead;
    s.rowsWritten += cursor.rowsWritten;
  }
  // Billed as one row written per call (named so that the trace bucket's calls count with the trace).
  for (const [kind, n] of Object.entries(counters.setAlarms)) {
    rowsWritten += n;
    sqlByStatement[`storage.setAlarm() in the ${kind}`] = { calls: n, rowsRead: 0, rowsWritten: n };
  }
  for (const [kind, n] of Object.entries(counters.kvWrites)) {
    rowsWritten += n;
    sqlByStatement[`storage.kv put/delete in the ${kind}`] = { calls: n, rowsRead: 0, rowsWritten: n };
  }
  for (const [kind, n] of Object.entries(counters.kvReads)) {
    rowsRead += n;
    sqlByStatement[`storage.kv get in the ${kind}`] = { calls: n, rowsRead: n, rowsWritten: 0 };
  }
  return { isolate: isolate(), counters: { ...counters, sqlRowsRead: rowsRead, sqlRowsWritten: rowsWritten, sqlByStatement } };
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

export default {
  ...router,
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/__bench/counters') {
      const shards = Number(url.searchParams.get('shards') ?? '16');
      const snapshots = [snapshot()];
      for (let i = 0; i < shards; i++) {
        const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(`ledger-${i}`));
        snapshots.push(await stub.__benchCounters());
      }
      const seen = new Set();
      const merged = snapshots.filter((s) => (seen.has(s.isolate) ? false : (seen.add(s.isolate), true)));
      return Response.json({ isolates: merged.length, snapshots: merged });
    }
    if (url.pathname === '/__bench/expire') {
      const shards = Number(url.searchParams.get('shards') ?? '16');
      for (let i = 0; i < shards; i++) await env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(`ledger-${i}`)).__benchExpireAll();
      for (const name of url.searchParams.getAll('bucket')) await env.DELIVERY_TRACE.get(env.DELIVERY_TRACE.idFromName(name)).__benchExpire();
      return Response.json({ ok: true });
    }
    if (url.pathname === '/__bench/reset') {
      counters = freshCounters();
      cursors.length = 0;
      return Response.json({ ok: true });
    }
    inc(counters.fetchInvocations, `${request.method} ${url.pathname}`);
    return router.fetch(request, wrapEnv(env, 'webhook'), ctx);
  },
  async scheduled(controller, env, ctx) {
    counters.scheduledInvocations++;
    return router.scheduled(controller, wrapEnv(env, 'cron'), ctx);
  },
  async queue(batch, env, ctx) {
    inc(counters.queueInvocations, batch.queue);
    inc(counters.queueMessagesReceived, batch.queue, batch.messages.length);
    return router.queue(batch, wrapEnv(env, 'consumer'), ctx);
  },
};
