/**
 * Source-IP allowlist for the webhook route: an optional, defence-in-depth
 * check of `CF-Connecting-IP` against a configured list of IP addresses and
 * CIDR ranges (IPv4 and IPv6), made before the request body is read. The
 * WorkOS signature remains the primary defence; this only narrows who can
 * make the Worker spend effort on a body at all.
 *
 * - Pure and dependency-free; nothing here throws (bad input is a typed
 *   problem or `null`, a missing or invalid client IP never matches).
 * - Strict parsing: no leading zeros in IPv4 octets ("010" could be octal),
 *   no zone ids, one "::" at most, 1–4 hex digits per group, prefixes 0–32 /
 *   0–128 in plain decimal, no host bits beyond the prefix.
 * - IPv4-mapped IPv6 (`::ffff:a.b.c.d`, `::ffff:0:0/96` and narrower) is the
 *   IPv4 address / range it maps: an IPv4 client matches such ranges, and a
 *   mapped client matches IPv4 ranges. A wider IPv6 range (`::/0`,
 *   `::ffff:0:0/95`, …) is IPv6 only: it never matches an IPv4 client.
 * - The list is compiled once into [first, last] bigint bounds; a match is a
 *   few bigint comparisons (no allocation beyond parsing the client IP).
 */

/** One parsed allowlist entry. */
export interface IpRange {
  /** 6 only for true IPv6 ranges: IPv4-mapped ranges are stored as IPv4. */
  version: 4 | 6;
  /** The network address (host bits zero), as a 32- or 128-bit unsigned value. */
  network: bigint;
  /** 0–32 for IPv4, 0–128 for IPv6 (32 / 128 for a single address). */
  prefix: number;
  /** The entry as written, without its surrounding blanks. */
  text: string;
}

export type ParseRangeResult = { ok: true; range: IpRange } | { ok: false; problem: string };

export type CompiledAllowlist =
  | { ok: true; matches: (ip: string | undefined | null) => boolean; ranges: IpRange[] }
  | { ok: false; problems: string[] };

/** Longer (after trimming) than any address or range can be written: "ffff:…:255.255.255.255/128" is 49. */
const MAX_LENGTH = 64;
/** `::ffff:0:0` shifted right by 32: the upper 96 bits of an IPv4-mapped address. */
const MAPPED_HIGH = 0xffffn;
const V4_BITS = 32;
const V6_BITS = 128;

type Written = { version: 4 | 6; value: bigint } | string;

/** Parses "203.0.113.0/24", "2001:db8::/32", "::ffff:192.0.2.1", … (see the header). Never throws. */
export function parseRange(entry: string): ParseRangeResult {
  if (typeof entry !== 'string') return { ok: false, problem: 'must be a string (an IP address or CIDR range)' };
  const text = trimBlanks(entry);
  const fail = (why: string): ParseRangeResult => ({ ok: false, problem: `${quote(text)}: ${why}` });
  if (text.length > MAX_LENGTH) return fail('too long to be an IP address or CIDR range');
  const slash = text.indexOf('/');
  if (slash === 0) return fail('missing the address before "/"');
  const written = parseWritten(slash === -1 ? text : text.slice(0, slash));
  if (typeof written === 'string') return fail(written);
  const bits = written.version === 4 ? V4_BITS : V6_BITS;
  let prefix = bits;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p)) return fail(`prefix ${quote(p)} is not a number 0–${bits}`);
    if (p.length > 1 && p.startsWith('0')) return fail(`prefix ${quote(p)} has a leading zero`);
    prefix = Number(p);
    if (prefix > bits) return fail(`prefix /${prefix} is out of range (0–${bits} for IPv${written.version})`);
  }
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((written.value & hostMask) !== 0n) {
    const network = written.value & ~hostMask;
    const suggestion = written.version === 4 ? formatV4(network) : formatV6(network);
    return fail(`host bits set; did you mean ${suggestion}/${prefix}?`);
  }
  const range = toV4IfMapped(written.version, written.value, prefix);
  return { ok: true, range: { version: range.version, network: range.value, prefix: range.prefix, text } };
}

/** Parses a single address (no prefix) the same way as `parseRange`; IPv4-mapped IPv6 comes back as IPv4. Null when invalid; never throws. */
export function parseAddress(text: string): { version: 4 | 6; value: bigint } | null {
  if (typeof text !== 'string') return null;
  const t = trimBlanks(text);
  if (t.length > MAX_LENGTH) return null;
  const written = parseWritten(t);
  if (typeof written === 'string') return null;
  if (written.version === 6 && written.value >> 32n === MAPPED_HIGH) return { version: 4, value: written.value & 0xffff_ffffn };
  return written;
}

/**
 * Validates a list once and returns its matcher. Problems name the entry's
 * index and text (`[2] "10.0.0.1/8": host bits set; …`). An empty list is
 * valid and matches nothing: whether the check runs at all is the caller's call.
 */
