/**
 * Unit tests for the source-IP allowlist, src/webhook/source-ip.ts: exact and
 * CIDR matches for IPv4 and IPv6, the first / last address of a range and its
 * neighbours for every interesting prefix length, IPv6 compressed forms,
 * IPv4-mapped IPv6 both ways, every rejection with its problem message, and
 * clients that are missing or not an IP at all.
 */
import { describe, expect, it } from 'vitest';
import { type IpRange, compileAllowlist, parseAddress, parseRange } from '../../src/webhook/source-ip';

/** A matcher for a list that must compile. */
function allow(...entries: string[]): (ip: string | undefined | null) => boolean {
  const c = compileAllowlist(entries);
  if (!c.ok) throw new Error(`allowlist did not compile: ${c.problems.join('; ')}`);
  return c.matches;
}

function range(entry: string): IpRange {
  const r = parseRange(entry);
  if (!r.ok) throw new Error(`parseRange(${JSON.stringify(entry)}) failed: ${r.problem}`);
  return r.range;
}

function problem(entry: string): string {
  const r = parseRange(entry);
  if (r.ok) throw new Error(`parseRange(${JSON.stringify(entry)}) unexpectedly accepted: ${JSON.stringify({ ...r.range, network: String(r.range.network) })}`);
  return r.problem;
}

describe('exact and CIDR matches', () => {
  it('IPv4: a single address matches only itself', () => {
    const m = allow('203.0.113.7');
    expect(m('203.0.113.7')).toBe(true);
    expect(m('203.0.113.6')).toBe(false);
    expect(m('203.0.113.8')).toBe(false);
    expect(m('203.0.113.70')).toBe(false);
  });

  it('IPv4: a CIDR range', () => {
    const m = allow('198.51.100.0/24');
    expect(m('198.51.100.0')).toBe(true);
    expect(m('198.51.100.42')).toBe(true);
    expect(m('198.51.100.255')).toBe(true);
    expect(m('198.51.101.0')).toBe(false);
    expect(m('198.51.99.255')).toBe(false);
  });

  it('IPv6: a single address matches only itself (in any spelling)', () => {
    const m = allow('2001:db8::1');
    expect(m('2001:db8::1')).toBe(true);
    expect(m('2001:DB8:0:0:0:0:0:1')).toBe(true);
    expect(m('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe(true);
    expect(m('2001:db8::2')).toBe(false);
    expect(m('2001:db8::')).toBe(false);
    expect(m('2001:db8::1:0')).toBe(false);
  });

  it('IPv6: a CIDR range', () => {
    const m = allow('2001:db8:abcd::/48');
    expect(m('2001:db8:abcd::')).toBe(true);
    expect(m('2001:db8:abcd:12::5')).toBe(true);
    expect(m('2001:db8:abcd:ffff:ffff:ffff:ffff:ffff')).toBe(true);
    expect(m('2001:db8:abce::')).toBe(false);
    expect(m('2001:db8:abcc:ffff:ffff:ffff:ffff:ffff')).toBe(false);
  });

  it('a list matches when any entry does; families never cross (except IPv4-mapped)', () => {
    const m = allow('10.0.0.0/8', '192.0.2.1', '2001:db8::/32', '::1');
    expect(m('10.1.2.3')).toBe(true);
    expect(m('192.0.2.1')).toBe(true);
    expect(m('2001:db8:1::1')).toBe(true);
    expect(m('::1')).toBe(true);
    expect(m('192.0.2.2')).toBe(false);
    expect(m('2001:db9::')).toBe(false);
    expect(m('::2')).toBe(false);
    // 10.0.0.0 as IPv6 (::a00:0, IPv4-compatible, not mapped) is not an IPv4 address.
    expect(m('::10.0.0.1')).toBe(false);
  });

  it('an empty list is valid and matches nothing', () => {
    const c = compileAllowlist([]);
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.ranges).toEqual([]);
    expect(c.matches('203.0.113.7')).toBe(false);
    expect(c.matches('::1')).toBe(false);
  });

  it('compileAllowlist returns the parsed ranges in order, text as written without blanks', () => {
    const c = compileAllowlist([' 10.0.0.0/8', '2001:db8::/32\t', '::ffff:192.0.2.0/120', '192.0.2.9']);
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.ranges).toEqual([
      { version: 4, network: 0x0a000000n, prefix: 8, text: '10.0.0.0/8' },
      { version: 6, network: 0x20010db8n << 96n, prefix: 32, text: '2001:db8::/32' },
      { version: 4, network: 0xc0000200n, prefix: 24, text: '::ffff:192.0.2.0/120' },
      { version: 4, network: 0xc0000209n, prefix: 32, text: '192.0.2.9' },
    ]);
  });
});

