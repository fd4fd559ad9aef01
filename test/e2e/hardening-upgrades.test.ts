// Attacks on upgrades: a security gateway must never become a raw tunnel. Only RFC 6455 WebSocket
// handshakes are proxied as upgrades, the pipe opens only after the upstream's valid 101, and bytes a
// client sends after its handshake never reach the upstream otherwise. Each test asserts what the client
// got and what the upstream received (for a refusal: nothing).
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { rawRequest, reasonOf, statusOf } from '../helpers/raw.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
const SMUGGLED = 'GET /admin/secret HTTP/1.1\r\nHost: x\r\nX-User-Id: admin\r\nX-User-Roles: admin\r\n\r\n';

let upstream: RecordingUpstream;
let gw: RunningGateway;
/** What the upstream got on upgraded connections (raw bytes), and the handshakes it saw. */
let upgradeBytes = '';
let handshakes: IncomingMessage[] = [];
/** How the upstream answers a handshake this test. */
let answer: (req: IncomingMessage, socket: Socket) => void;

beforeAll(async () => {
  upstream = await startUpstream();
  upstream.server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    handshakes.push(req);
    socket.on('data', (d: Buffer) => (upgradeBytes += d.toString('latin1')));
    answer(req, socket);
  });
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
upstreams:
  app: { url: "${upstream.url}" }
headers: { default: {} }
routes:
  - name: ws
    match: { path_prefix: /ws }
    upstream: app
  - name: admin
    match: { path_prefix: /admin }
    ip_rules: { allow: [192.0.2.0/24] }
    upstream: app
  - name: nows
    match: { path_prefix: /plain }
    upstream: app
    websocket: false
`);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

beforeEach(() => {
  upstream.received.length = 0;
  upgradeBytes = '';
  handshakes = [];
  answer = (req, socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`);
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    void req;
  };
});

function handshake(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
}

/** Sends `text` in one write and collects what comes back until the gateway closes (or `ms` pass). */
function exchange(text: string, ms = 3_000): Promise<string> {
  return rawRequest(gw.url, text, ms);
}

describe('WebSocket upgrades', () => {
  it('proxies a valid handshake once the upstream completes it, and only then passes bytes', async () => {
    const { port } = new URL(gw.url);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(port), '127.0.0.1');
      let data = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        data += d;
        if (data.includes('echo:ping')) {
          s.destroy();
          resolve(data);
        }
      });
      s.on('error', reject);
      // The first frame rides in the same write as the handshake: it must arrive after the 101 only.
      s.write(handshake('/ws/chat') + 'ping');
    });
    expect(reply).toMatch(/^HTTP\/1\.1 101 /);
    expect(reply).toContain(`Sec-WebSocket-Accept: ${ACCEPT}`);
    expect(reply).toContain('echo:ping');
    expect(handshakes).toHaveLength(1);
    expect(handshakes[0]!.headers['sec-websocket-key']).toBe(KEY);
    expect(upgradeBytes).toBe('ping');
  });

  it('relays a refusal as an ordinary answer with the gateway headers, and never forwards the bytes after it', async () => {
    answer = (_req, socket) => socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope');
    const reply = await exchange(handshake('/ws/chat') + SMUGGLED);
    expect(statusOf(reply)).toBe(403);
    expect(reply).toContain('nope');
    // The route's response filters ran on it: security headers and the request id.
    expect(reply.toLowerCase()).toContain('x-content-type-options: nosniff');
    expect(reply.toLowerCase()).toContain('x-request-id: ');
    expect(reply.toLowerCase()).toContain('connection: close');
    expect(upgradeBytes).toBe('');
    expect(upstream.received.map((r) => r.url)).not.toContain('/admin/secret');
  });

  it('refuses a 101 without the matching Sec-WebSocket-Accept (502) and sends nothing on', async () => {
    answer = (_req, socket) => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n');
    const reply = await exchange(handshake('/ws/chat') + SMUGGLED);
    expect(statusOf(reply)).toBe(502);
    expect(reasonOf(reply)).toBe('upstream_invalid_upgrade');
    expect(upgradeBytes).toBe('');
  });

  it('refuses a 101 to another protocol (502)', async () => {
    answer = (_req, socket) => socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`);
    const reply = await exchange(handshake('/ws/chat') + SMUGGLED);
    expect(statusOf(reply)).toBe(502);
    expect(reasonOf(reply)).toBe('upstream_invalid_upgrade');
    expect(upgradeBytes).toBe('');
  });

  it.each([
    ['no key', `GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`],
    ['a key that is not 16 bytes', `GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n`],
    ['version 8', `GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n`],
    ['POST', `POST /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n`],
    ['a body', `GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello`],
    ['HTTP/1.0', `GET /ws/a HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`],
  ])('refuses a handshake with %s (400) and forwards nothing', async (_name, text) => {
    const reply = await exchange(text + SMUGGLED);
    expect(statusOf(reply)).toBe(400);
    expect(reasonOf(reply)).toBe('invalid_websocket_handshake');
    expect(handshakes).toHaveLength(0);
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses a handshake on a route without websocket (404), and on a route whose filters refuse it', async () => {
    const plain = await exchange(handshake('/plain/x') + SMUGGLED);
    expect(statusOf(plain)).toBe(404);
    expect(reasonOf(plain)).toBe('upgrade_not_allowed');
    const admin = await exchange(handshake('/admin/x') + SMUGGLED);
    expect(statusOf(admin)).toBe(403);
    expect(handshakes).toHaveLength(0);
    expect(upstream.received).toHaveLength(0);
  });
});

describe('other upgrades are never forwarded', () => {
  it('serves Upgrade: h2c as plain HTTP without Upgrade or HTTP2-Settings, closes, and never parses the bytes behind it', async () => {
    const reply = await exchange(
      'GET /ws/h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n' +
        'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + SMUGGLED,
    );
    expect(statusOf(reply)).toBe(200);
    expect(reply.toLowerCase()).toContain('connection: close');
    expect(reply).not.toContain('101');
    expect(upstream.received).toHaveLength(1);
    const got = upstream.received[0]!;
    expect(got.url).toBe('/ws/h2c');
    expect(got.headers.upgrade).toBeUndefined();
    expect(got.headers['http2-settings']).toBeUndefined();
    expect(String(got.headers.connection ?? '')).not.toMatch(/upgrade/i);
    expect(handshakes).toHaveLength(0);
  });

  it.each(['foo', 'TLS/1.2', 'websocket, h2c', 'h2c, websocket'])('serves Upgrade: %s as plain HTTP, never as an upgrade', async (protocol) => {
    const reply = await exchange(`GET /ws/other HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n` + SMUGGLED);
    expect(statusOf(reply)).toBe(200);
    expect(handshakes).toHaveLength(0);
    expect(upstream.received.map((r) => r.url)).toEqual(['/ws/other']);
    expect(upstream.received[0]!.headers.upgrade).toBeUndefined();
  });

  it('answers CONNECT with 405 and opens no tunnel', async () => {
    const reply = await exchange(`CONNECT ${new URL(upstream.url).host} HTTP/1.1\r\nHost: ${new URL(upstream.url).host}\r\n\r\n` + SMUGGLED);
    expect(statusOf(reply)).toBe(405);
    expect(reasonOf(reply)).toBe('method_not_allowed');
    expect(reply.toLowerCase()).toContain('x-content-type-options: nosniff');
    expect(upstream.received).toHaveLength(0);
  });
});
