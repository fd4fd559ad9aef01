// Tracing against a real OTLP/HTTP receiver that decodes what the gateway exports: span names and
// attributes, the upstream child span, W3C traceparent continued from trusted peers only and passed to the
// upstream, the deny reason on the span; and tracing off by default.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tracingSettings } from '../../src/observability/tracing-config.ts';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

function send(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      res.resume().on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

const policy = (upstream: string, extra: string) => `
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
log: { access: off, audit: off }
${extra}
upstreams:
  app: { url: "${upstream}" }
  gone: { url: "http://127.0.0.1:1", connect_timeout: 500ms }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
  - name: gone
    match: { path: /gone }
    upstream: gone
`;

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const TRACEPARENT = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;

function byRequestId(spans: ReceivedSpan[], id: string): ReceivedSpan | undefined {
  return spans.find((s) => s.attributes['portcullis.request_id'] === id);
}

describe('settings', () => {
  it('is off by default and on with the standard OTEL_* variables', () => {
    expect(tracingSettings(undefined, {})).toBeNull();
    expect(tracingSettings(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toMatchObject({ url: null, serviceName: 'portcullis' });
    expect(tracingSettings(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' })).toBeNull();
    expect(tracingSettings(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' })).toBeNull();
    const p = { enabled: undefined, endpoint: 'http://collector:4318/', service_name: 'edge', sample_ratio: 0.1, accept_traceparent: 'never' as const };
    expect(tracingSettings(p, {})).toEqual({
      url: 'http://collector:4318/v1/traces',
      serviceName: 'edge',
      sampler: { kind: 'parentbased_traceidratio', ratio: 0.1 },
      acceptTraceparent: 'never',
      scheduleDelayMs: 5000,
    });
    expect(tracingSettings({ ...p, enabled: false }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBeNull();
    expect(tracingSettings(p, { OTEL_SERVICE_NAME: 'svc', OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' })).toMatchObject({
      serviceName: 'svc',
      sampler: { kind: 'traceidratio', ratio: 0.5 },
    });
  });
});

describe('tracing to a real OTLP receiver', () => {
  let upstream: RecordingUpstream;
  let receiver: OtlpReceiver;
  let trusted: RunningGateway;
  let untrusted: RunningGateway;
  beforeAll(async () => {
    upstream = await startUpstream();
    receiver = await startOtlpReceiver();
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_SERVICE_NAME: 'portcullis-test' };
    // 127.0.0.1 is a trusted proxy here: its traceparent is continued.
    trusted = await startGateway(policy(upstream.url, 'trusted_proxies: [127.0.0.1]'), { env });
    // Tracing configured in the policy; the test client is an untrusted peer.
    untrusted = await startGateway(policy(upstream.url, `tracing: { endpoint: "${receiver.url}" }`), { env: { OTEL_BSP_SCHEDULE_DELAY: '100' } });
  });
  afterAll(async () => {
    await trusted?.stop();
    await untrusted?.stop();
    await upstream?.close();
    await receiver?.close();
  });

  it('exports a server span named {method} {route} with a child span for the upstream call', async () => {
    upstream.received.length = 0;
    const r = await send(`${trusted.url}/api/items?token=secret-query-value`, { 'user-agent': 'tracing-test' });
    expect(r.status).toBe(200);
    const id = r.headers['x-request-id'] as string;
    const spans = await receiver.waitFor((s) => byRequestId(s, id) !== undefined && s.some((c) => c.kind === CLIENT && c.traceId === byRequestId(s, id)!.traceId));
    const server = byRequestId(spans, id)!;
    expect(server.name).toBe('GET api');
    expect(server.kind).toBe(SERVER);
    expect(server.service).toBe('portcullis-test');
    expect(server.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': 'api',
      'http.response.status_code': 200,
      'url.path': '/api/items',
      'url.scheme': 'http',
      'client.address': '127.0.0.1',
      'user_agent.original': 'tracing-test',
    });
    expect(server.status.code ?? 0).not.toBe(ERROR);
    const client = spans.find((s) => s.kind === CLIENT && s.traceId === server.traceId)!;
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.attributes).toMatchObject({ 'http.request.method': 'GET', 'server.address': '127.0.0.1', 'http.response.status_code': 200, 'portcullis.upstream': 'app' });
    // The upstream got our context: same trace, the client span as its parent.
    const sent = upstream.received[0]!.headers.traceparent as string;
    expect(sent).toBe(`00-${server.traceId}-${client.spanId}-01`);
    // Span times are real wall-clock times.
    const start = Number(BigInt(server.startTimeUnixNano) / 1_000_000n);
    expect(Math.abs(start - Date.now())).toBeLessThan(60_000);
    // Query strings (which may carry tokens) are never exported.
    expect(receiver.bodies.join('\n')).not.toContain('secret-query-value');
  });

  it('continues a trusted peer\'s traceparent', async () => {
    upstream.received.length = 0;
    const r = await send(`${trusted.url}/api/continued`, { traceparent: TRACEPARENT, tracestate: 'vendor=1' });
    const id = r.headers['x-request-id'] as string;
    const spans = await receiver.waitFor((s) => byRequestId(s, id) !== undefined);
    const server = byRequestId(spans, id)!;
    expect(server.traceId).toBe(CLIENT_TRACE);
    expect(server.parentSpanId).toBe(CLIENT_SPAN);
    expect(upstream.received[0]!.headers.traceparent).toMatch(new RegExp(`^00-${CLIENT_TRACE}-[0-9a-f]{16}-01$`));
    expect(upstream.received[0]!.headers.tracestate).toBe('vendor=1');
  });

  it('starts a new trace for an untrusted client and does not pass its traceparent on', async () => {
    upstream.received.length = 0;
    const r = await send(`${untrusted.url}/api/fresh`, { traceparent: TRACEPARENT, tracestate: 'evil=1' });
    const id = r.headers['x-request-id'] as string;
    const spans = await receiver.waitFor((s) => byRequestId(s, id) !== undefined);
    const server = byRequestId(spans, id)!;
    expect(server.service).toBe('portcullis');
    expect(server.traceId).not.toBe(CLIENT_TRACE);
    expect(server.parentSpanId).toBe('');
    const sent = upstream.received[0]!.headers.traceparent as string;
    expect(sent).toMatch(new RegExp(`^00-${server.traceId}-`));
    expect(upstream.received[0]!.headers.tracestate).toBeUndefined();
  });

  it('puts the deny reason on the span, and marks upstream failures as errors', async () => {
    const denied = await send(`${trusted.url}/nowhere`);
    expect(denied.status).toBe(404);
    const failed = await send(`${trusted.url}/gone`);
    expect(failed.status).toBe(502);
    const deniedId = denied.headers['x-request-id'] as string;
    const failedId = failed.headers['x-request-id'] as string;
    const spans = await receiver.waitFor((s) => byRequestId(s, deniedId) !== undefined && byRequestId(s, failedId) !== undefined);
    const d = byRequestId(spans, deniedId)!;
    expect(d.name).toBe('GET');
    expect(d.attributes).toMatchObject({ 'portcullis.deny.reason': 'route_not_found', 'portcullis.deny.filter': 'gateway', 'http.response.status_code': 404 });
    expect(d.status.code ?? 0).not.toBe(ERROR); // a 4xx is the client's problem, not the server span's
    const f = byRequestId(spans, failedId)!;
    expect(f.name).toBe('GET gone');
    expect(f.attributes).toMatchObject({ 'portcullis.deny.reason': 'upstream_unreachable', 'error.type': 'upstream_unreachable', 'http.response.status_code': 502 });
    expect(f.status.code).toBe(ERROR);
    const child = await receiver.waitFor((s) => s.some((c) => c.kind === CLIENT && c.traceId === f.traceId));
    const c = child.find((x) => x.kind === CLIENT && x.traceId === f.traceId)!;
    expect(c.attributes['error.type']).toBe('upstream_unreachable');
    expect(c.status.code).toBe(ERROR);
  });
});

describe('tracing off (the default)', () => {
  let upstream: RecordingUpstream;
  let gw: RunningGateway;
  beforeAll(async () => {
    upstream = await startUpstream();
    gw = await startGateway(policy(upstream.url, ''), { env: { OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' } });
  });
  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
  });

  it('leaves trace headers to the client and the upstream', async () => {
    upstream.received.length = 0;
    await send(`${gw.url}/api/x`, { traceparent: TRACEPARENT });
    expect(upstream.received[0]!.headers.traceparent).toBe(TRACEPARENT);
    expect(gw.stderr()).not.toContain('tracing on');
  });
});

describe('the child-span API for filters', () => {
  it('makes children of the request span that carry their context onward', async () => {
    const { InMemorySpanExporter } = await import('@opentelemetry/sdk-trace');
    const { createTracing } = await import('../../src/observability/tracing.ts');
    const { RequestContext } = await import('../../src/contract/context.ts');
    const pino = (await import('pino')).default;
    const exporter = new InMemorySpanExporter();
    const settings = tracingSettings({ enabled: true, endpoint: undefined, service_name: 'unit', sample_ratio: 1, accept_traceparent: 'never' }, {})!;
    const tracing = createTracing({ ...settings, scheduleDelayMs: 10 }, pino({ level: 'silent' }), exporter);

    const untraced = new RequestContext('GET', '1.1', {}, '127.0.0.1', 'http', performance.now());
    const noop = tracing.child(untraced, 'forward-auth');
    noop.end('x'); // a no-op when the request has no span
    expect(tracing.traceId(untraced)).toBeUndefined();

    const ctx = new RequestContext('GET', '1.1', {}, '127.0.0.1', 'http', performance.now());
    tracing.onRequestStart(ctx);
    const child = tracing.child(ctx, 'forward-auth check', { 'portcullis.provider': 'external' });
    const headers: Record<string, string> = {};
    child.inject(headers);
    child.end('auth_unavailable');
    ctx.status = 503;
    ctx.deny = { filter: 'forward_auth', reason: 'auth_unavailable' };
    tracing.onRequestEnd(ctx);
    await tracing.provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    const server = spans.find((s) => s.name === 'GET')!;
    const c = spans.find((s) => s.name === 'forward-auth check')!;
    expect(c.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(c.attributes).toMatchObject({ 'portcullis.provider': 'external', 'error.type': 'auth_unavailable' });
    expect(headers.traceparent).toBe(`00-${server.spanContext().traceId}-${c.spanContext().spanId}-01`);
    expect(server.attributes).toMatchObject({ 'portcullis.deny.reason': 'auth_unavailable', 'error.type': 'auth_unavailable' });
    expect(tracing.traceId(ctx)).toBe(server.spanContext().traceId);
    await tracing.shutdown();
  });
});

describe('sampling', () => {
  it('is parent-based: a trusted sampled parent is kept at ratio 0, a new trace is not recorded but still propagated', async () => {
    const { InMemorySpanExporter } = await import('@opentelemetry/sdk-trace');
    const { createTracing } = await import('../../src/observability/tracing.ts');
    const { RequestContext } = await import('../../src/contract/context.ts');
    const pino = (await import('pino')).default;
    const exporter = new InMemorySpanExporter();
    const settings = tracingSettings({ enabled: true, endpoint: undefined, service_name: 'unit', sample_ratio: 0, accept_traceparent: 'trusted_proxies' }, {})!;
    expect(settings.sampler).toEqual({ kind: 'parentbased_traceidratio', ratio: 0 });
    const tracing = createTracing(settings, pino({ level: 'silent' }), exporter);
    const fakeUpstream = { name: 'app', origin: 'http://127.0.0.1:9', targets: [{ url: new URL('http://127.0.0.1:9') }] } as never;

    const continued = new RequestContext('GET', '1.1', { traceparent: TRACEPARENT }, '10.0.0.1', 'http', performance.now());
    continued.peerTrusted = true;
    tracing.onRequestStart(continued);
    tracing.onForward(continued, fakeUpstream);
    continued.status = 200;
    tracing.onRequestEnd(continued);

    const fresh = new RequestContext('GET', '1.1', {}, '10.0.0.2', 'http', performance.now());
    tracing.onRequestStart(fresh);
    tracing.onForward(fresh, fakeUpstream);
    fresh.status = 200;
    tracing.onRequestEnd(fresh);

    await tracing.provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.spanContext().traceId)).toEqual([CLIENT_TRACE, CLIENT_TRACE]); // client + server of the continued one
    expect(fresh.upstreamHeaders.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/); // not sampled, still one trace
    expect(tracing.traceId(fresh)).toMatch(/^[0-9a-f]{32}$/);
    await tracing.shutdown();
  });
});
