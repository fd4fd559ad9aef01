// Glob routes (`match.path_glob`) in the real gateway: which route served a request is what the upstream
// received (each route tags its requests with X-Route); the specificity rule against prefixes; the
// normalized path is the one matched; another spelling of a glob route's path is refused, not moved to a
// weaker route.
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, writePolicy, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

/** A raw request target (fetch would normalize dot segments before sending). */
function get(base: string, path: string): Promise<{ status: number; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('glob routes', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams:
  app: { url: "${up.url}" }
routes:
  - name: images
    match: { path_glob: "/files/**/*.png" }
    upstream: app
    request_headers: { add: { x-route: images } }
  - name: thumbs
    match: { path_glob: "/files/*/thumb-*.png" }
    upstream: app
    request_headers: { add: { x-route: thumbs } }
  - name: files
    match: { path_prefix: /files }
    upstream: app
    request_headers: { add: { x-route: files } }
  - name: private
    match: { path_prefix: /files/private }
    respond: { status: 403, reason: private_files }
  - name: root
    match: { path_prefix: / }
    upstream: app
    request_headers: { add: { x-route: root } }
`);
  });
  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  async function servedBy(path: string): Promise<{ status: number; route?: string; url?: string; reason?: string }> {
    const before = up.received.length;
    const res = await get(gw.url, path);
    const got = up.received.slice(before);
    if (got.length === 0) return { status: res.status, reason: (JSON.parse(res.body) as { reason: string }).reason };
    expect(got).toHaveLength(1);
    return { status: res.status, route: got[0]!.headers['x-route'] as string, url: got[0]!.url };
  }

  it('takes the glob over the prefixes it is at least as deep as; a deeper prefix keeps its requests', async () => {
    expect(await servedBy('/files/2026/05/cat.png')).toEqual({ status: 200, route: 'images', url: '/files/2026/05/cat.png' });
    expect(await servedBy('/files/cat.png')).toEqual({ status: 200, route: 'images', url: '/files/cat.png' });
    expect(await servedBy('/files/2026/thumb-cat.png')).toEqual({ status: 200, route: 'thumbs', url: '/files/2026/thumb-cat.png' });
    expect(await servedBy('/files/2026/cat.jpg')).toEqual({ status: 200, route: 'files', url: '/files/2026/cat.jpg' });
    expect(await servedBy('/files/private/cat.png')).toEqual({ status: 403, reason: 'private_files' });
    expect(await servedBy('/cat.png')).toEqual({ status: 200, route: 'root', url: '/cat.png' });
  });

  it('matches the normalized path, and forwards that path', async () => {
    expect(await servedBy('/files/a/../b/%63at.png')).toEqual({ status: 200, route: 'images', url: '/files/b/cat.png' });
    expect(await servedBy('/files//x///cat.png')).toEqual({ status: 200, route: 'images', url: '/files/x/cat.png' });
    // Dot segments cannot climb from the glob's tree into the private one, nor the other way.
    expect(await servedBy('/files/pub/../private/cat.png')).toEqual({ status: 403, reason: 'private_files' });
  });

  it('another spelling of a glob route (case, trailing slash) is refused, never moved to the weaker prefix', async () => {
    expect(await servedBy('/files/a/CAT.PNG')).toEqual({ status: 400, reason: 'ambiguous_path' });
    expect(await servedBy('/files/a/cat.png/')).toEqual({ status: 400, reason: 'ambiguous_path' });
    expect(await servedBy('/FILES/a/cat.png')).toEqual({ status: 400, reason: 'ambiguous_path' });
  });
});

describe('path_glob: validation', () => {
  const base = 'version: 1\nlisteners: [{ address: 127.0.0.1:0 }]\nupstreams:\n  app: { url: "http://127.0.0.1:9" }\nroutes:\n';
  it.each([
    ['two match kinds', '  - match: { path_glob: "/a/*", path_prefix: /a }\n    upstream: app\n', /one of "path", "path_prefix" or "path_glob"/],
    ['two ** in one glob', '  - match: { path_glob: "/a/**/b/**" }\n    upstream: app\n', /one \*\* per glob/],
    ['a glob without wildcard', '  - match: { path_glob: /a/b }\n    upstream: app\n', /use "path"/],
    ['the same glob twice', '  - match: { path_glob: "/a/*.png" }\n    upstream: app\n  - match: { path_glob: "/a/*.png" }\n    upstream: app\n', /duplicate route/],
    ['globs differing only in case', '  - match: { path_glob: "/a/*.png" }\n    upstream: app\n  - match: { path_glob: "/A/*.png" }\n    upstream: app\n', /letter case or a trailing slash/],
  ])('refuses %s', async (_name, routes, message) => {
    const r = await runCli(['validate', writePolicy(base + routes)]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(message);
  });
});
