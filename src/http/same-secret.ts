/** Constant-time comparison of two secrets (both hashed to equal lengths, digests compared); an empty secret never matches. */
import { constantTimeEqual } from '../webhook/signature';

export async function sameSecret(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [da, db] = await Promise.all([crypto.subtle.digest('SHA-256', enc.encode(a)), crypto.subtle.digest('SHA-256', enc.encode(b))]);
  return constantTimeEqual(new Uint8Array(da), new Uint8Array(db)) && a.length > 0;
}
