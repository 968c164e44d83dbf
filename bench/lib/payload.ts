/**
 * Signed WorkOS-shaped bodies for the benchmarks: a real fixture event
 * (test/fixtures/events.ts) padded with realistic directory attributes to an
 * exact byte size, compact JSON (so `JSON.stringify(JSON.parse(body)) === body`,
 * which the WorkOS SDK relies on when it re-serialises the payload it verifies).
 */
import { makeEvent } from '../../test/fixtures/events';

/** A `dsync.user.created` event body of exactly `bytes` bytes (ASCII). */
export function sizedEventBody(bytes: number): string {
  const event = makeEvent('dsync.user.created') as unknown as { data: { raw_attributes: Record<string, unknown> } };
  const raw: Record<string, unknown> = {};
  event.data.raw_attributes = raw;
  const base = JSON.stringify(event).length;
  if (base + 32 > bytes) throw new Error(`sizedEventBody: ${bytes} bytes is smaller than the event itself (${base})`);
  let i = 0;
  // Whole attributes while there is room, then one filler string of the exact remaining length.
  for (;;) {
    const key = `urn:scim:attr_${i}`;
    const value = { value: `value-${i}-${'abcdefghij'.repeat(4)}`, primary: i % 2 === 0 };
    raw[key] = value;
    if (JSON.stringify(event).length + 40 > bytes) {
      delete raw[key];
      break;
    }
    i++;
  }
  raw.filler = '';
  const missing = bytes - JSON.stringify(event).length;
  raw.filler = 'x'.repeat(missing);
  const body = JSON.stringify(event);
  if (body.length !== bytes) throw new Error(`sizedEventBody: built ${body.length} bytes, wanted ${bytes}`);
  return body;
}
