/**
 * The webhook body cap (`readBodyCapped`, src/webhook/body.ts): a body of
 * exactly `max_body_bytes` is read whole, one byte more is refused, whether
 * the size is declared (Content-Length) or only counted while streaming, and
 * however the stream is cut into chunks.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readBodyCapped } from '../../src/webhook/body';

const URL = 'https://router.test/webhooks/workos';

function bytesOf(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) % 256);
}

/** A request whose body streams `body` in chunks of the given sizes (cycled), with no Content-Length. */
function streamed(body: Uint8Array, chunkSizes: number[]): Request {
  let offset = 0;
  let k = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= body.byteLength) {
        controller.close();
        return;
      }
      const size = Math.max(1, chunkSizes[k++ % chunkSizes.length] as number);
      controller.enqueue(body.slice(offset, offset + size));
      offset += size;
    },
  });
  // @ts-expect-error duplex is required for streaming bodies in some runtimes
  return new Request(URL, { method: 'POST', body: stream, duplex: 'half' });
}

describe('readBodyCapped at its boundary', () => {
  it.each([1024, 1_048_576])('declared: exactly %i bytes are read whole; one more is refused', async (cap) => {
    const exact = await readBodyCapped(new Request(URL, { method: 'POST', body: bytesOf(cap) }), cap);
    expect(exact.ok && exact.bytes.byteLength).toBe(cap);
    expect(await readBodyCapped(new Request(URL, { method: 'POST', body: bytesOf(cap + 1) }), cap)).toEqual({ ok: false, reason: 'payload_too_large' });
  });

  it.each([1024, 1_048_576])('streamed without a Content-Length: exactly %i bytes are read whole; one more is refused', async (cap) => {
    const exact = await readBodyCapped(streamed(bytesOf(cap), [64 * 1024]), cap);
    expect(exact.ok && exact.bytes.byteLength).toBe(cap);
    expect(await readBodyCapped(streamed(bytesOf(cap + 1), [64 * 1024]), cap)).toEqual({ ok: false, reason: 'payload_too_large' });
  });

  it('property: any size and chunking: accepted (with the very bytes) exactly when size ≤ cap', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 0, max: 4096 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 5 }), async (size, cap, chunks) => {
        const body = bytesOf(size);
        const r = await readBodyCapped(streamed(body, chunks), cap);
        if (size <= cap) {
          expect(r.ok).toBe(true);
          if (r.ok) expect(Array.from(r.bytes)).toEqual(Array.from(body));
        } else expect(r).toEqual({ ok: false, reason: 'payload_too_large' });
      }),
      { numRuns: 150 },
    );
  });
});
