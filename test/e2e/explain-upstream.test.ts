// `explain` tells what the upstream gets: the rewritten target, the upstream Host, the headers added and
// removed. Checked against what a recording upstream actually received for the same request, sent byte
// for byte over a raw socket so the client's headers are exactly the ones explain is given.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

function policy(upstream: string): string {
  return `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams:
  app: { url: "${upstream}" }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    rewrite: { strip_prefix: /api, add_prefix: /v2, host: backend.internal:8080 }
    request_headers: { add: { X-Env: prod, X-Tenant: gateway }, remove: [X-Debug] }
  - name: plain
    match: { path_prefix: / }
    upstream: app
`;
}

interface UpstreamRequest {
  method: string;
  target: string;
  host: string;
  headers_added: Record<string, string>;
  headers_removed: string[];
}

const CLIENT_HEADERS: [string, string][] = [
  ['Host', 'shop.example.com'],
  ['X-Request-ID', 'explain-e2e-1'],
  ['X-Debug', '1'],
  ['X-Tenant', 'client-says'],
  ['X-Real-IP', '6.6.6.6'], // untrusted peer: scrubbed
  ['X_User', 'admin'], // underscore name: dropped
  ['X-Forwarded-For', '9.9.9.9'], // untrusted peer: replaced by the gateway's
  ['Accept', 'application/json'],
  ['Connection', 'keep-alive'],
];

describe('explain: the upstream request', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startGateway(policy(up.url));
  });
  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  for (const url of ['/api/orders/7?full=1', '/other/page']) {
    it(`says what the upstream received for GET ${url}`, async () => {
      const args = ['explain', gw.policyFile, 'GET', url];
      for (const [name, value] of CLIENT_HEADERS) args.push('-H', `${name}: ${value}`);
      const cli = await runCli(args);
      expect(cli.code, cli.stderr).toBe(0);
      const explained = (JSON.parse(cli.stdout) as { upstream_request: UpstreamRequest }).upstream_request;

      const before = up.received.length;
      const head = CLIENT_HEADERS.map(([n, v]) => `${n}: ${v}\r\n`).join('');
      const response = await rawRequest(gw.url, `GET ${url} HTTP/1.1\r\n${head.replace('Connection: keep-alive', 'Connection: close')}\r\n`);
      expect(statusOf(response)).toBe(200);
      expect(up.received.length).toBe(before + 1);
      const got = up.received[before]!;

      expect(got.url).toBe(explained.target);
      expect(got.headers.host).toBe(explained.host);
      for (const [name, value] of Object.entries(explained.headers_added)) expect(got.headers[name], name).toBe(value);
      // (connection: the client's hop ends at the gateway; undici sends its own on the upstream hop)
      for (const name of explained.headers_removed) if (name !== 'connection') expect(got.headers[name], name).toBeUndefined();
      expect(explained.headers_removed).toEqual(expect.arrayContaining(['connection', 'x-real-ip', 'x_user']));
      // Nothing else changed: every other header arrived as the client sent it (undici's own connection
      // header aside: that is the gateway-to-upstream hop).
      const sent = new Map(CLIENT_HEADERS.map(([n, v]) => [n.toLowerCase(), v]));
      for (const [name, value] of Object.entries(got.headers)) {
        if (name === 'connection' || name in explained.headers_added) continue;
        expect(sent.get(name), `${name} reached the upstream without explain saying so`).toBe(value);
      }
    });
  }

  it('shows the rewrite, the Host and the header edits', async () => {
    const cli = await runCli(['explain', gw.policyFile, 'GET', 'http://shop.example.com/api/orders', '-H', 'X-Debug: 1', '-H', 'X-Real-IP: 1.2.3.4']);
    const explained = (JSON.parse(cli.stdout) as { upstream_request: UpstreamRequest }).upstream_request;
    expect(explained.target).toBe('/v2/orders');
    expect(explained.host).toBe('backend.internal:8080');
    expect(explained.headers_added).toMatchObject({ 'x-env': 'prod', 'x-tenant': 'gateway', 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'shop.example.com' });
    expect(explained.headers_removed).toEqual(expect.arrayContaining(['x-debug', 'x-real-ip']));
  });
});
