import { createExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it, vi } from 'vitest';
import { ApiError, onError } from '../../src/http/errors';
import worker from '../../src/index';

describe('the error surface', () => {
  it('an unexpected exception becomes 500 internal_error without leaking its message', async () => {
    const app = new Hono();
    app.get('/boom', () => {
      throw new Error('secret detail: sk_live_123');
    });
    app.onError(onError);
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const res = await app.request('/boom');
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe('internal_error');
    expect(JSON.stringify(body)).not.toContain('sk_live_123');
    expect(errors).toHaveBeenCalledTimes(1);
    errors.mockRestore();
  });

  it('an ApiError keeps its status, code, message and headers', async () => {
    const app = new Hono();
    app.get('/x', () => {
      throw new ApiError(401, 'unauthorized', 'A valid bearer token is required.', { 'WWW-Authenticate': 'Bearer' });
    });
    app.onError(onError);
    const res = await app.request('/x');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(await res.json()).toEqual({ error: 'unauthorized', message: 'A valid bearer token is required.' });
  });

  it('POST /admin/reconcile answers 409 reconcile_disabled without WORKOS_API_KEY', async () => {
    const res = await worker.fetch(
      new Request('https://router.test/admin/reconcile', { method: 'POST', headers: { Authorization: 'Bearer test-admin-token' } }),
      { ...env, WORKOS_API_KEY: '' },
      createExecutionContext(),
    );
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'reconcile_disabled' });
  });
});
