// Browser protections over a TLS listener with HTTP/2 clients: preflights answered on h2 streams, HSTS
// over TLS, Secure cookies from the request's scheme, and multipart checks on bodies without a length.
import { connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeCerts, type TestCerts } from '../helpers/certs.ts';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const FRONTEND = 'https://app.example.com';
let certs: TestCerts;
let upstream: RecordingUpstream;
let gw: RunningGateway;
let session: ClientHttp2Session;

beforeAll(async () => {
  certs = makeCerts();
  upstream = await startUpstream();
  upstream.handler = (_req, res, body) => {
    res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'session=abc; Path=/' });
    res.end(JSON.stringify({ body: body.length }));
  };
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
    tls: { cert: "${certs.cert}", key: "${certs.key}" }
admin: { address: 127.0.0.1:0 }
upstreams:
  app: { url: "${upstream.url}" }
cors:
  web: { origins: ["${FRONTEND}"], credentials: true }
headers:
  default: {}
cookies:
  default: {}
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    cors: web
    body: { multipart: { part_types: [image/png] } }
`);
  session = connect(gw.url, { ca: certs.caPem });
});

afterAll(async () => {
  session?.close();
  await gw?.stop();
  await upstream?.close();
});

beforeEach(() => {
  upstream.received.length = 0;
});

function h2(headers: OutgoingHttpHeaders, body?: Buffer[]): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let data = '';
    let head: Record<string, unknown> = {};
    stream.on('response', (h) => (head = h));
    stream.setEncoding('utf8').on('data', (d: string) => (data += d));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: data }));
    stream.on('error', reject);
    if (body !== undefined) {
      // streamed in pieces without a content-length
      void (async () => {
        for (const piece of body) {
          stream.write(piece);
          await new Promise((r) => setTimeout(r, 5));
        }
        stream.end();
      })();
    }
  });
}

describe('browser protections over TLS and HTTP/2', () => {
  it('answers an allowed preflight on an h2 stream with 204, and keeps the session usable', async () => {
    const r = await h2({ ':method': 'OPTIONS', ':path': '/api/x', origin: FRONTEND, 'access-control-request-method': 'POST' });
    expect(r.status).toBe(204);
    expect(r.body).toBe('');
    expect(r.headers['access-control-allow-origin']).toBe(FRONTEND);
    expect(r.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    const refused = await h2({ ':method': 'OPTIONS', ':path': '/api/x', origin: 'https://evil.net', 'access-control-request-method': 'POST' });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).reason).toBe('origin_not_allowed');
    expect(refused.headers['access-control-allow-origin']).toBeUndefined();
    const after = await h2({ ':method': 'GET', ':path': '/api/x', origin: FRONTEND });
    expect(after.status).toBe(200);
    expect(upstream.received.map((x) => x.method)).toEqual(['GET']);
    expect(gw.stderr()).not.toMatch(/ERR_|write after end|filter failed/);
  });

  it('sends HSTS and adds Secure to cookies because the connection is TLS', async () => {
    const r = await h2({ ':method': 'GET', ':path': '/api/x' });
    expect(r.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(r.headers['set-cookie']).toEqual(['session=abc; Path=/; Secure; HttpOnly; SameSite=Lax']);
  });

  it('checks multipart parts of an h2 body sent without a length', async () => {
    const B = 'h2boundary';
    const part = (type: string, data: Buffer) => Buffer.concat([Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: ${type}\r\n\r\n`), data, Buffer.from(`\r\n--${B}--\r\n`)]);
    const png = part('image/png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const ok = await h2({ ':method': 'POST', ':path': '/api/up', 'content-type': `multipart/form-data; boundary=${B}` }, [png.subarray(0, 30), png.subarray(30)]);
    expect(ok.status).toBe(200);
    expect(upstream.received[0]!.body.equals(png)).toBe(true);
    const exe = part('image/png', Buffer.concat([Buffer.from('\x7fELF'), Buffer.alloc(40, 1)]));
    const bad = await h2({ ':method': 'POST', ':path': '/api/up', 'content-type': `multipart/form-data; boundary=${B}` }, [exe.subarray(0, 20), exe.subarray(20)]);
    expect(bad.status).toBe(415);
    expect(JSON.parse(bad.body).reason).toBe('part_content_mismatch');
    expect(upstream.received).toHaveLength(1);
  });
});
