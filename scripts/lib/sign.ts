/** Signs payloads exactly as WorkOS does (Node side: scripts, e2e tests, benchmarks). */
import { createHmac } from 'node:crypto';

export function workosSignature(body: string | Buffer, secret: string, t = Date.now()): string {
  const mac = createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
  return `t=${t}, v1=${mac}`;
}

export async function postSigned(
  url: string,
  body: string,
  secret: string,
  extraHeaders: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'WorkOS-Signature': workosSignature(body, secret), ...extraHeaders },
    body,
  });
}