export function compileAllowlist(entries: readonly string[]): CompiledAllowlist {
  if (!Array.isArray(entries)) return { ok: false, problems: ['must be a list of IP addresses or CIDR ranges'] };
  const problems: string[] = [];
  const ranges: IpRange[] = [];
  for (let i = 0; i < entries.length; i++) {
    const r = parseRange(entries[i] as string);
    if (r.ok) ranges.push(r.range);
    else problems.push(`[${i}] ${r.problem}`);
  }
  if (problems.length > 0) return { ok: false, problems };

  // Inclusive bounds per family, so a match is comparisons only.
  const v4First: bigint[] = [];
  const v4Last: bigint[] = [];
  const v6First: bigint[] = [];
  const v6Last: bigint[] = [];
  for (const r of ranges) {
    const host = (1n << BigInt((r.version === 4 ? V4_BITS : V6_BITS) - r.prefix)) - 1n;
    (r.version === 4 ? v4First : v6First).push(r.network);
    (r.version === 4 ? v4Last : v6Last).push(r.network | host);
  }
  const matches = (ip: string | undefined | null): boolean => {
    if (typeof ip !== 'string') return false;
    const a = parseAddress(ip);
    if (a === null) return false;
    const first = a.version === 4 ? v4First : v6First;
    const last = a.version === 4 ? v4Last : v6Last;
    for (let i = 0; i < first.length; i++) {
      if (a.value >= first[i]! && a.value <= last[i]!) return true;
    }
    return false;
  };
  return { ok: true, matches, ranges };
}

// ---------------------------------------------------------------------------
// Parsing (as written: no IPv4-mapped folding yet, so prefixes and host bits
// are checked against the family the entry was written in).

function parseWritten(t: string): Written {
  if (t === '') return 'empty; expected an IP address or CIDR range';
  const zone = t.indexOf('%');
  if (zone !== -1) return `zone ids (${quote(t.slice(zone))}) are not allowed`;
  if (t.includes(':')) return parseV6(t);
  if (t.includes('.')) {
    const v4 = parseV4(t);
    return typeof v4 === 'string' ? v4 : { version: 4, value: BigInt(v4) };
  }
  return 'not an IPv4 or IPv6 address';
}

/** Dotted quad, decimal, no leading zeros → uint32 (as a number), or the problem. */
function parseV4(t: string): number | string {
  const parts = t.split('.');
  if (parts.length !== 4) return 'not an IPv4 address (expected four numbers separated by ".")';
  let value = 0;
  for (const part of parts) {
    if (!/^[0-9]+$/.test(part)) return 'not an IPv4 address (expected four numbers separated by ".")';
    if (part.length > 1 && part.startsWith('0')) return `IPv4 octet ${quote(part)} has a leading zero (ambiguous: octal or decimal?)`;
    const n = part.length > 3 ? 256 : Number(part);
    if (n > 255) return `IPv4 octet ${quote(part)} is over 255`;
    value = value * 256 + n;
  }
  return value;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const HEX_RUN = /^[0-9a-fA-F]+$/;

/** RFC 4291 §2.2 text forms: 8 groups, one "::" for one or more zero groups, an optional dotted IPv4 tail. */
function parseV6(t: string): Written {
  let s = t;
  if (s.includes('.')) {
    // The dotted tail stands for the last two groups; it must come last.
    const colon = s.lastIndexOf(':');
    const v4 = parseV4(s.slice(colon + 1));
    if (typeof v4 === 'string') return s.indexOf('.') < colon ? 'not an IPv6 address' : `embedded IPv4: ${v4}`;
    s = `${s.slice(0, colon + 1)}${Math.floor(v4 / 65536).toString(16)}:${(v4 % 65536).toString(16)}`;
  }
  if (s.includes(':::')) return 'not an IPv6 address (":::")';
  const gap = s.indexOf('::');
  if (gap !== -1 && s.indexOf('::', gap + 1) !== -1) return 'more than one "::"';
  const head = gap === -1 ? s : s.slice(0, gap);
  const tail = gap === -1 ? '' : s.slice(gap + 2);
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  for (const g of [...headGroups, ...tailGroups]) {
    if (g === '') return 'not an IPv6 address (empty group: a stray ":")';
    if (!HEX_GROUP.test(g)) return HEX_RUN.test(g) ? `group ${quote(g)} has more than 4 hex digits` : 'not an IPv6 address';
  }
  const count = headGroups.length + tailGroups.length;
  if (gap === -1 && count !== 8) return `not an IPv6 address (${count} groups; expected 8, or "::" for zero groups)`;
  if (gap !== -1 && count > 7) return `not an IPv6 address ("::" must stand for at least one group; ${count} given)`;
  let value = 0n;
  for (const g of headGroups) value = (value << 16n) | BigInt(parseInt(g, 16));
  value <<= BigInt(16 * (8 - count));
  for (const g of tailGroups) value = (value << 16n) | BigInt(parseInt(g, 16));
  return { version: 6, value };
}

/** `::ffff:0:0/96` and narrower become the IPv4 range they map; anything else is unchanged. */
function toV4IfMapped(version: 4 | 6, value: bigint, prefix: number): { version: 4 | 6; value: bigint; prefix: number } {
  if (version === 6 && prefix >= 96 && value >> 32n === MAPPED_HIGH) return { version: 4, value: value & 0xffff_ffffn, prefix: prefix - 96 };
  return { version, value, prefix };
}

// ---------------------------------------------------------------------------
// Formatting (only for "did you mean" suggestions).

function formatV4(value: bigint): string {
  const n = Number(value);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** RFC 5952: lower case, no leading zeros, the longest (first) run of two or more zero groups as "::"; mapped IPv4 dotted. */
function formatV6(value: bigint): string {
  if (value >> 32n === MAPPED_HIGH) return `::ffff:${formatV4(value & 0xffff_ffffn)}`;
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(16 * i)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

// ---------------------------------------------------------------------------

/** Trims spaces, tabs and line breaks (not other Unicode spaces: those make the entry invalid). */
function trimBlanks(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isBlank(s.charCodeAt(a))) a++;
  while (b > a && isBlank(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

function isBlank(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13;
}

/** The entry (or a piece of it) quoted for a problem message, cut short when long. */
function quote(s: string): string {
  return JSON.stringify(s.length > 48 ? `${s.slice(0, 48)}…` : s);
}
