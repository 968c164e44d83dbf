import { createExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it, vi } from 'vitest';
import { ApiError, onError } from '../../src/http/errors';
import worker from '../../src/index';
import { errorName } from '../../src/log';
import { watchLogs } from '../helpers/observe';

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

  it('a caught error is logged through errorName: "name: message", cut to 200 characters, never its stack', async () => {
    function failsDeepInsideTheRouter(message: string): never {
      throw new TypeError(message);
    }
    const long = `bad input ${'x'.repeat(400)}`;
    const app = new Hono();
    app.get('/long', () => failsDeepInsideTheRouter(long));
    app.get('/short', () => failsDeepInsideTheRouter('bad input'));
    app.onError(onError);
    const logs = watchLogs();
    expect((await app.request('/long')).status).toBe(500);
    expect((await app.request('/short')).status).toBe(500);
    expect(logs.records().filter((r) => r.msg === 'unhandled_error')).toEqual([
      { level: 'error', msg: 'unhandled_error', path: '/long', error: `TypeError: ${long}`.slice(0, 200) },
      { level: 'error', msg: 'unhandled_error', path: '/short', error: 'TypeError: bad input' },
    ]);
    // The stack exists (it names the function that threw), and no line carries it.
    let caught: unknown;
    try {
      failsDeepInsideTheRouter('bad input');
    } catch (err) {
      caught = err;
    }
    expect((caught as Error).stack).toContain('failsDeepInsideTheRouter');
    expect(errorName(caught)).toBe('TypeError: bad input');
    expect(JSON.stringify(logs.records())).not.toContain('failsDeepInsideTheRouter');
    expect(errorName(new Error('y'.repeat(1000)))).toHaveLength(200);
    // A thrown value that is not an Error is not described by its content.
    expect(errorName('sk_live_thrown_string')).toBe('unknown error');
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
