/**
 * The public entry point `workos-event-router/events` (src/events/public.ts):
 * `parseRoutedMessage` against what the router's queue destination really
 * sends (every catalog fixture through `deliverQueue`, stale and not), against
 * malformed bodies (pinned reasons; fast-check: never throws, ≥ 1,000 runs
 * each), and compile-time checks (`expectTypeOf`) that narrowing on `event`
 * gives each case its payload type.
 */
import fc from 'fast-check';
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as publicApi from 'workos-event-router/events';
import {
  EVENT_TYPES,
  type EventPayload,
  type EventType,
  type ParseRoutedMessageResult,
  type RoutedEvent,
  type UnknownRoutedEvent,
  type WorkOSEvent,
  parseRoutedMessage,
} from 'workos-event-router/events';
import type { DirectoryUserResponse, UserResponse } from '@workos-inc/node';
import type { QueueDestination } from '../../src/config/router-config';
import { deliverQueue } from '../../src/destinations/queue';
import type { UnknownEvent } from '../../src/events/catalog';
import { FIXTURES } from '../fixtures/events';

const RUNS = 1000;

/** What a consumer of the queue destination gets as `message.body`: the router's own `deliverQueue`, captured. */
async function routed(event: object, stale = false): Promise<unknown> {
  const sent: unknown[] = [];
  const queue = { send: async (body: unknown) => void sent.push(body), sendBatch: async () => undefined };
  const dest = { name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' } as QueueDestination;
  const raw = JSON.stringify(event);
  const delivery = { event: JSON.parse(raw) as UnknownEvent, raw, rules: ['everything-to-audit'], attempts: 0, ...(stale ? { stale: true } : {}) };
  const outcome = await deliverQueue(dest, delivery, { AUDIT_QUEUE: queue } as unknown as Env);
  expect(outcome).toEqual({ ok: true, status: 200 });
  expect(sent).toHaveLength(1);
  // `contentType: 'json'`: the consumer receives the JSON round trip.
  return JSON.parse(JSON.stringify(sent[0]));
}

const envelope = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'event_01HXYZ',
  event: 'user.created',
  data: { id: 'user_01' },
  created_at: '2026-11-20T10:00:00.000Z',
  ...overrides,
});

// ---------------------------------------------------------------------------

describe('the runtime surface', () => {
  it('is the catalog list, its check and the guard: everything else is type-only', () => {
    expect(Object.keys(publicApi).sort()).toEqual(['EVENT_TYPES', 'isCatalogEventType', 'parseRoutedMessage']);
    expect(publicApi.EVENT_TYPES).toHaveLength(89);
  });
});

describe('every catalog event, as the queue destination sends it', () => {
  it.each(EVENT_TYPES)('%s parses, known, unchanged, and not stale', async (type) => {
    const body = await routed(FIXTURES[type]);
    const result = parseRoutedMessage(body);
    expect(result).toEqual({ ok: true, known: true, event: FIXTURES[type] });
    if (!result.ok || !result.known) throw new Error('unreachable');
    expect(result.event.event).toBe(type);
    expect('stale' in result.event).toBe(false);
  });

  it.each(EVENT_TYPES)('%s parses with the stale mark', async (type) => {
    const result = parseRoutedMessage(await routed(FIXTURES[type], true));
    expect(result).toEqual({ ok: true, known: true, event: { ...FIXTURES[type], stale: true } });
    if (!result.ok || !result.known) throw new Error('unreachable');
    expect(result.event.stale).toBe(true);
  });

  it('narrows on `event` at runtime: each case reads its own payload', async () => {
    const seen: string[] = [];
    for (const type of ['dsync.user.created', 'user.deleted', 'organization.created', 'vault.byok_key.deleted'] as const) {
      const result = parseRoutedMessage(await routed(FIXTURES[type]));
      if (!result.ok || !result.known) throw new Error(`${type} did not parse`);
      const e = result.event;
      switch (e.event) {
        case 'dsync.user.created':
          seen.push(`directory user ${e.data.email} in ${e.data.directory_id} (${e.data.state})`);
          break;
        case 'user.deleted':
          seen.push(`user ${e.data.email} deleted`);
          break;
        case 'organization.created':
          seen.push(`organization ${e.data.name}`);
          break;
        case 'vault.byok_key.deleted':
          seen.push(`BYOK key of ${e.data.organization_id} on ${e.data.key_provider}`);
          break;
        default:
          seen.push(`other: ${e.event}`);
      }
    }
    expect(seen).toEqual([
      `directory user ${FIXTURES['dsync.user.created'].data.email} in ${FIXTURES['dsync.user.created'].data.directory_id} (active)`,
      `user ${FIXTURES['user.deleted'].data.email} deleted`,
      `organization ${FIXTURES['organization.created'].data.name}`,
      `BYOK key of ${FIXTURES['vault.byok_key.deleted'].data.organization_id} on AZURE_KEY_VAULT`,
    ]);
  });

  it('an event recovered from the Events API (with `object: "event"`) parses too', async () => {
    const item = { object: 'event', ...FIXTURES['user.created'] };
    expect(parseRoutedMessage(await routed(item))).toEqual({ ok: true, known: true, event: item });
  });
});

