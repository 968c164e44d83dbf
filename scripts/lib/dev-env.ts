/** Values from dev.env: the development-only secrets `npm run dev` uses locally. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);

export function devEnv(name: string): string {
  const match = new RegExp(`^${name}=(.*)$`, 'm').exec(readFileSync(resolve(ROOT, 'dev.env'), 'utf8'));
  const value = match?.[1]?.trim() ?? '';
  if (value === '') throw new Error(`dev.env does not set ${name}`);
  return value;
}
