// Upstream TLS and HTTP/2 with real certificates: a private CA, SNI, a client certificate (mTLS to the
// upstream), verification on by default; a gRPC-style HTTP/2 upstream whose trailers and grpc-status reach
// an HTTP/2 client of the gateway; WebSocket upgrades over the same TLS settings.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as h2connect, createSecureServer, createServer as createH2cServer, type Http2Server, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type TestCerts } from '../helpers/certs.ts';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { statusOf } from '../helpers/raw.ts';

function clientCert(certs: TestCerts, cn: string): { cert: string; key: string } {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: certs.dir, stdio: 'pipe' });
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', 'client.key', '-out', 'client.csr']);
  writeFileSync(join(certs.dir, 'client-ext.cnf'), 'extendedKeyUsage=clientAuth\n');
  run(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'client-ext.cnf', '-out', 'client.crt']);
  return { cert: join(certs.dir, 'client.crt'), key: join(certs.dir, 'client.key') };
}

interface Seen {
  url: string;
  host: string | undefined;
  servername: string | false | null | undefined;
  clientCn: string | undefined;
  headers: IncomingHttpHeaders;
}

let certs: TestCerts;
let other: TestCerts;
let client: { cert: string; key: string };
let https: Server;
let grpc: Http2SecureServer;
let h2c: Http2Server;
let gw: RunningGateway;
const seen: Seen[] = [];
const grpcSeen: IncomingHttpHeaders[] = [];

const portOf = (s: { address(): unknown }) => (s.address() as AddressInfo).port;

function grpcHandler(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  grpcSeen.push(headers);
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    const found = headers[':path'] !== '/pkg.Items/Missing';
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(found ? { 'grpc-status': '0', 'grpc-message': 'ok' } : { 'grpc-status': '5', 'grpc-message': 'item not found' }));
    // One length-prefixed message echoing the request's size.
    const payload = Buffer.from(`got ${Buffer.concat(chunks).length} bytes`);
    const frame = Buffer.alloc(5 + payload.length);
    frame.writeUInt32BE(payload.length, 1);
    payload.copy(frame, 5);
    stream.end(frame);
  });
}

beforeAll(async () => {
  certs = makeCerts('localhost');
  other = makeCerts('localhost'); // a CA the gateway is not told about
  client = clientCert(certs, 'portcullis-gateway');
  https = createHttpsServer(
    { key: readFileSync(certs.key), cert: readFileSync(certs.cert), ca: certs.caPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const socket = req.socket as TLSSocket;
      seen.push({ url: req.url ?? '', host: req.headers.host, servername: socket.servername, clientCn: socket.getPeerCertificate().subject?.CN as string | undefined, headers: req.headers });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('secure hello');
    },
  );
  https.on('upgrade', (req, socket) => {
    seen.push({ url: req.url ?? '', host: req.headers.host, servername: (socket as TLSSocket).servername, clientCn: (socket as TLSSocket).getPeerCertificate().subject?.CN as string | undefined, headers: req.headers });
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
  });
  grpc = createSecureServer({ key: readFileSync(certs.key), cert: readFileSync(certs.cert) });
  grpc.on('stream', grpcHandler);
  h2c = createH2cServer();
  h2c.on('stream', grpcHandler);
  await Promise.all([
    new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r())),
    new Promise<void>((r) => grpc.listen(0, '127.0.0.1', () => r())),
    new Promise<void>((r) => h2c.listen(0, '127.0.0.1', () => r())),
  ]);
  const secure = `https://127.0.0.1:${portOf(https)}`;
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
    tls: { cert: ${certs.cert}, key: ${certs.key} }
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams:
  secure: { url: "${secure}", tls: { ca: ${certs.ca}, servername: localhost, cert: ${client.cert}, key: ${client.key} } }
  no-client-cert: { url: "${secure}", tls: { ca: ${certs.ca}, servername: localhost } }
  unknown-ca: { url: "${secure}", tls: { ca: ${other.ca}, cert: ${client.cert}, key: ${client.key} } }
  system-ca: { url: "${secure}" }
  grpc: { url: "https://localhost:${portOf(grpc)}", http2: true, tls: { ca: ${certs.ca} } }
  grpc-h2c: { url: "http://127.0.0.1:${portOf(h2c)}", http2: true }
routes:
  - { match: { path_prefix: /secure }, upstream: secure }
  - { match: { path_prefix: /no-client-cert }, upstream: no-client-cert }
  - { match: { path_prefix: /unknown-ca }, upstream: unknown-ca }
  - { match: { path_prefix: /system-ca }, upstream: system-ca }
  - { match: { path_prefix: /pkg.Items }, upstream: grpc }
  - { match: { path_prefix: /h2c.Items }, upstream: grpc-h2c }
