// OpenTelemetry traces (loaded only when tracing is on: run.ts imports this module dynamically, so with
// tracing off no OpenTelemetry code is loaded and no span object is ever made).
//
// One SERVER span per request named `{method} {route}` with the HTTP semantic-convention attributes, one
// CLIENT child per upstream call whose context goes upstream as W3C `traceparent`, the deny reason on the
// span. Contexts are passed explicitly (no async-hooks context manager): the span lives on `ctx.span`.
import {
  ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapGetter, defaultTextMapSetter, diag, DiagLogLevel, trace,
  type Attributes, type Context, type Span, type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider,
  type Sampler, type SpanExporter,
} from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import type { HeaderMap, RequestContext } from '../contract/context.ts';
import type { ForwardedUpstream, RequestObserver } from '../contract/observer.ts';
import { methodLabel } from './metrics.ts';
import type { ChildSpan, TracingApi } from '../contract/telemetry.ts';
import { NOOP_CHILD_SPAN } from '../contract/telemetry.ts';
import type { SamplerSetting, TracingSettings } from './tracing-config.ts';

const SCOPE = 'portcullis';
const propagator = new W3CTraceContextPropagator();

/** What `ctx.span` holds when a request is traced. */
class RequestSpans {
  readonly server: Span;
  readonly context: Context;
  upstream: Span | null = null;
  constructor(server: Span) {
    this.server = server;
    this.context = trace.setSpan(ROOT_CONTEXT, server);
  }
}

function makeSampler(s: SamplerSetting): Sampler {
  switch (s.kind) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(s.ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(s.ratio) });
  }
}

