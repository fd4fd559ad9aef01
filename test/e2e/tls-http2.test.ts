// TLS termination with ALPN (h2 and http/1.1 on one port), certificate hot reload, redirect-only listeners,
// trusted proxies: the real gateway, real certificates, node:http2 and curl --http2 as clients.
import { execFile } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeCerts, servedSerial, type TestCerts } from '../helpers/certs.ts';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);
let certs: TestCerts;
let upstream: RecordingUpstream;
let gw: RunningGateway;

beforeAll(async () => {
  certs = makeCerts();
  upstream = await startUpstream();
  upstream.handler = (req, res, body) => {
    res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive', 'keep-alive': 'timeout=5' });
    res.end(JSON.stringify({ url: req.url, host: req.headers.host, body: body.toString() }));
  };
  gw = await startGateway(`
version: 1
listeners:
  - name: secure
    address: 127.0.0.1:0
    tls: { cert: "${certs.cert}", key: "${certs.key}" }
  - name: redirect
    address: 127.0.0.1:0
    redirect_to_https: true
    https_port: 8443
  - name: behind-lb
    address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
trusted_proxies: [127.0.0.1/32]
upstreams:
  app: { url: "${upstream.url}" }
routes:
  - match: { path_prefix: / }
    upstream: app
`);
});

afterAll(async () => {
  expect(await gw?.stop()).toBe(0);
  await upstream?.close();
});

beforeEach(() => {
  upstream.received.length = 0;
});

function h2get(path: string, method = 'GET', body?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string; alpn: string | false | undefined }> {
  return new Promise((resolve, reject) => {
    const session = h2connect(gw.urls[0]!, { ca: certs.caPem, servername: 'localhost' });
    session.on('error', reject);
    const req = session.request({ ':method': method, ':path': path, ...(body ? { 'content-type': 'text/plain' } : {}) });
    let data = '';
    let status = 0;
    let headers: Record<string, unknown> = {};
    req.on('response', (h) => {
      status = Number(h[':status']);
      headers = h;
    });
    req.setEncoding('utf8').on('data', (d: string) => (data += d));
    req.on('end', () => {
      const alpn = session.alpnProtocol;
      session.close();
      resolve({ status, headers, body: data, alpn });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('TLS listener', () => {
  it('speaks HTTP/2 by ALPN and forwards to an HTTP/1.1 upstream', async () => {
    const r = await h2get('/hello?x=1', 'POST', 'payload');
    expect(r.alpn).toBe('h2');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ url: '/hello?x=1', body: 'payload' });
    const seen = upstream.received[0]!;
    expect(seen.headers.host).toMatch(/^(127\.0\.0\.1|localhost):\d+$/); // :authority became Host
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(Object.keys(seen.headers).some((h) => h.startsWith(':'))).toBe(false);
    // Connection-specific upstream headers never reach an HTTP/2 client.
    expect(r.headers.connection).toBeUndefined();
    expect(r.headers['keep-alive']).toBeUndefined();
  });

  it('falls back to HTTP/1.1 on the same port', async () => {
    const r = await new Promise<{ status: number; body: string; alpn: string | false | null }>((resolve, reject) => {
      const req = httpsRequest(gw.urls[0] + '/h1', { ca: certs.caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] } as import('node:https').RequestOptions, (res) => {
        let body = '';
        const alpn = (res.socket as import('node:tls').TLSSocket).alpnProtocol;
        res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body, alpn }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(r.status).toBe(200);
    expect(r.alpn).toBe('http/1.1');
    expect(JSON.parse(r.body).url).toBe('/h1');
  });

  it('works with curl --http2', async () => {
    const { stdout } = await run('curl', ['-s', '--http2', '--cacert', certs.ca, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', gw.urls[0]!.replace('127.0.0.1', 'localhost') + '/curl', '--resolve', `localhost:${new URL(gw.urls[0]!).port}:127.0.0.1`]);
    expect(stdout).toBe('2 200');
    expect(upstream.received[0]!.url).toBe('/curl');
  });

  it('answers path tricks over HTTP/2 with the same 400 reasons', async () => {
    const r = await h2get('/a/..%2f..%2fetc');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).reason).toBe('encoded_path_separator');
    expect(upstream.received).toHaveLength(0);
  });

  it('re-reads the certificate when its files change', async () => {
    const serial = () => servedSerial(Number(new URL(gw.urls[0]!).port));
    const before = await serial();
    const next = makeCerts();
    copyFileSync(next.key, certs.key);
    copyFileSync(next.cert, certs.cert);
    let after = before;
    for (let i = 0; i < 40 && after === before; i++) {
      await new Promise((r) => setTimeout(r, 250));
      after = await serial();
    }
    expect(after).not.toBe(before);
    certs = { ...certs, caPem: next.caPem, ca: next.ca };
    expect((await h2get('/after-rotation')).status).toBe(200);
  });
});

describe('redirect-only listener', () => {
  it('redirects to https without forwarding', async () => {
    const r = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      const req = httpRequest(gw.urls[1] + '/login?next=%2Fhome', { headers: { host: 'app.example.com' } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, location: res.headers.location });
      });
      req.on('error', reject);
      req.end();
    });
    expect(r).toEqual({ status: 301, location: 'https://app.example.com:8443/login?next=%2Fhome' });
    expect(upstream.received).toHaveLength(0);
  });
});

describe('behind a trusted TLS-terminating proxy', () => {
  it('believes X-Forwarded-* from a trusted peer and walks the chain from the right', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(gw.urls[2] + '/lb', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.5', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example.com' } }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    const h = upstream.received[0]!.headers;
    expect(h['x-forwarded-for']).toBe('6.6.6.6, 203.0.113.5, 127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-host']).toBe('shop.example.com');
    const access = await waitFor(() => gw.stdout().split('\n').find((l) => l.includes('"path":"/lb"')));
    expect(access).toContain('"client_ip":"203.0.113.5"');
  });
});
