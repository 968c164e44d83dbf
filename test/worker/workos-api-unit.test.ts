/** The Events API client refuses to send the API key anywhere but https (or a loopback host). */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fetchEventsPage } from '../../src/reconcile/workos-api';

afterEach(() => vi.restoreAllMocks());

const query = { events: ['user.created'], limit: 100 };

describe('fetchEventsPage: where the API key may go', () => {
  it.each([
    ['http://api.workos.com', 'must use https://'],
    ['ftp://api.workos.com', 'must use https://'],
    ['not a url', 'is not a URL'],
  ])('%s: refused without any request (client_error)', async (base, message) => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    const page = await fetchEventsPage(base, 'sk_test_secret', query);
    expect(page).toMatchObject({ ok: false, kind: 'client_error', status: null });
    expect(page.ok ? '' : page.message).toContain(message);
    expect(page.ok ? '' : page.message).not.toContain('sk_test_secret');
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it.each(['https://api.workos.com', 'http://127.0.0.1:9999', 'http://localhost:9999'])('%s: the request is made', async (base) => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({ data: [], list_metadata: {} })));
    const page = await fetchEventsPage(base, 'sk_test_secret', query);
    expect(page).toMatchObject({ ok: true, events: [] });
    expect(fetchSpy).toHaveBeenCalledTimes(1);
  });
});