class Child implements ChildSpan {
  readonly #span: Span;
  constructor(span: Span) {
    this.#span = span;
  }
  setAttribute(key: string, value: string | number | boolean): void {
    this.#span.setAttribute(key, value);
  }
  inject(headers: HeaderMap): void {
    propagator.inject(trace.setSpan(ROOT_CONTEXT, this.#span), headers, defaultTextMapSetter);
  }
  end(errorType?: string): void {
    if (errorType !== undefined) {
      this.#span.setAttribute('error.type', errorType);
      this.#span.setStatus({ code: SpanStatusCode.ERROR });
    }
    this.#span.end();
  }
}

export class Tracing implements TracingApi, RequestObserver {
  readonly provider: TracerProvider;
  readonly tracer: Tracer;
  readonly #accept: TracingSettings['acceptTraceparent'];

  constructor(settings: TracingSettings, log: Logger, exporter?: SpanExporter) {
    diag.setLogger(
      {
        error: (msg) => log.warn({ component: 'otel' }, msg),
        warn: (msg) => log.warn({ component: 'otel' }, msg),
        info: () => {},
        debug: () => {},
        verbose: () => {},
      },
      DiagLogLevel.WARN,
    );
    const resource = defaultResource()
      .merge(resourceFromAttributes({ 'service.name': settings.serviceName }))
      .merge(detectResources({ detectors: [envDetector] }));
    this.provider = new TracerProvider({
      resource,
      sampler: makeSampler(settings.sampler),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: exporter ?? new OTLPTraceExporter(settings.url !== null ? { url: settings.url } : {}),
          scheduledDelayMillis: settings.scheduleDelayMs,
          maxQueueSize: 4096,
          maxExportBatchSize: 512,
        }),
      ],
    });
    this.tracer = this.provider.getTracer(SCOPE);
    this.#accept = settings.acceptTraceparent;
  }

  // RequestObserver: called by the gateway once the peer is identified, before any filter runs.
  onRequestStart(ctx: RequestContext): void {
    const headers = ctx.requestHeaders;
    let parent: Context = ROOT_CONTEXT;
    const accept = this.#accept === 'always' || (this.#accept === 'trusted_proxies' && ctx.peerTrusted);
    if (accept && headers.traceparent !== undefined) parent = propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    // An untrusted client's trace headers are not passed on: the upstream gets ours.
    delete ctx.upstreamHeaders.traceparent;
    delete ctx.upstreamHeaders.tracestate;
    const method = methodLabel(ctx.method);
    const attributes: Attributes = {
      'http.request.method': method,
      'url.scheme': ctx.scheme,
      'client.address': ctx.clientIp,
      'network.peer.address': ctx.peerIp,
      'network.protocol.name': 'http',
      'network.protocol.version': ctx.httpVersion === '2.0' ? '2' : ctx.httpVersion,
    };
    if (method === '_OTHER') attributes['http.request.method_original'] = ctx.method;
    const ua = headers['user-agent'];
    if (ua !== undefined) attributes['user_agent.original'] = ua;
    const span = this.tracer.startSpan(method, { kind: SpanKind.SERVER, startTime: ctx.startTime, attributes }, parent);
    ctx.span = new RequestSpans(span);
  }

  onForward(ctx: RequestContext, upstream: ForwardedUpstream): void {
    const spans = ctx.span as RequestSpans | null;
    if (spans === null) return;
    const method = methodLabel(ctx.method);
    const url = upstream.targets[0]!.url; // the first target: which one serves the request is decided later
    const span = this.tracer.startSpan(
      method,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'http.request.method': method,
          'server.address': url.hostname,
          'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
          'url.full': upstream.origin + ctx.path, // no query: it may carry tokens
          'portcullis.upstream': upstream.name,
        },
      },
      spans.context,
    );
    spans.upstream = span;
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), ctx.upstreamHeaders, defaultTextMapSetter);
  }

  onRequestEnd(ctx: RequestContext): void {
    const spans = ctx.span as RequestSpans | null;
    if (spans === null) return;
    const status = ctx.status === 0 ? 499 : ctx.status;
    const deny = ctx.deny;
    const up = spans.upstream;
    if (up !== null) {
      if (up.isRecording()) {
        if (ctx.upstreamStatus !== 0) up.setAttribute('http.response.status_code', ctx.upstreamStatus);
        if (deny !== null && deny.filter === 'upstream') {
          up.setAttribute('error.type', deny.reason);
          up.setStatus({ code: SpanStatusCode.ERROR });
        } else if (ctx.upstreamStatus >= 500) {
          up.setAttribute('error.type', String(ctx.upstreamStatus));
          up.setStatus({ code: SpanStatusCode.ERROR });
        }
      }
      up.end();
    }
    const span = spans.server;
    if (span.isRecording()) {
      const route = ctx.route?.name;
      const method = methodLabel(ctx.method);
      span.updateName(route !== undefined ? `${method} ${route}` : method);
      span.setAttribute('http.response.status_code', status);
      if (ctx.path !== '') span.setAttribute('url.path', ctx.path);
      if (ctx.host !== '') span.setAttribute('server.address', ctx.host);
      if (route !== undefined) span.setAttribute('http.route', route);
      if (ctx.id !== '') span.setAttribute('portcullis.request_id', ctx.id);
      if (ctx.subject !== null) span.setAttribute('enduser.id', ctx.subject);
      if (deny !== null) {
        span.setAttribute('portcullis.deny.reason', deny.reason);
        span.setAttribute('portcullis.deny.filter', deny.filter);
      }
      if (status >= 500) {
        span.setAttribute('error.type', deny?.reason ?? String(status));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
    span.end();
  }

  // TracingApi: for filters that make their own calls (forward-auth, Redis).
  child(ctx: RequestContext, name: string, attributes?: Record<string, string | number | boolean>): ChildSpan {
    const spans = ctx.span as RequestSpans | null;
    if (spans === null || !spans.server.isRecording()) return NOOP_CHILD_SPAN;
    return new Child(this.tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, spans.context));
  }

  traceId(ctx: RequestContext): string | undefined {
    const spans = ctx.span as RequestSpans | null;
    return spans === null ? undefined : spans.server.spanContext().traceId;
  }

  async shutdown(): Promise<void> {
    try {
      await this.provider.shutdown();
    } catch {
      /* the collector is gone: nothing more to do */
    }
  }
}

/** Creates tracing for a serving process. */
export function createTracing(settings: TracingSettings, log: Logger, exporter?: SpanExporter): Tracing {
  return new Tracing(settings, log, exporter);
}
