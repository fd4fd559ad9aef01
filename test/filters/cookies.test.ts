// Set-Cookie rewriting: flags enforced, values untouched, prefix rules.
import { describe, expect, it } from 'vitest';
import { rewriteSetCookie, type CookieRules } from '../../src/filters/cookies.ts';
import { BASE, compile, context, problems, respond, route } from '../helpers/filters.ts';

const lax: CookieRules = { httpOnly: true, readable: new Set(['csrf']), secure: null, keepSecure: false, sameSite: 'lax' };

describe('rewriteSetCookie', () => {
  const table: [string, boolean, string][] = [
    ['session=abc', false, 'session=abc; HttpOnly; SameSite=Lax'],
    ['session=abc', true, 'session=abc; Secure; HttpOnly; SameSite=Lax'],
    ['session=a%3Db=c; Path=/api; Max-Age=60', true, 'session=a%3Db=c; Path=/api; Max-Age=60; Secure; HttpOnly; SameSite=Lax'],
    ['s=1; samesite=none', false, 's=1; HttpOnly; SameSite=Lax'], // raised to the policy's minimum
    ['s=1; SameSite=Strict', false, 's=1; HttpOnly; SameSite=Strict'], // stricter upstream value kept
    ['s=1; Secure; HttpOnly', false, 's=1; Secure; HttpOnly; SameSite=Lax'], // never weaker than the upstream
    ['csrf=t0k3n; Path=/', true, 'csrf=t0k3n; Path=/; Secure; SameSite=Lax'], // script-readable
    ['__Host-id=1; Domain=example.com; Path=/x', false, '__Host-id=1; Path=/; Secure; HttpOnly; SameSite=Lax'],
    ['__Secure-id=1; Domain=example.com', false, '__Secure-id=1; Domain=example.com; Secure; HttpOnly; SameSite=Lax'],
  ];
  it.each(table)('%s (https %s)', (line, https, expected) => {
    expect(rewriteSetCookie(line, lax, https)).toBe(expected);
  });

  it('never changes the name=value pair, byte for byte', () => {
    for (const pair of ['a=', 'a=b=c', 'tok=eyJhbGciOi.J9.x-_', 'x=%E2%9C%93', 'weird =  spaced ']) {
      expect(rewriteSetCookie(`${pair}; Path=/`, lax, true).startsWith(pair + ';')).toBe(true);
    }
  });

  it('forces Secure with SameSite=None', () => {
    expect(rewriteSetCookie('s=1', { ...lax, sameSite: 'none' }, false)).toBe('s=1; Secure; HttpOnly; SameSite=None');
  });
});

describe('cookies filter', () => {
  const policy = compile(`${BASE}
cookies:
  login: { same_site: lax, public_url: "\${env:BASE_URL}", script_readable: [csrf] }
  plainurl: { public_url: "http://localhost:8080" }
routes:
  - name: login
    match: { path_prefix: /login }
    upstream: app
    cookies: login
  - name: plainurl
    match: { path_prefix: /plain }
    upstream: app
    cookies: plainurl
  - name: untouched
    match: { path_prefix: /untouched }
    upstream: app
`, { BASE_URL: 'https://api.example.com' });

  it('adds Secure when the public URL is https, even behind a plain hop', () => {
    const head = respond(route(policy, 'login'), context('POST'), 200, { 'set-cookie': ['session=xyz; Path=/', 'csrf=abc; Path=/'] });
    expect(head.headers['set-cookie']).toEqual(['session=xyz; Path=/; Secure; HttpOnly; SameSite=Lax', 'csrf=abc; Path=/; Secure; SameSite=Lax']);
  });

  it('does not add Secure when the public URL is http', () => {
    const head = respond(route(policy, 'plainurl'), context('POST', {}, { scheme: 'https' }), 200, { 'set-cookie': 'session=xyz' });
    expect(head.headers['set-cookie']).toBe('session=xyz; HttpOnly; SameSite=Lax');
  });

  it('leaves routes without a cookies policy alone', () => {
    expect(respond(route(policy, 'untouched'), context('GET'), 200, { 'set-cookie': 'a=b' }).headers['set-cookie']).toBe('a=b');
  });
});

describe('cookies production checks', () => {
  it('refuses secure: keep and an http public_url in production', () => {
    const text = (c: string) => `${BASE}mode: production\ntrusted_proxies: [10.0.0.0/8]\ncookies:\n  login: ${c}\nroutes:\n  - match: { path_prefix: / }\n    upstream: app\n    auth: none\n    cookies: login\n`;
    expect(problems(text('{ secure: keep }'))[0]).toMatch(/policy\.yaml:\d+:\d+: production: cookies must get Secure/);
    expect(problems(text('{ public_url: "http://api.example.com" }'))[0]).toMatch(/production: public_url is plain http/);
    expect(problems(text('{ public_url: "https://api.example.com" }'))).toEqual([]);
  });
});
