// Direct answers (`respond:`): routes without an upstream that the gateway answers itself, after the
// route's filters, with the same headers as every gateway answer, counted like any deny. The upstream
// beside them records what reached it: nothing of the answered routes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, waitFor, writePolicy, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

function policy(upstream: string): string {
  return `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: stdout, audit: stderr }
upstreams:
  app: { url: "${upstream}" }
routes:
  - name: internal
    match: { path_prefix: /internal }
    respond: { status: 403, reason: internal_only, detail: served on the internal listener only }
    audit: internal-probe
  - name: health
    match: { path: /healthz }
    respond: { status: 200, body: "ok\\n" }
  - name: maintenance
    match: { path_prefix: /legacy }
    respond: { status: 503, reason: maintenance, body: "<p>back soon</p>", content_type: text/html; charset=utf-8 }
  - name: office
    match: { path_prefix: /office }
    ip_rules: { allow: [10.0.0.0/8] }
    respond: { status: 200, body: "office\\n" }
  - name: app
    match: { path_prefix: / }
    upstream: app
`;
}

async function metric(gw: RunningGateway, pattern: RegExp): Promise<number> {
  const text = await (await fetch(gw.admin + '/metrics')).text();
  const line = text.split('\n').find((l) => pattern.test(l));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

function accessLines(gw: RunningGateway): Record<string, unknown>[] {
  return gw.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => 'request_id' in l && 'status' in l);
}

describe('direct answers', () => {
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

  it('answers a 403 with problem+json, its reason and the gateway security headers; nothing is forwarded', async () => {
    const res = await fetch(gw.url + '/internal/metrics', { headers: { 'x-request-id': 'direct-403-1' } });
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 403, reason: 'internal_only', detail: 'served on the internal listener only', request_id: 'direct-403-1', type: 'https://portcullis.dev/reasons/internal_only' });
    // The route beside it forwards; the answered one never did.
    const fwd = await fetch(gw.url + '/public');
    expect(fwd.status).toBe(200);
    await fwd.text();
    expect(up.received.map((r) => r.url)).toEqual(['/public']);
  });

  it('counts the 403 in metrics, access log and audit log like any deny', async () => {
    const before = await metric(gw, /^portcullis_denies_total\{.*route="internal".*reason="internal_only"/);
    const res = await fetch(gw.url + '/internal', { headers: { 'x-request-id': 'direct-403-2' } });
    await res.text();
    expect(await metric(gw, /^portcullis_denies_total\{.*route="internal".*reason="internal_only"/)).toBe(before + 1);
    expect(await metric(gw, /^portcullis_denies_total\{.*filter="respond".*reason="internal_only"/)).toBe(before + 1);
    const line = await waitFor(() => accessLines(gw).find((l) => l.request_id === 'direct-403-2'));
    expect(line).toMatchObject({ status: 403, route: 'internal', deny_reason: 'internal_only', deny_filter: 'respond' });
    expect(line.upstream).toBeUndefined();
    const audit = await waitFor(() => gw.stderr().split('\n').find((l) => l.includes('"direct-403-2"') && l.includes('"action":"internal-probe"')));
    expect(JSON.parse(audit)).toMatchObject({ outcome: 'denied', reason: 'internal_only', filter: 'respond', status: 403 });
  });

  it('answers a 200 health text, not counted as a deny; HEAD gets the head only', async () => {
    const res = await fetch(gw.url + '/healthz', { headers: { 'x-request-id': 'direct-200' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await res.text()).toBe('ok\n');
    const line = await waitFor(() => accessLines(gw).find((l) => l.request_id === 'direct-200'));
    expect(line).toMatchObject({ status: 200, route: 'health' });
    expect(line.deny_reason).toBeUndefined();
    expect(await metric(gw, /^portcullis_denies_total\{.*route="health"/)).toBe(0);
    const head = await fetch(gw.url + '/healthz', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('3');
    expect(await head.text()).toBe('');
    expect(up.received.some((r) => r.url === '/healthz')).toBe(false);
  });

  it('a 503 with its own body and type carries its reason in the log', async () => {
    const res = await fetch(gw.url + '/legacy/page', { headers: { 'x-request-id': 'direct-503' } });
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await res.text()).toBe('<p>back soon</p>');
    const line = await waitFor(() => accessLines(gw).find((l) => l.request_id === 'direct-503'));
    expect(line).toMatchObject({ status: 503, deny_reason: 'maintenance', deny_filter: 'respond' });
  });

  it("the route's filters run first: ip_rules refuses before the answer", async () => {
    const res = await fetch(gw.url + '/office');
    expect(res.status).toBe(403);
    expect(((await res.json()) as { reason: string }).reason).toBe('ip_not_allowed');
    expect(up.received.some((r) => r.url.startsWith('/office'))).toBe(false);
  });
});

describe('respond: validation', () => {
  it.each([
    ['upstream and respond', 'upstream: app\n    respond: { status: 403, reason: nope }', /either forwards \("upstream"\) or answers itself \("respond"\)/],
    ['a 4xx without a reason', 'respond: { status: 404 }', /needs a "reason"/],
    ['a reason that is not a code', 'respond: { status: 403, reason: "Not Allowed" }', /reason code/],
    ['a 3xx', 'respond: { status: 302, reason: moved }', /use `redirect:`/],
    ['a status out of range', 'respond: { status: 199, reason: early }', /at least 200|200/],
    ['a 2xx with a reason', 'respond: { status: 200, body: ok, reason: fine }', /not a refusal/],
  ])('refuses %s', async (_name, route, message) => {
    const file = writePolicy(`version: 1\nlisteners: [{ address: 127.0.0.1:0 }]\nupstreams:\n  app: { url: "http://127.0.0.1:9" }\nroutes:\n  - match: { path: /x }\n    ${route}\n`);
    const r = await runCli(['validate', file]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(message);
  });
});

describe('respond: WebSocket handshakes', () => {
  it('a handshake on an answering route gets the answer and no tunnel', async () => {
    const up = await startUpstream();
    const gw = await startGateway(policy(up.url));
    try {
      const { request } = await import('node:http');
      const u = new URL(gw.url);
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({
          host: u.hostname, port: u.port, path: '/internal/ws',
          headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' },
        });
        req.on('upgrade', () => reject(new Error('upgraded')));
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(403);
      expect(up.received).toEqual([]);
    } finally {
      await gw.stop();
      await up.close();
    }
  });
});
