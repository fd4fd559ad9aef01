import { describe, expect, it } from 'vitest';
import { CidrSet, parseCidr } from '../../src/config/cidr.ts';
import { identifyClient } from '../../src/proxy/headers.ts';

const set = (...c: string[]) => new CidrSet(c.map((x) => parseCidr(x)!));

describe('CIDR', () => {
  it('matches IPv4, IPv6 and IPv4-mapped IPv6 alike', () => {
    const s = set('10.0.0.0/8', 'fd00::/8');
    expect(s.has('10.1.2.3')).toBe(true);
    expect(s.has('::ffff:10.1.2.3')).toBe(true);
    expect(s.has('11.0.0.1')).toBe(false);
    expect(s.has('fd12::1')).toBe(true);
    expect(s.has('fe80::1')).toBe(false);
  });
  it('refuses invalid ranges', () => {
    for (const bad of ['10.0.0.0/33', '10.0.0/8', 'fd00::/129', 'x', '10.0.0.0/-1']) expect(parseCidr(bad)).toBeUndefined();
  });
});

describe('identifyClient', () => {
  it('ignores X-Forwarded-For from an untrusted peer', () => {
    const id = identifyClient('203.0.113.9', { 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'https' }, set('10.0.0.0/8'));
    expect(id).toEqual({ clientIp: '203.0.113.9', trusted: false, proto: null, host: null });
  });
  it('takes the right-most untrusted hop from a trusted proxy', () => {
    const id = identifyClient('10.0.0.1', { 'x-forwarded-for': '6.6.6.6, 198.51.100.7, 10.0.0.2' }, set('10.0.0.0/8'));
    expect(id.clientIp).toBe('198.51.100.7');
    expect(id.trusted).toBe(true);
  });
  it('reads Forwarded when X-Forwarded-For is absent', () => {
    const id = identifyClient('10.0.0.1', { forwarded: 'for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"', 'x-forwarded-proto': 'https' }, set('10.0.0.0/8'));
    expect(id.clientIp).toBe('2001:db8::1');
    expect(id.proto).toBe('https');
  });
});
