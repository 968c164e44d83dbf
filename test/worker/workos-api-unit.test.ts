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

describe('fetchEventsPage: redirects', () => {
  it.each([301, 302, 303, 307, 308])('a %i is not followed (the API key would travel with it): one request, and the page fails', async (status) => {
    const requests: Array<{ url: string; authorization: string | null }> = [];
    // Plays fetch as the runtime does: with `redirect: 'follow'` (the default) it would request the Location itself.
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      let req = new Request(input as RequestInfo, init);
      for (;;) {
        requests.push({ url: req.url, authorization: req.headers.get('authorization') });
        if (req.url.startsWith('https://elsewhere.test/')) return Response.json({ data: [], list_metadata: {} });
        const moved = new Response(null, { status, headers: { Location: 'https://elsewhere.test/events' } });
        if (req.redirect === 'manual') return moved;
        req = new Request('https://elsewhere.test/events', { headers: req.headers });
      }
    });
    const page = await fetchEventsPage('https://api.workos.com', 'sk_test_secret', query);
    expect(requests.map((r) => r.url)).toEqual([expect.stringMatching(/^https:\/\/api\.workos\.com\/events\?/)]);
    expect(page).toMatchObject({ ok: false, kind: 'client_error', status });
    expect(page.ok ? '' : page.message).toBe(`The WorkOS API answered HTTP ${status}.`);
    expect(page.ok ? '' : page.message).not.toContain('sk_test_secret');
  });
});
