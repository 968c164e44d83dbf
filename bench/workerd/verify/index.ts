/**
 * Bench-only Worker for `npm run bench -- verify`: POST /run?impl=<impl>&n=<N>
 * with a WorkOS-signed body (header `WorkOS-Signature`, secret in `X-Secret`)
 * verifies that body N times in this isolate, one after another, and answers
 * how many verified. The caller times the request from outside (workerd's clock
 * does not advance while JavaScript runs without I/O) and subtracts an n=0 call.
 *
 * impl:
 *   ours       verifyWorkOSSignature from src (key imported once per isolate, cached)
 *   naive      the straightforward version: parse, importKey on every call, subtle.verify
 *   sdk        @workos-inc/node's webhooks.verifyHeader on the parsed payload
 *   sign-only  crypto.subtle.sign with a cached key over a prebuilt message (the WebCrypto floor)
 */
import { WorkOS } from '@workos-inc/node';
import { verifyWorkOSSignature } from '../../../src/webhook/signature';

const workos = new WorkOS('sk_x');
const encoder = new TextEncoder();

async function naiveVerify(header: string, body: Uint8Array, secret: string): Promise<boolean> {
  let t = '';
  let v1 = '';
  for (const part of header.split(',')) {
    const [k, v] = part.trim().split('=');
    if (k === 't') t = v ?? '';
    else if (k === 'v1') v1 = v ?? '';
  }
  if (t === '' || v1.length !== 64) return false;
  const sig = new Uint8Array(32);
  for (let i = 0; i < 32; i++) sig[i] = parseInt(v1.slice(i * 2, i * 2 + 2), 16);
  const prefix = encoder.encode(`${t}.`);
  const message = new Uint8Array(prefix.length + body.length);
  message.set(prefix, 0);
  message.set(body, prefix.length);
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  return crypto.subtle.verify('HMAC', key, sig, message);
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === '/health') return new Response('ok');
    if (url.pathname !== '/run' || request.method !== 'POST') return new Response('not found', { status: 404 });
    const impl = url.searchParams.get('impl') ?? 'ours';
    const n = Number(url.searchParams.get('n') ?? '0');
    const header = request.headers.get('workos-signature') ?? '';
    const secret = request.headers.get('x-secret') ?? '';
    const body = new Uint8Array(await request.arrayBuffer());
    let run: () => Promise<boolean>;
    switch (impl) {
      case 'ours':
        run = async () =>
          (await verifyWorkOSSignature({ header, body, secrets: [secret], toleranceSeconds: 180 })).ok;
        break;
      case 'naive':
        run = () => naiveVerify(header, body, secret);
        break;
      case 'sdk': {
        const payload: unknown = JSON.parse(new TextDecoder().decode(body));
        run = () => workos.webhooks.verifyHeader({ payload, sigHeader: header, secret }).then(() => true, () => false);
        break;
      }
      case 'sign-only': {
        const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
        const message = new Uint8Array(body.length + 20);
        message.set(body, 20);
        run = async () => (await crypto.subtle.sign('HMAC', key, message)).byteLength === 32;
        break;
      }
      default:
        return new Response(`unknown impl ${impl}`, { status: 400 });
    }
    let ok = 0;
    const started = Date.now();
    for (let i = 0; i < n; i++) if (await run()) ok++;
    return Response.json({ impl, n, ok, insideMs: Date.now() - started });
  },
};
