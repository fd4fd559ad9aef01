// Attacks on which route a path takes: path parameters (`;`), double encoding (`%25`), and spellings
// (letter case, trailing slash) that an upstream serves as the same resource while a naive router sends
// them to a broader, weaker route. Run against two kinds of upstream: a case- and slash-sensitive one
// (Node), and one that serves `/Login`, `/login/` and `/login;x=1` as `/login` (Express's defaults, IIS,
// Tomcat's path parameters). Each request's fate is judged by what the upstream served.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { problems, BASE } from '../helpers/filters.ts';
import { rawRequest, reasonOf, statusOf } from '../helpers/raw.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

/** Serves what Express (case-insensitive, non-strict routing) and Tomcat (`;` parameters) would: the resource path. */
interface LenientUpstream {
  url: string;
  served: string[];
  close(): Promise<void>;
}

function resourceOf(url: string): string {
  const path = url.split('?')[0]!;
  const out: string[] = [];
  for (const raw of decodeURIComponent(path).split('/')) {
    const seg = raw.split(';')[0]!.toLowerCase();
    if (seg === '..') out.pop();
    else if (seg !== '' && seg !== '.') out.push(seg);
  }
  return '/' + out.join('/');
}

async function startLenientUpstream(): Promise<LenientUpstream> {
  const served: string[] = [];
  const server: Server = createServer((req, res) => {
    served.push(resourceOf(req.url ?? '/'));
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

let strict: RecordingUpstream;
let lenient: LenientUpstream;
let gw: RunningGateway;

// Both hosts have the same shape: a protected exact /login and prefix /admin, an open /public and catch-all.
function routesFor(host: string, upstream: string): string {
  return `
  - name: ${host}-login
    match: { host: ${host}.test, path: /login }
    upstream: ${upstream}
    ip_rules: { allow: [192.0.2.0/24] }
  - name: ${host}-admin
    match: { host: ${host}.test, path_prefix: /admin }
    upstream: ${upstream}
    ip_rules: { allow: [192.0.2.0/24] }
  - name: ${host}-public
    match: { host: ${host}.test, path_prefix: /public }
    upstream: ${upstream}
  - name: ${host}-tomcat
    match: { host: ${host}.test, path_prefix: /tomcat }
    upstream: ${upstream}
    hardening: { path_parameters: allow }
  - name: ${host}-legacy
    match: { host: ${host}.test, path_prefix: /legacy }
    upstream: ${upstream}
    hardening: { encoded_percent: allow }
  - name: ${host}-shadow
    match: { host: ${host}.test, path_prefix: /shadow }
    upstream: ${upstream}
    hardening: { mode: report }
  - name: ${host}-all
    match: { host: ${host}.test, path_prefix: / }
    upstream: ${upstream}
    hardening: { path_parameters: allow }`;
}

beforeAll(async () => {
  strict = await startUpstream();
  lenient = await startLenientUpstream();
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
upstreams:
  strict: { url: "${strict.url}" }
  lenient: { url: "${lenient.url}" }
routes:${routesFor('strict', 'strict')}${routesFor('lenient', 'lenient')}
`);
});

afterAll(async () => {
  await gw?.stop();
  await strict?.close();
  await lenient?.close();
});

beforeEach(() => {
  strict.received.length = 0;
  lenient.served.length = 0;
});

function send(host: string, path: string): Promise<string> {
  return rawRequest(gw.url, `GET ${path} HTTP/1.1\r\nHost: ${host}.test\r\nConnection: close\r\n\r\n`);
}

// Spellings of the protected resources: none may be served by any upstream.
const ESCAPES: [string, string][] = [
  ['/Login', 'ambiguous_path'],
  ['/LOGIN', 'ambiguous_path'],
  ['/login/', 'ambiguous_path'],
  ['/Login/', 'ambiguous_path'],
  ['/login;x=1', 'ambiguous_path'], // the catch-all allows parameters, but /login would take another route
  ['/login;', 'ambiguous_path'],
  ['/LOGIN;jsessionid=1', 'ambiguous_path'],
  ['/public/..;/login', 'path_parameter'],
  ['/public/..;/admin/x', 'path_parameter'],
  ['/public/%3B/../admin', 'path_parameter'],
  ['/ADMIN/x', 'ambiguous_path'],
  ['/Admin/', 'ambiguous_path'],
  ['/aDmIn', 'ambiguous_path'],
  ['/admin;x/secret', 'ambiguous_path'],
  ['/tomcat/..;/login', 'ambiguous_path'], // parameters allowed here, but the path Tomcat serves is /login
  ['/tomcat/..;/admin/x', 'ambiguous_path'],
  ['/public/%252e%252e/admin', 'encoded_percent'],
  ['/public/%2561dmin', 'encoded_percent'],
];

describe.each(['strict', 'lenient'] as const)('a %s upstream', (kind) => {
  const served = () => (kind === 'strict' ? strict.received.map((r) => resourceOf(r.url)) : lenient.served);

  it.each(ESCAPES)('refuses %s (%s) before any upstream sees it', async (path, reason) => {
    const reply = await send(kind, path);
    expect(statusOf(reply)).toBe(400);
    expect(reasonOf(reply)).toBe(reason);
    expect(served()).toEqual([]);
  });

  it('keeps the protected route protected in its own spelling', async () => {
    expect(statusOf(await send(kind, '/login'))).toBe(403);
    expect(statusOf(await send(kind, '/admin/x'))).toBe(403);
    expect(served()).toEqual([]);
  });

  it('serves ordinary paths, and parameters where a route allows them and no other route claims the path', async () => {
    expect(statusOf(await send(kind, '/public/a/b'))).toBe(200);
    expect(statusOf(await send(kind, '/tomcat/app;jsessionid=ABC'))).toBe(200);
    expect(statusOf(await send(kind, '/other;v=1'))).toBe(200);
    expect(statusOf(await send(kind, '/legacy/%2541'))).toBe(200);
    expect(served()).toEqual(['/public/a/b', '/tomcat/app', '/other', kind === 'strict' ? '/legacy/%41' : '/legacy/%41']);
    if (kind === 'strict') expect(strict.received.map((r) => r.url)).toEqual(['/public/a/b', '/tomcat/app;jsessionid=ABC', '/other;v=1', '/legacy/%2541']);
  });

  it('in report mode, forwards what it would refuse and says so in the error log', async () => {
    const reply = await send(kind, '/shadow/a;b');
    expect(statusOf(reply)).toBe(200);
    expect(served()).toEqual(['/shadow/a']);
    await expect.poll(() => gw.stderr()).toMatch(/hardening \(report mode\): would refuse.*|"reason":"path_parameter"/);
    expect(gw.stderr()).toContain('"reason":"path_parameter"');
  });
});

describe('policy checks of path spelling', () => {
  it('refuses two routes that differ only in letter case or a trailing slash, naming where', () => {
    const found = problems(`${BASE}routes:
  - { match: { path: /Docs }, upstream: app }
  - { match: { path: /docs/ }, upstream: app }
`);
    expect(found.join('\n')).toMatch(/policy\.yaml:\d+:\d+: .*routes\[0\] matches the same path but for letter case or a trailing slash/);
  });

  it('accepts them when both say the upstream tells spellings apart (path_spelling: allow)', () => {
    expect(problems(`${BASE}routes:
  - { match: { path: /Docs }, upstream: app, hardening: { path_spelling: allow } }
  - { match: { path: /docs }, upstream: app, hardening: { path_spelling: allow } }
`)).toEqual([]);
  });

  it('names a wrong hardening value with its position', () => {
    const found = problems(`${BASE}hardening: { path_parameters: sometimes }
routes:
  - { match: { path_prefix: / }, upstream: app }
`);
    expect(found).toEqual(['policy.yaml:6:31: expected one of refuse, allow, got string "sometimes"']);
  });
});
