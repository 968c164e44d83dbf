/**
 * Test helpers: sign and post webhooks the way WorkOS does. The HMAC here is
 * computed independently of src/webhook/signature.ts (plain WebCrypto).
 */
import { exports } from 'cloudflare:workers';

export const SECRET = 'whsec_test_primary';
export const URL_BASE = 'https://router.test';

const enc = new TextEncoder();

export async function hmacHex(secret: string, message: string): Promise<string> {
  const key = await crypto.subtle.importKey('raw', enc.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, enc.encode(message)));
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export async function signatureHeader(body: string, opts: { secret?: string; t?: number } = {}): Promise<string> {
  const t = opts.t ?? Date.now();
  return `t=${t}, v1=${await hmacHex(opts.secret ?? SECRET, `${t}.${body}`)}`;
}

export interface PostOptions {
  secret?: string;
  t?: number;
  /** Override the signature header; null omits it. */
  signature?: string | null;
  headers?: Record<string, string>;
  method?: string;
}

export async function webhookRequest(body: string | object, opts: PostOptions = {}): Promise<Request> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = { 'Content-Type': 'application/json', ...opts.headers };
  const sig = opts.signature === undefined ? await signatureHeader(text, opts) : opts.signature;
  if (sig !== null) headers['WorkOS-Signature'] = sig;
  return new Request(`${URL_BASE}/webhooks/workos`, { method: opts.method ?? 'POST', headers, body: text });
}

export async function postWebhook(body: string | object, opts: PostOptions = {}): Promise<Response> {
  return exports.default.fetch(await webhookRequest(body, opts));
}

export function sampleEvent(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: `event_${crypto.randomUUID().replace(/-/g, '').toUpperCase().slice(0, 26)}`,
    event: 'user.created',
    data: { id: 'user_01HXYZ', email: 'ada@example.com', object: 'user' },
    created_at: new Date().toISOString(),
    ...overrides,
  };
}