/**
 * [range, one below (or null), first, last, one above (or null)]: first and
 * last are inside, the neighbours outside.
 */
const EDGES: [string, string | null, string, string, string | null][] = [
  ['0.0.0.0/0', null, '0.0.0.0', '255.255.255.255', null],
  ['0.0.0.0/1', null, '0.0.0.0', '127.255.255.255', '128.0.0.0'],
  ['128.0.0.0/1', '127.255.255.255', '128.0.0.0', '255.255.255.255', null],
  ['10.0.0.0/8', '9.255.255.255', '10.0.0.0', '10.255.255.255', '11.0.0.0'],
  ['203.0.113.0/24', '203.0.112.255', '203.0.113.0', '203.0.113.255', '203.0.114.0'],
  ['192.0.2.6/31', '192.0.2.5', '192.0.2.6', '192.0.2.7', '192.0.2.8'],
  ['10.255.255.254/31', '10.255.255.253', '10.255.255.254', '10.255.255.255', '11.0.0.0'],
  ['192.0.2.7/32', '192.0.2.6', '192.0.2.7', '192.0.2.7', '192.0.2.8'],
  ['0.0.0.0/32', null, '0.0.0.0', '0.0.0.0', '0.0.0.1'],
  ['255.255.255.255/32', '255.255.255.254', '255.255.255.255', '255.255.255.255', null],
  ['::/0', null, '::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null],
  ['::/1', null, '::', '7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '8000::'],
  ['8000::/1', '7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '8000::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null],
  ['2000::/8', '1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '2000::', '20ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '2100::'],
  ['2001:d00::/24', '2001:cff:ffff:ffff:ffff:ffff:ffff:ffff', '2001:d00::', '2001:dff:ffff:ffff:ffff:ffff:ffff:ffff', '2001:e00::'],
  ['2001:db8::/31', '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db8::', '2001:db9:ffff:ffff:ffff:ffff:ffff:ffff', '2001:dba::'],
  ['2001:db8::/32', '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db8::', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db9::'],
  ['2001:db8:1:2::/64', '2001:db8:1:1:ffff:ffff:ffff:ffff', '2001:db8:1:2::', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:3::'],
  ['2001:db8::2/127', '2001:db8::1', '2001:db8::2', '2001:db8::3', '2001:db8::4'],
  ['2001:db8::fffe/127', '2001:db8::fffd', '2001:db8::fffe', '2001:db8::ffff', '2001:db8::1:0'],
  ['2001:db8::ff/128', '2001:db8::fe', '2001:db8::ff', '2001:db8::ff', '2001:db8::100'],
  ['::/128', null, '::', '::', '::1'],
  ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null],
];

describe('CIDR edges: first and last inside, one below and one above outside', () => {
  it.each(EDGES)('%s', (entry, below, first, last, above) => {
    const m = allow(entry);
    expect(m(first)).toBe(true);
    expect(m(last)).toBe(true);
    if (below !== null) expect(m(below)).toBe(false);
    if (above !== null) expect(m(above)).toBe(false);
  });

  it('0.0.0.0/0 matches every IPv4 address (mapped ones too) and no IPv6 one', () => {
    const m = allow('0.0.0.0/0');
    for (const ip of ['0.0.0.0', '1.2.3.4', '127.0.0.1', '203.0.113.7', '255.255.255.255', '::ffff:203.0.113.7', '::ffff:0:0']) expect(m(ip), ip).toBe(true);
    for (const ip of ['::', '::1', '2001:db8::1', '::ffff:0:0:1', '::203.0.113.7']) expect(m(ip), ip).toBe(false);
  });

  it('::/0 matches every IPv6 address and no IPv4 one (IPv4-mapped clients are IPv4)', () => {
    const m = allow('::/0');
    for (const ip of ['::', '::1', '2001:db8::1', 'fe80::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::203.0.113.7', '64:ff9b::203.0.113.7']) expect(m(ip), ip).toBe(true);
    for (const ip of ['0.0.0.0', '203.0.113.7', '::ffff:203.0.113.7', '::ffff:cb00:7107']) expect(m(ip), ip).toBe(false);
  });

  it('0.0.0.0/0 and ::/0 together match everything that is an IP', () => {
    const m = allow('0.0.0.0/0', '::/0');
    for (const ip of ['0.0.0.0', '203.0.113.7', '::', '2001:db8::1', '::ffff:1.2.3.4']) expect(m(ip), ip).toBe(true);
    expect(m('not an ip')).toBe(false);
  });
});

describe('IPv6 text forms', () => {
  it.each([
    ['::', 0n],
    ['::1', 1n],
    ['::0', 0n],
    ['0::0', 0n],
    ['0:0:0:0:0:0:0:0', 0n],
    ['1::', 1n << 112n],
    ['2001:db8::', 0x20010db8n << 96n],
    ['2001:db8::1', (0x20010db8n << 96n) | 1n],
    ['2001:db8:0:0:0:0:0:1', (0x20010db8n << 96n) | 1n],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', (0x20010db8n << 96n) | 1n],
    ['2001:DB8::1', (0x20010db8n << 96n) | 1n],
    ['2001:Db8::A:b', (0x20010db8n << 96n) | 0xa000bn],
    ['1::8', (1n << 112n) | 8n],
    ['1:2:3:4:5:6:7::', 0x0001_0002_0003_0004_0005_0006_0007_0000n],
    ['::2:3:4:5:6:7:8', 0x0000_0002_0003_0004_0005_0006_0007_0008n],
    ['1:2:3::6:7:8', 0x0001_0002_0003_0000_0000_0006_0007_0008n],
    ['1:2:3:4:5:6:7:8', 0x0001_0002_0003_0004_0005_0006_0007_0008n],
    ['fe80::1:2', (0xfe80n << 112n) | 0x1_0002n],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', (1n << 128n) - 1n],
    ['::192.0.2.1', 0xc0000201n],
    ['64:ff9b::192.0.2.1', (0x64ff9bn << 96n) | 0xc0000201n],
    ['1:2:3:4:5:6:1.2.3.4', 0x0001_0002_0003_0004_0005_0006_0102_0304n],
  ])('%s', (text, value) => {
    expect(parseAddress(text)).toEqual({ version: 6, value });
  });

  it('compressed, full, padded and upper-case spellings are the same address', () => {
    const spellings = ['2001:db8::1', '2001:db8:0:0:0:0:0:1', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:DB8::1', '2001:db8:0::0:1', '2001:db8::0:0:1'];
    const values = spellings.map((s) => parseAddress(s));
    for (const v of values) expect(v).toEqual(values[0]);
    const m = allow('2001:db8::1/128');
    for (const s of spellings) expect(m(s), s).toBe(true);
  });

  it('IPv4 addresses', () => {
    expect(parseAddress('0.0.0.0')).toEqual({ version: 4, value: 0n });
    expect(parseAddress('192.0.2.1')).toEqual({ version: 4, value: 0xc0000201n });
    expect(parseAddress('255.255.255.255')).toEqual({ version: 4, value: 0xffffffffn });
    expect(parseAddress('10.0.0.0')).toEqual({ version: 4, value: 0x0a000000n });
  });

  it('surrounding blanks are ignored; a prefix is not an address', () => {
    expect(parseAddress('  192.0.2.1\t')).toEqual({ version: 4, value: 0xc0000201n });
    expect(parseAddress('\n::1 ')).toEqual({ version: 6, value: 1n });
    expect(parseAddress('192.0.2.1/32')).toBeNull();
    expect(parseAddress('::1/128')).toBeNull();
  });
});

describe('IPv4-mapped IPv6', () => {
  it('a mapped address is the IPv4 address, dotted or hex, any case, compressed or not', () => {
    for (const text of ['::ffff:192.0.2.1', '::FFFF:192.0.2.1', '::ffff:c000:201', '0:0:0:0:0:ffff:192.0.2.1', '0000:0000:0000:0000:0000:FFFF:C000:0201', '::0:ffff:192.0.2.1']) {
      expect(parseAddress(text), text).toEqual({ version: 4, value: 0xc0000201n });
    }
  });

  it('IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses stay IPv6', () => {
    expect(parseAddress('::192.0.2.1')?.version).toBe(6);
    expect(parseAddress('64:ff9b::192.0.2.1')?.version).toBe(6);
    expect(parseAddress('::fffe:192.0.2.1')?.version).toBe(6);
    expect(parseAddress('::1:ffff:192.0.2.1')?.version).toBe(6);
  });

  it('a mapped client matches IPv4 ranges', () => {
    const m = allow('203.0.113.0/24');
    expect(m('::ffff:203.0.113.7')).toBe(true);
    expect(m('::ffff:cb00:7107')).toBe(true);
    expect(m('::ffff:203.0.114.7')).toBe(false);
    expect(m('::203.0.113.7')).toBe(false);
  });

  it('an IPv4 client matches mapped ranges', () => {
    const m = allow('::ffff:192.0.2.0/120');
    expect(m('192.0.2.0')).toBe(true);
    expect(m('192.0.2.255')).toBe(true);
    expect(m('192.0.3.0')).toBe(false);
    expect(m('192.0.1.255')).toBe(false);
    expect(m('::ffff:192.0.2.9')).toBe(true);
    const one = allow('::ffff:192.0.2.1');
    expect(one('192.0.2.1')).toBe(true);
    expect(one('192.0.2.2')).toBe(false);
  });

  it('::ffff:0:0/96 is every IPv4 address; mapped ranges are stored as IPv4', () => {
    expect(range('::ffff:0:0/96')).toEqual({ version: 4, network: 0n, prefix: 0, text: '::ffff:0:0/96' });
    expect(range('::ffff:10.0.0.0/104')).toEqual({ version: 4, network: 0x0a000000n, prefix: 8, text: '::ffff:10.0.0.0/104' });
    expect(range('::ffff:192.0.2.1/128')).toEqual({ version: 4, network: 0xc0000201n, prefix: 32, text: '::ffff:192.0.2.1/128' });
    const m = allow('::ffff:0:0/96');
    for (const ip of ['0.0.0.0', '203.0.113.7', '255.255.255.255', '::ffff:1.2.3.4']) expect(m(ip), ip).toBe(true);
    for (const ip of ['::', '::fffe:ffff:ffff', '::1:0:0:0', '2001:db8::1']) expect(m(ip), ip).toBe(false);
  });

  it('an IPv6 range wider than /96 is IPv6 only, even if it contains ::ffff:0:0/96', () => {
    expect(range('::fffe:0:0/95')).toEqual({ version: 6, network: 0xfffen << 32n, prefix: 95, text: '::fffe:0:0/95' });
    expect(problem('::ffff:0:0/95')).toBe('"::ffff:0:0/95": host bits set; did you mean ::fffe:0:0/95?');
    const m = allow('::fffe:0:0/95');
    // ::ffff:0:1 is the IPv4 address 0.0.0.1: IPv4, so outside an IPv6 range.
    expect(m('::ffff:0:1')).toBe(false);
    expect(m('::fffe:0:1')).toBe(true);
    expect(m('192.0.2.1')).toBe(false);
    expect(m('::ffff:192.0.2.1')).toBe(false);
  });
});

describe('rejections, each with its problem message', () => {
  it.each([
    // Host bits beyond the prefix.
    ['10.0.0.1/8', '"10.0.0.1/8": host bits set; did you mean 10.0.0.0/8?'],
    ['203.0.113.7/24', '"203.0.113.7/24": host bits set; did you mean 203.0.113.0/24?'],
    ['192.0.2.7/31', '"192.0.2.7/31": host bits set; did you mean 192.0.2.6/31?'],
    ['128.0.0.0/0', '"128.0.0.0/0": host bits set; did you mean 0.0.0.0/0?'],
    ['2001:db8::1/32', '"2001:db8::1/32": host bits set; did you mean 2001:db8::/32?'],
    ['2001:db8:0:1::/48', '"2001:db8:0:1::/48": host bits set; did you mean 2001:db8::/48?'],
    ['2001:db8::3/127', '"2001:db8::3/127": host bits set; did you mean 2001:db8::2/127?'],
    ['::1/0', '"::1/0": host bits set; did you mean ::/0?'],
    ['1:0:0:1:0:0:0:1/112', '"1:0:0:1:0:0:0:1/112": host bits set; did you mean 1:0:0:1::/112?'],
    ['::ffff:10.0.0.1/104', '"::ffff:10.0.0.1/104": host bits set; did you mean ::ffff:10.0.0.0/104?'],
    // Prefix out of range or malformed.
    ['10.0.0.0/33', '"10.0.0.0/33": prefix /33 is out of range (0–32 for IPv4)'],
    ['::/129', '"::/129": prefix /129 is out of range (0–128 for IPv6)'],
    ['::ffff:0:0/129', '"::ffff:0:0/129": prefix /129 is out of range (0–128 for IPv6)'],
    ['10.0.0.0/999', '"10.0.0.0/999": prefix /999 is out of range (0–32 for IPv4)'],
    ['10.0.0.0/1000', '"10.0.0.0/1000": prefix "1000" is not a number 0–32'],
    ['10.0.0.0/', '"10.0.0.0/": prefix "" is not a number 0–32'],
    ['10.0.0.0/-1', '"10.0.0.0/-1": prefix "-1" is not a number 0–32'],
    ['10.0.0.0/+8', '"10.0.0.0/+8": prefix "+8" is not a number 0–32'],
    ['10.0.0.0/8/8', '"10.0.0.0/8/8": prefix "8/8" is not a number 0–32'],
    ['10.0.0.0/ 8', '"10.0.0.0/ 8": prefix " 8" is not a number 0–32'],
    ['10.0.0.0/0x8', '"10.0.0.0/0x8": prefix "0x8" is not a number 0–32'],
    ['2001:db8::/3a', '"2001:db8::/3a": prefix "3a" is not a number 0–128'],
    ['10.0.0.0/08', '"10.0.0.0/08": prefix "08" has a leading zero'],
    ['::/00', '"::/00": prefix "00" has a leading zero'],
    ['/8', '"/8": missing the address before "/"'],
    // Leading zeros in IPv4 octets (octal or decimal?), octets over 255.
    ['010.0.0.1', '"010.0.0.1": IPv4 octet "010" has a leading zero (ambiguous: octal or decimal?)'],
    ['10.0.0.01', '"10.0.0.01": IPv4 octet "01" has a leading zero (ambiguous: octal or decimal?)'],
    ['1.2.3.00', '"1.2.3.00": IPv4 octet "00" has a leading zero (ambiguous: octal or decimal?)'],
    ['010.0.0.0/8', '"010.0.0.0/8": IPv4 octet "010" has a leading zero (ambiguous: octal or decimal?)'],
    ['::ffff:010.0.0.1', '"::ffff:010.0.0.1": embedded IPv4: IPv4 octet "010" has a leading zero (ambiguous: octal or decimal?)'],
    ['256.0.0.1', '"256.0.0.1": IPv4 octet "256" is over 255'],
    ['1.2.3.1000', '"1.2.3.1000": IPv4 octet "1000" is over 255'],
    ['::ffff:1.2.3.256', '"::ffff:1.2.3.256": embedded IPv4: IPv4 octet "256" is over 255'],
    // Not a dotted quad.
    ['1.2.3', '"1.2.3": not an IPv4 address (expected four numbers separated by ".")'],
    ['127.1', '"127.1": not an IPv4 address (expected four numbers separated by ".")'],
    ['1.2.3.4.5', '"1.2.3.4.5": not an IPv4 address (expected four numbers separated by ".")'],
    ['1..2.3', '"1..2.3": not an IPv4 address (expected four numbers separated by ".")'],
    ['1.2.3.4.', '"1.2.3.4.": not an IPv4 address (expected four numbers separated by ".")'],
    ['0x7f.0.0.1', '"0x7f.0.0.1": not an IPv4 address (expected four numbers separated by ".")'],
    ['1.2.3.-4', '"1.2.3.-4": not an IPv4 address (expected four numbers separated by ".")'],
    ['１.２.３.４', '"１.２.３.４": not an IPv4 address (expected four numbers separated by ".")'],
    ['1.2.3.4\u00a0', '"1.2.3.4\u00a0": not an IPv4 address (expected four numbers separated by ".")'],
    ['1.2.3 .4', '"1.2.3 .4": not an IPv4 address (expected four numbers separated by ".")'],
    ['::ffff:1.2.3', '"::ffff:1.2.3": embedded IPv4: not an IPv4 address (expected four numbers separated by ".")'],
    // Zone ids.
    ['fe80::1%eth0', '"fe80::1%eth0": zone ids ("%eth0") are not allowed'],
    ['fe80::1%1/128', '"fe80::1%1/128": zone ids ("%1") are not allowed'],
    ['fe80::%25eth0', '"fe80::%25eth0": zone ids ("%25eth0") are not allowed'],
    // More than one "::", groups over 4 hex digits, other malformed IPv6.
    ['1::2::3', '"1::2::3": more than one "::"'],
    ['::1::', '"::1::": more than one "::"'],
    ['2001:db8::/32::', '"2001:db8::/32::": prefix "32::" is not a number 0–128'],
    [':::', '":::": not an IPv6 address (":::")'],
    ['1:::2', '"1:::2": not an IPv6 address (":::")'],
    ['2001:db8::12345', '"2001:db8::12345": group "12345" has more than 4 hex digits'],
    ['02001:db8::1', '"02001:db8::1": group "02001" has more than 4 hex digits'],
    ['2001:db8::g', '"2001:db8::g": not an IPv6 address'],
    ['2001:db8::-1', '"2001:db8::-1": not an IPv6 address'],
    ['[::1]', '"[::1]": not an IPv6 address'],
    ['1:2:3:4:5:6:7', '"1:2:3:4:5:6:7": not an IPv6 address (7 groups; expected 8, or "::" for zero groups)'],
    ['1:2:3:4:5:6:7:8:9', '"1:2:3:4:5:6:7:8:9": not an IPv6 address (9 groups; expected 8, or "::" for zero groups)'],
    ['1:2:3:4:5:6:7:1.2.3.4', '"1:2:3:4:5:6:7:1.2.3.4": not an IPv6 address (9 groups; expected 8, or "::" for zero groups)'],
    ['1:2:3:4:5:6:7:8::', '"1:2:3:4:5:6:7:8::": not an IPv6 address ("::" must stand for at least one group; 8 given)'],
    ['::1:2:3:4:5:6:7:8', '"::1:2:3:4:5:6:7:8": not an IPv6 address ("::" must stand for at least one group; 8 given)'],
    [':1::', '":1::": not an IPv6 address (empty group: a stray ":")'],
    ['1::2:', '"1::2:": not an IPv6 address (empty group: a stray ":")'],
    [':1:2:3:4:5:6:7', '":1:2:3:4:5:6:7": not an IPv6 address (empty group: a stray ":")'],
    ['1:2:3:4:5:6:7:', '"1:2:3:4:5:6:7:": not an IPv6 address (empty group: a stray ":")'],
    ['1.2.3.4::', '"1.2.3.4::": not an IPv6 address'],
    ['::1.2.3.4:5', '"::1.2.3.4:5": not an IPv6 address'],
    ['::1.2.3.4.5', '"::1.2.3.4.5": embedded IPv4: not an IPv4 address (expected four numbers separated by ".")'],
    [':1.2.3.4', '":1.2.3.4": not an IPv6 address (empty group: a stray ":")'],
    // Anything else.
    ['', '"": empty; expected an IP address or CIDR range'],
    ['   ', '"": empty; expected an IP address or CIDR range'],
    ['not an ip', '"not an ip": not an IPv4 or IPv6 address'],
    ['localhost', '"localhost": not an IPv4 or IPv6 address'],
    ['3221225985', '"3221225985": not an IPv4 or IPv6 address'],
    ['*', '"*": not an IPv4 or IPv6 address'],
    ['10.0.0.0 - 10.0.0.255', '"10.0.0.0 - 10.0.0.255": not an IPv4 address (expected four numbers separated by ".")'],
    [`${'1'.repeat(70)}`, `"${'1'.repeat(48)}…": too long to be an IP address or CIDR range`],
  ])('%j', (entry, expected) => {
    expect(problem(entry)).toBe(expected);
    // The same text as a client address is invalid (or, with a prefix, never an address).
    expect(parseAddress(entry)).toBeNull();
  });

  it('a non-string entry is a problem, not an exception', () => {
    expect(problem(42 as unknown as string)).toBe('must be a string (an IP address or CIDR range)');
    expect(problem(undefined as unknown as string)).toBe('must be a string (an IP address or CIDR range)');
  });

  it('compileAllowlist reports every bad entry with its index, and no matcher', () => {
    const c = compileAllowlist(['10.0.0.0/8', '10.0.0.1/8', 'nope', '2001:db8::/32', 'fe80::1%eth0', 7 as unknown as string]);
    expect(c).toEqual({
      ok: false,
      problems: [
        '[1] "10.0.0.1/8": host bits set; did you mean 10.0.0.0/8?',
        '[2] "nope": not an IPv4 or IPv6 address',
        '[4] "fe80::1%eth0": zone ids ("%eth0") are not allowed',
        '[5] must be a string (an IP address or CIDR range)',
      ],
    });
  });

  it('compileAllowlist on something that is not a list is a problem', () => {
    expect(compileAllowlist('10.0.0.0/8' as unknown as string[])).toEqual({ ok: false, problems: ['must be a list of IP addresses or CIDR ranges'] });
  });
});

describe('missing or invalid client IPs never match (and never throw)', () => {
  const m = allow('0.0.0.0/0', '::/0');
  it.each([
    ['undefined', undefined],
    ['null', null],
    ['empty', ''],
    ['blank', '   '],
    ['not an ip', 'not an ip'],
    ['a range', '203.0.113.0/24'],
    ['a zone id', 'fe80::1%eth0'],
    ['leading zero', '010.0.0.1'],
    ['brackets', '[::1]'],
    ['a list', '203.0.113.7, 198.51.100.1'],
    ['with a port', '203.0.113.7:443'],
    ['too long', `${'1.'.repeat(100)}1`],
  ])('%s', (_, ip) => {
    expect(m(ip)).toBe(false);
  });

  it('non-string values', () => {
    for (const v of [0, 1, {}, [], ['1.2.3.4'], true, 0x7f000001n, Symbol('ip')]) expect(m(v as unknown as string)).toBe(false);
    expect(parseAddress(5 as unknown as string)).toBeNull();
  });

  it('a header value with surrounding blanks still matches', () => {
    expect(allow('203.0.113.0/24')(' 203.0.113.7 ')).toBe(true);
  });
});