`);
});

afterAll(async () => {
  await gw?.stop();
  https?.close();
  https?.closeAllConnections();
  grpc?.close();
  h2c?.close();
});

function h2request(path: string, headers: Record<string, string>, body: Buffer): Promise<{ headers: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders | null }> {
  return new Promise((resolve, reject) => {
    const session = h2connect(gw.url, { ca: certs.caPem, servername: 'localhost' });
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, ...headers });
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | null = null;
    const chunks: Buffer[] = [];
    req.on('response', (h) => (head = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve({ headers: head, body: Buffer.concat(chunks), trailers });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(gw.url + path, { ca: certs.caPem, servername: 'localhost', headers }, (res) => {
      let data = '';
      res.setEncoding('utf8').on('data', (d: string) => (data += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('upstream TLS', () => {
  it('verifies the upstream with the CA bundle, sends SNI and a client certificate', async () => {
    seen.length = 0;
    const r = await get('/secure/a?x=1', { host: 'www.example.com' });
    expect(r).toEqual({ status: 200, body: 'secure hello' });
    expect(seen[0]).toMatchObject({ url: '/secure/a?x=1', servername: 'localhost', clientCn: 'portcullis-gateway' });
    // The client's Host is forwarded, but SNI stays the configured name (undici would take it from Host).
    expect(seen[0]!.host).toBe('www.example.com');
    const again = await get('/secure/b', { host: 'other.example.com' });
    expect(again.status).toBe(200);
    expect(seen[1]!.servername).toBe('localhost');
  });

  it('fails closed: no client certificate, an unknown CA, or only the system CAs give 502', async () => {
    seen.length = 0;
    for (const path of ['/no-client-cert', '/unknown-ca', '/system-ca']) {
      const r = await get(path);
      expect(r.status, path).toBe(502);
      expect(JSON.parse(r.body).reason, path).toMatch(/^upstream_/);
    }
    expect(seen).toHaveLength(0);
  });

  it('passes WebSocket upgrades over the same TLS settings', async () => {
    seen.length = 0;
    const { connect } = await import('node:tls');
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: Number(new URL(gw.url).port), ca: certs.caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
        socket.write('GET /secure/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      });
      let data = '';
      socket.setEncoding('latin1').on('data', (d: string) => (data += d));
      socket.on('close', () => resolve(data));
      socket.on('error', (e) => (data ? resolve(data) : reject(e)));
    });
    expect(statusOf(answer)).toBe(101);
    expect(seen[0]).toMatchObject({ url: '/secure/ws', servername: 'localhost', clientCn: 'portcullis-gateway' });
  });
});

describe('HTTP/2 upstreams (gRPC-style)', () => {
  for (const [label, prefix] of [['over TLS (ALPN h2)', '/pkg.Items'], ['over h2c (prior knowledge)', '/h2c.Items']] as const) {
    it(`passes trailers and grpc-status end to end ${label}`, async () => {
      grpcSeen.length = 0;
      const ok = await h2request(`${prefix}/Get`, { 'content-type': 'application/grpc', te: 'trailers' }, Buffer.from([0, 0, 0, 0, 3, 1, 2, 3]));
      expect(ok.headers[':status']).toBe(200);
      expect(ok.headers['content-type']).toBe('application/grpc');
      expect(ok.body.subarray(5).toString()).toBe('got 8 bytes');
      expect(ok.trailers).toMatchObject({ 'grpc-status': '0', 'grpc-message': 'ok' });
      expect(grpcSeen[0]!.te).toBe('trailers');
      expect(grpcSeen[0]![':path']).toBe(`${prefix}/Get`);
    });
  }

  it('serves HTTP/1.1 clients from an HTTP/2 upstream too', async () => {
    grpcSeen.length = 0;
    const r = await get('/pkg.Items/Get', { 'content-type': 'application/grpc' });
    expect(r.status).toBe(200);
    expect(r.body.slice(5)).toBe('got 0 bytes');
    expect(grpcSeen[0]![':authority']).toBe(new URL(gw.url).host);
    expect(grpcSeen[0]!.te).toBeUndefined();
  });

  it('passes an error grpc-status in the trailers', async () => {
    const missing = await h2request('/pkg.Items/Missing', { 'content-type': 'application/grpc', te: 'trailers' }, Buffer.from([0, 0, 0, 0, 0]));
    expect(missing.headers[':status']).toBe(200);
    expect(missing.trailers).toMatchObject({ 'grpc-status': '5', 'grpc-message': 'item not found' });
  });
});