describe('event types outside the catalog', () => {
  it.each(['widget.frobnicated', 'pipes.account_connection.connected', 'user', 'USER.CREATED', 'user.created.v2'])(
    '%s is accepted as an UnknownRoutedEvent (known: false), so a consumer can skip it',
    async (type) => {
      const event = envelope({ event: type, data: { anything: [1, 2, 3] } });
      const result = parseRoutedMessage(await routed(event, true));
      expect(result).toEqual({ ok: true, known: false, event: { ...event, stale: true } });
    },
  );
});

describe('lenient where the router is', () => {
  it('drops `context: null` (the router accepts it; the catalog types context as an object) without touching the input', () => {
    const body = envelope({ context: null });
    const result = parseRoutedMessage(body);
    expect(result).toEqual({ ok: true, known: true, event: envelope() });
    if (!result.ok) throw new Error('unreachable');
    expect('context' in result.event).toBe(false);
    expect(body.context).toBeNull();
  });

  it('drops `stale: false` (the router never sends it: absent means not stale)', () => {
    const body = envelope({ stale: false });
    const result = parseRoutedMessage(body);
    expect(result).toEqual({ ok: true, known: true, event: envelope() });
    expect(body.stale).toBe(false);
  });

  it('returns the body itself when there is nothing to drop', () => {
    const body = envelope({ context: { client_id: 'client_01' }, stale: true });
    const result = parseRoutedMessage(body);
    expect(result.ok && result.event).toBe(body);
  });

  it('keeps unknown envelope fields and never checks the payload inside `data`', () => {
    const body = envelope({ event: 'dsync.user.created', data: { not: 'a directory user' }, extra: 1 });
    expect(parseRoutedMessage(body)).toEqual({ ok: true, known: true, event: body });
  });
});

describe('malformed bodies: ok false with a reason, never the content', () => {
  const SECRET = 'sk_live_do_not_echo';
  it.each<[string, unknown, string]>([
    ['undefined', undefined, 'The message body is not a JSON object.'],
    ['null', null, 'The message body is not a JSON object.'],
    ['a string (a body sent as text)', JSON.stringify(envelope()), 'The message body is not a JSON object.'],
    ['a number', 42, 'The message body is not a JSON object.'],
    ['an array', [envelope()], 'The message body is not a JSON object.'],
    ['bytes', new TextEncoder().encode(JSON.stringify(envelope())), 'The event has no non-empty string "id".'],
    ['no id', envelope({ id: undefined }), 'The event has no non-empty string "id".'],
    ['an empty id', envelope({ id: '' }), 'The event has no non-empty string "id".'],
    ['a numeric id', envelope({ id: 7 }), 'The event has no non-empty string "id".'],
    ['no event', envelope({ event: undefined }), 'The event has no non-empty string "event".'],
    ['an empty event', envelope({ event: '' }), 'The event has no non-empty string "event".'],
    ['an event that is an object', envelope({ event: { name: SECRET } }), 'The event has no non-empty string "event".'],
    ['no created_at', envelope({ created_at: undefined }), 'The event has no non-empty string "created_at".'],
    ['a numeric created_at', envelope({ created_at: 1_763_632_800_000 }), 'The event has no non-empty string "created_at".'],
    ['no data', envelope({ data: undefined }), 'The event has no object "data".'],
    ['null data', envelope({ data: null }), 'The event has no object "data".'],
    ['array data', envelope({ data: [SECRET] }), 'The event has no object "data".'],
    ['string data', envelope({ data: SECRET }), 'The event has no object "data".'],
    ['a string context', envelope({ context: SECRET }), 'The event "context", when present, is not an object.'],
    ['an array context', envelope({ context: [] }), 'The event "context", when present, is not an object.'],
    ['a string stale', envelope({ stale: 'true' }), 'The event "stale" mark, when present, is not a boolean.'],
    ['a numeric stale', envelope({ stale: 1 }), 'The event "stale" mark, when present, is not a boolean.'],
  ])('%s', (_label, body, reason) => {
    const result = parseRoutedMessage(body);
    expect(result).toEqual({ ok: false, reason });
    expect(JSON.stringify(result)).not.toContain(SECRET);
  });

  it('a throwing getter or a revoked proxy is refused, not thrown', () => {
    const getter = envelope();
    Object.defineProperty(getter, 'data', {
      get() {
        throw new Error('boom');
      },
      enumerable: true,
    });
    expect(parseRoutedMessage(getter)).toEqual({ ok: false, reason: 'The message body could not be read.' });
    const { proxy, revoke } = Proxy.revocable(envelope(), {});
    revoke();
    expect(parseRoutedMessage(proxy)).toEqual({ ok: false, reason: 'The message body could not be read.' });
  });
});

