// CSRF: verdict tables for Fetch Metadata / Origin / Referer, static token and double-submit modes.
import { describe, expect, it } from 'vitest';
import { safeEqual } from '../../src/filters/csrf.ts';
import { createHash } from 'node:crypto';
import { BASE, compile, context, problems, route, verdict } from '../helpers/filters.ts';

const TOKEN = 'e1c0c1d2edb1af378b90d593ca110ec3d3f211ba6f9e9ff5ca0a8f97b2f53811';
const policy = compile(`${BASE}
csrf:
  static: { token: "\${env:CSRF_TOKEN}", trusted_origins: ["\${env:FRONTEND_ORIGIN}"] }
  double: { double_submit_cookie: __Host-csrf }
  origin: { trusted_origins: [https://app.example.com] }
  sibling: { allow_same_site: true }
routes:
  - name: static
    match: { path_prefix: /static }
    upstream: app
    csrf: static
  - name: double
    match: { path_prefix: /double }
    upstream: app
    csrf: double
  - name: origin
    match: { path_prefix: /origin }
    upstream: app
    csrf: origin
  - name: sibling
    match: { path_prefix: /sibling }
    upstream: app
    csrf: sibling
  - name: exempt
    match: { path_prefix: /exempt }
    upstream: app
    csrf: none
  - name: report
    match: { path_prefix: /report }
    upstream: app
    csrf: { token: "\${env:CSRF_TOKEN}", mode: report }
  - name: readonly
    match: { path_prefix: /readonly, methods: [GET, HEAD] }
    upstream: app
    csrf: origin
`, { CSRF_TOKEN: TOKEN, FRONTEND_ORIGIN: 'https://app.example.com' });

const reason = (name: string, method: string, headers: Record<string, string>) => verdict(route(policy, name), context(method, headers, { scheme: 'https', authority: 'api.example.com' }))?.reason ?? 'pass';

