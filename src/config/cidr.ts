// IPv4/IPv6 addresses and CIDR ranges as 128-bit integers, so one comparison serves both families.
// IPv4 and IPv4-mapped IPv6 (::ffff:a.b.c.d) are the same address here: a rule on 10.0.0.0/8 cannot be
// dodged by writing the peer as ::ffff:10.1.2.3.
import { isIP } from 'node:net';

export interface Cidr {
  readonly text: string;
  readonly base: bigint;
  readonly mask: bigint;
  readonly bits: number;
}

const V4_MAPPED_PREFIX = 0xffffn << 32n;
const ALL_ONES = (1n << 128n) - 1n;

/** The 128-bit value of an address; IPv4 is mapped into ::ffff:0:0/96. Undefined when not an address. */
export function addressToBigInt(address: string): bigint | undefined {
  const zone = address.indexOf('%');
  if (zone !== -1) address = address.slice(0, zone);
  const family = isIP(address);
  if (family === 4) return V4_MAPPED_PREFIX | v4ToBigInt(address);
  if (family !== 6) return undefined;
  let head = address;
  let tail: bigint[] = [];
  // An embedded IPv4 tail (::ffff:1.2.3.4) counts as the last two groups.
  const lastColon = head.lastIndexOf(':');
  if (head.includes('.', lastColon)) {
    const v4 = v4ToBigInt(head.slice(lastColon + 1));
    head = head.slice(0, lastColon + 1) + '0:0';
    tail = [v4];
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const leftGroups = left ? left.split(':') : [];
  const rightGroups = right === undefined ? [] : right ? right.split(':') : [];
  const missing = 8 - leftGroups.length - rightGroups.length;
  const groups = [...leftGroups, ...Array<string>(right === undefined ? 0 : missing).fill('0'), ...rightGroups];
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(parseInt(g || '0', 16));
  if (tail.length) value = (value & ~0xffffffffn) | tail[0]!;
  return value;
}

function v4ToBigInt(address: string): bigint {
  let value = 0n;
  for (const part of address.split('.')) value = (value << 8n) | BigInt(Number(part));
  return value;
}

export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return undefined;
  const maxBits = family === 4 ? 32 : 128;
  let bits = maxBits;
  if (slash !== -1) {
    const b = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b)) return undefined;
    bits = Number(b);
    if (bits > maxBits) return undefined;
  }
  const prefixBits = family === 4 ? bits + 96 : bits;
  const mask = prefixBits === 0 ? 0n : (ALL_ONES << BigInt(128 - prefixBits)) & ALL_ONES;
  const value = addressToBigInt(address);
  if (value === undefined) return undefined;
  return { text, base: value & mask, mask, bits: prefixBits };
}

/** A compiled set of ranges; `has` answers for an address string. */
export class CidrSet {
  readonly #ranges: readonly Cidr[];
  constructor(ranges: readonly Cidr[]) {
    this.#ranges = ranges;
  }
  get size(): number {
    return this.#ranges.length;
  }
  has(address: string): boolean {
    if (this.#ranges.length === 0) return false;
    const value = addressToBigInt(address);
    if (value === undefined) return false;
    for (const r of this.#ranges) if ((value & r.mask) === r.base) return true;
    return false;
  }
}

/** `::ffff:1.2.3.4` → `1.2.3.4`, so one client has one spelling in keys and logs. */
export function canonicalAddress(address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  return address;
}