describe('properties (fast-check)', () => {
  const nonEmpty = fc.string({ minLength: 1, maxLength: 40 });
  const eventName = fc.oneof(fc.constantFrom(...EVENT_TYPES), nonEmpty);
  const json = fc.jsonValue({ maxDepth: 3 });
  const validEnvelope = fc.record(
    {
      id: nonEmpty,
      event: eventName,
      created_at: nonEmpty,
      data: fc.dictionary(fc.string(), json, { maxKeys: 5 }),
      context: fc.option(fc.dictionary(fc.string(), json, { maxKeys: 3 }), { nil: null }),
      object: fc.constant('event'),
      stale: fc.boolean(),
    },
    { requiredKeys: ['id', 'event', 'created_at', 'data'] },
  );

  /** The rule, written independently of the implementation. */
  function isValid(v: unknown): boolean {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
    const o = v as Record<string, unknown>;
    const str = (x: unknown) => typeof x === 'string' && x !== '';
    const obj = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x);
    return (
      str(o.id) && str(o.event) && str(o.created_at) && obj(o.data) &&
      (o.context === undefined || o.context === null || obj(o.context)) &&
      (o.stale === undefined || typeof o.stale === 'boolean')
    );
  }

  function checkShape(result: ParseRoutedMessageResult): void {
    if (result.ok) {
      expect(typeof result.event.id).toBe('string');
      // The catalog list as oracle, not the module's own helper.
      expect(result.known).toBe((EVENT_TYPES as readonly string[]).includes(result.event.event));
      expect(result.event.stale === undefined || result.event.stale === true).toBe(true);
      expect(result.event.context === undefined || typeof result.event.context === 'object').toBe(true);
      expect(result.event.context).not.toBeNull();
    } else {
      expect(result.reason).toMatch(/^The (message body|event) /);
    }
  }

  it('never throws on anything, and agrees with the rule', () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withObjectString: true, withMap: true, withTypedArray: true }), (v) => {
        const result = parseRoutedMessage(v);
        checkShape(result);
        expect(result.ok).toBe(isValid(v));
      }),
      { numRuns: RUNS },
    );
  });

  it('accepts every valid envelope, known exactly when its type is in the catalog, content unchanged', () => {
    fc.assert(
      fc.property(validEnvelope, (env) => {
        const body = JSON.parse(JSON.stringify(env)) as Record<string, unknown>;
        const result = parseRoutedMessage(body);
        checkShape(result);
        if (!result.ok) throw new Error(result.reason);
        expect(result.known).toBe(EVENT_TYPES.includes(body.event as EventType));
        const expected: Record<string, unknown> = { ...body };
        if (expected.context === null) delete expected.context;
        if (expected.stale === false) delete expected.stale;
        expect(result.event).toEqual(expected);
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses an envelope with any required field removed or of the wrong type', () => {
    const wrong = fc.oneof(fc.constant(undefined), fc.constant(null), fc.constant(''), fc.integer(), fc.boolean(), fc.array(json, { maxLength: 2 }));
    fc.assert(
      fc.property(validEnvelope, fc.constantFrom('id', 'event', 'created_at', 'data'), wrong, (env, field, value) => {
        const body = { ...JSON.parse(JSON.stringify(env)), [field]: value } as Record<string, unknown>;
        if (value === undefined) delete body[field];
        const result = parseRoutedMessage(body);
        checkShape(result);
        expect(result.ok).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------
// Compile-time checks: these fail `tsc` (npm run typecheck), not the run.

describe('types', () => {
  it('narrowing on `event` gives each case its payload type', () => {
    const check = (e: RoutedEvent) => {
      switch (e.event) {
        case 'dsync.user.created':
          expectTypeOf(e.data).toEqualTypeOf<DirectoryUserResponse>();
          expectTypeOf(e.data).toEqualTypeOf<EventPayload<'dsync.user.created'>>();
          expectTypeOf(e.data.email).toEqualTypeOf<string | null>();
          break;
        case 'user.deleted':
          expectTypeOf(e.data).toEqualTypeOf<UserResponse>();
          expectTypeOf(e.data.email).toEqualTypeOf<string>();
          break;
        case 'group.member_added':
          expectTypeOf(e.data).toEqualTypeOf<EventPayload<'group.member_added'>>();
          expectTypeOf(e.data.group_id).toEqualTypeOf<string>();
          break;
        case 'authentication.passkey_succeeded':
          expectTypeOf(e.data.type).toEqualTypeOf<'passkey'>();
          break;
        default:
          expectTypeOf(e.event).toEqualTypeOf<Exclude<EventType, 'dsync.user.created' | 'user.deleted' | 'group.member_added' | 'authentication.passkey_succeeded'>>();
      }
      if (e.event === 'organization.updated') expectTypeOf(e.data).toEqualTypeOf<EventPayload<'organization.updated'>>();
    };
    expect(check).toBeTypeOf('function');
  });

  it('RoutedEvent is a WorkOSEvent plus the stale mark; every `data` is typed without narrowing only where shared', () => {
    expectTypeOf<RoutedEvent>().toExtend<WorkOSEvent>();
    expectTypeOf<RoutedEvent['event']>().toEqualTypeOf<EventType>();
    expectTypeOf<RoutedEvent['stale']>().toEqualTypeOf<true | undefined>();
    expectTypeOf<Extract<RoutedEvent, { event: 'dsync.user.deleted' }>['data']>().toEqualTypeOf<DirectoryUserResponse>();
    const unnarrowed = (e: RoutedEvent) => {
      // @ts-expect-error: `email` is not on every payload; narrow on `event` first.
      return e.data.email;
    };
    expect(unnarrowed).toBeTypeOf('function');
  });

  it('the parse result makes unknown types explicit', () => {
    expectTypeOf(parseRoutedMessage).parameter(0).toEqualTypeOf<unknown>();
    expectTypeOf(parseRoutedMessage).returns.toEqualTypeOf<ParseRoutedMessageResult>();
    expectTypeOf<Extract<ParseRoutedMessageResult, { known: true }>['event']>().toEqualTypeOf<RoutedEvent>();
    expectTypeOf<Extract<ParseRoutedMessageResult, { known: false }>['event']>().toEqualTypeOf<UnknownRoutedEvent>();
    expectTypeOf<UnknownRoutedEvent['event']>().toEqualTypeOf<string>();
    expectTypeOf<UnknownRoutedEvent['data']>().toEqualTypeOf<Record<string, unknown>>();
    expectTypeOf<Extract<ParseRoutedMessageResult, { ok: false }>>().toEqualTypeOf<{ ok: false; reason: string }>();
    const afterOk = (r: ParseRoutedMessageResult) => {
      if (!r.ok) return;
      expectTypeOf(r.event).toEqualTypeOf<RoutedEvent | UnknownRoutedEvent>();
      if (r.known) expectTypeOf(r.event).toEqualTypeOf<RoutedEvent>();
      else expectTypeOf(r.event).toEqualTypeOf<UnknownRoutedEvent>();
    };
    expect(afterOk).toBeTypeOf('function');
  });
});