describe('csrf origin checks', () => {
  const table: [string, Record<string, string>, string][] = [
    ['same-origin fetch', { 'sec-fetch-site': 'same-origin' }, 'pass'],
    ['user navigation', { 'sec-fetch-site': 'none' }, 'pass'],
    ['cross-site, untrusted', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.net' }, 'cross_site_request'],
    ['cross-site, trusted origin', { 'sec-fetch-site': 'cross-site', origin: 'https://app.example.com' }, 'pass'],
    ['cross-site, trusted look-alike', { 'sec-fetch-site': 'cross-site', origin: 'https://app.example.com.evil.net' }, 'cross_site_request'],
    ['same-site sibling, not allowed', { 'sec-fetch-site': 'same-site', origin: 'https://uploads.example.com' }, 'cross_site_request'],
    ['same-site, trusted origin', { 'sec-fetch-site': 'same-site', origin: 'https://app.example.com' }, 'pass'],
    ['duplicated Sec-Fetch-Site', { 'sec-fetch-site': 'same-origin, cross-site', origin: 'https://evil.net' }, 'cross_site_request'],
    ['Sec-Fetch-Site in upper case', { 'sec-fetch-site': 'SAME-ORIGIN', origin: 'https://evil.net' }, 'cross_site_request'],
    ['no metadata, own origin', { origin: 'https://api.example.com' }, 'pass'],
    ['no metadata, own origin upper case', { origin: 'HTTPS://API.EXAMPLE.COM' }, 'pass'],
    ['no metadata, other origin', { origin: 'https://evil.net' }, 'cross_site_request'],
    ['no metadata, own origin over http', { origin: 'http://api.example.com' }, 'cross_site_request'],
    ['no metadata, own host on another port', { origin: 'https://api.example.com:8443' }, 'cross_site_request'],
    ['no metadata, own host as a suffix', { origin: 'https://api.example.com.evil.net' }, 'cross_site_request'],
    ['null origin', { origin: 'null' }, 'cross_site_request'],
    ['no metadata, no origin, own referer', { referer: 'https://api.example.com/page' }, 'pass'],
    ['no metadata, no origin, foreign referer', { referer: 'https://evil.net/api.example.com' }, 'cross_site_request'],
    ['referer with userinfo trick', { referer: 'https://api.example.com@evil.net/' }, 'cross_site_request'],
    ['no browser headers at all', {}, 'pass'],
  ];
  it.each(table)('%s', (_name, headers, expected) => {
    expect(reason('origin', 'POST', headers)).toBe(expected);
  });

  it('drops the default port of Host, and trusts a proxy\'s forwarded host name', () => {
    const r = route(policy, 'origin');
    expect(verdict(r, context('POST', { origin: 'https://api.example.com' }, { scheme: 'https', authority: 'api.example.com:443' }))).toBeUndefined();
    const behind = context('POST', { origin: 'https://public.example.com' }, { scheme: 'https', authority: 'internal:8080' });
    expect(verdict(r, behind)?.reason).toBe('cross_site_request');
    behind.peerTrusted = true;
    behind.host = 'public.example.com';
    expect(verdict(r, behind)).toBeUndefined();
  });

  it('accepts same-site when allowed', () => {
    expect(reason('sibling', 'POST', { 'sec-fetch-site': 'same-site', origin: 'https://www.example.com' })).toBe('pass');
    expect(reason('sibling', 'POST', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.net' })).toBe('cross_site_request');
  });

  it('lets safe methods and exempt routes pass, and skips read-only routes at compile time', () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS']) expect(reason('static', m, { 'sec-fetch-site': 'cross-site' })).toBe('pass');
    expect(reason('exempt', 'POST', { 'sec-fetch-site': 'cross-site' })).toBe('pass');
    expect(route(policy, 'readonly').filters.map((f) => f.name)).not.toContain('csrf');
  });
});

describe('csrf tokens', () => {
  const table: [string, string, Record<string, string>, string][] = [
    ['static', 'right token', { 'x-csrf-token': TOKEN }, 'pass'],
    ['static', 'missing', {}, 'csrf_token_missing'],
    ['static', 'empty', { 'x-csrf-token': '' }, 'csrf_token_missing'],
    ['static', 'wrong', { 'x-csrf-token': TOKEN.slice(0, -1) + '0' }, 'csrf_token_mismatch'],
    ['static', 'prefix only', { 'x-csrf-token': TOKEN.slice(0, 10) }, 'csrf_token_mismatch'],
    ['static', 'two headers joined', { 'x-csrf-token': `${TOKEN}, ${TOKEN}` }, 'csrf_token_mismatch'],
    ['static', 'in a cookie instead', { cookie: `x-csrf-token=${TOKEN}` }, 'csrf_token_missing'],
    ['static', 'in another header', { 'x-xsrf-token': TOKEN }, 'csrf_token_missing'],
    ['static', 'trusted cross-site with token', { 'sec-fetch-site': 'cross-site', origin: 'https://app.example.com', 'x-csrf-token': TOKEN }, 'pass'],
    ['static', 'untrusted cross-site with token', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.net', 'x-csrf-token': TOKEN }, 'cross_site_request'],
    ['double', 'matching pair', { cookie: 'a=1; __Host-csrf=abc123; b=2', 'x-csrf-token': 'abc123' }, 'pass'],
    ['double', 'no cookie', { 'x-csrf-token': 'abc123' }, 'csrf_token_missing'],
    ['double', 'no header', { cookie: '__Host-csrf=abc123' }, 'csrf_token_missing'],
    ['double', 'different', { cookie: '__Host-csrf=abc123', 'x-csrf-token': 'abc124' }, 'csrf_token_mismatch'],
    ['double', 'tossed second cookie', { cookie: '__Host-csrf=evil; __Host-csrf=abc123', 'x-csrf-token': 'evil' }, 'csrf_token_mismatch'],
    ['double', 'similar cookie name', { cookie: 'x__Host-csrf=abc123', 'x-csrf-token': 'abc123' }, 'csrf_token_missing'],
  ];
  it.each(table)('%s: %s', (name, _label, headers, expected) => {
    expect(reason(name, 'POST', headers)).toBe(expected);
  });

  it('compares in constant time over digests, whatever the lengths', () => {
    const d = createHash('sha256').update('secret-value').digest();
    expect(safeEqual('secret-value', d)).toBe(true);
    expect(safeEqual('secret-valu', d)).toBe(false);
    expect(safeEqual('', d)).toBe(false);
  });

  it('report mode evaluates but lets everything through', () => {
    expect(reason('report', 'POST', {})).toBe('pass');
    expect(reason('report', 'POST', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.net' })).toBe('pass');
    expect(route(policy, 'report').filters.find((f) => f.name === 'csrf')!.describe()).toMatchObject({ mode: 'report', token_mode: 'static token' });
  });

  it('masks the token in explain output and checks policy shape', () => {
    expect(JSON.stringify(route(policy, 'static').filters.map((f) => f.describe()))).not.toContain(TOKEN);
    const one = (c: string) => problems(`${BASE}routes:\n  - match: { path_prefix: / }\n    upstream: app\n    csrf: ${c}\n`);
    expect(one('{ token: short }')[0]).toMatch(/at least 16 characters/);
    expect(one(`{ token: ${TOKEN}, double_submit_cookie: c }`)[0]).toMatch(/either "token" or "double_submit_cookie"/);
    expect(one('{ check_origin: false }')[0]).toMatch(/protects nothing/);
  });
});
