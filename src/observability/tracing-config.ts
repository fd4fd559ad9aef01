// The `tracing:` policy key and how it combines with the standard OTEL_* environment variables. No
// OpenTelemetry module is imported here: with tracing off, none is ever loaded.
import { boolean, object, oneOf, optional, string, withDefault, type Infer, type Schema } from '../config/schema.ts';

/** A number from 0 to 1 (a sampling ratio). */
function number01(meta: { description: string }): Schema<number> {
  return {
    type: 'number (0 to 1)',
    description: meta.description,
    optional: false,
    defaultValue: undefined,
    parse(value, path, issues) {
      if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
        issues.push({ path, message: `expected a number from 0 to 1, got ${JSON.stringify(value)}` });
        return undefined;
      }
      return value;
    },
    doc: () => ({ type: 'number (0 to 1)', description: meta.description }),
  };
}

export const tracingSchema = object(
  {
    enabled: optional(boolean({ description: 'Export traces. Absent: on when OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set or `endpoint` is given.' })),
    endpoint: optional(string({ pattern: /^https?:\/\/[^\s]+$/, patternName: 'http(s) URL', description: 'OTLP/HTTP collector base URL (/v1/traces is appended); OTEL_EXPORTER_OTLP_ENDPOINT overrides it.' })),
    service_name: withDefault(string({ description: 'service.name of the spans; OTEL_SERVICE_NAME overrides it.' }), 'portcullis'),
    sample_ratio: withDefault(number01({ description: 'Fraction of new traces sampled (parent-based: a continued trace keeps its decision); OTEL_TRACES_SAMPLER(_ARG) override it.' }), 1),
    accept_traceparent: withDefault(
      oneOf(['trusted_proxies', 'always', 'never'] as const, { description: 'Whose W3C traceparent is continued: peers in trusted_proxies (default), any client, or none. Others start a new trace.' }),
      'trusted_proxies',
    ),
  },
  { description: 'OpenTelemetry traces over OTLP/HTTP: one server span per request, a child per upstream call. Off by default.' },
);

export type TracingPolicy = Infer<typeof tracingSchema>;

export type SamplerSetting =
  | { kind: 'always_on' | 'always_off' | 'parentbased_always_on' | 'parentbased_always_off' }
  | { kind: 'traceidratio' | 'parentbased_traceidratio'; ratio: number };

export interface TracingSettings {
  /** Explicit collector URL for traces (full, with /v1/traces), or null to let the exporter read OTEL_*. */
  url: string | null;
  serviceName: string;
  sampler: SamplerSetting;
  acceptTraceparent: 'trusted_proxies' | 'always' | 'never';
  /** BatchSpanProcessor export delay (OTEL_BSP_SCHEDULE_DELAY, default 5000 ms). */
  scheduleDelayMs: number;
}

const SAMPLERS = new Set(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio']);

/** The effective settings, or null when tracing is off. Environment variables win over the policy. */
export function tracingSettings(policy: TracingPolicy | undefined, env: NodeJS.ProcessEnv = process.env): TracingSettings | null {
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return null;
  const exporter = (env.OTEL_TRACES_EXPORTER ?? '').toLowerCase();
  if (exporter === 'none') return null;
  const envEndpoint = Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  const enabled = policy?.enabled ?? (envEndpoint || policy?.endpoint !== undefined || exporter === 'otlp');
  if (!enabled) return null;
  const url = envEndpoint || !policy?.endpoint ? null : policy.endpoint.replace(/\/+$/, '') + '/v1/traces';

  let sampler: SamplerSetting;
  const envSampler = (env.OTEL_TRACES_SAMPLER ?? '').toLowerCase();
  if (SAMPLERS.has(envSampler)) {
    const arg = Number(env.OTEL_TRACES_SAMPLER_ARG);
    const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
    sampler = envSampler.endsWith('traceidratio') ? { kind: envSampler as 'traceidratio', ratio } : { kind: envSampler as 'always_on' };
  } else {
    const ratio = policy?.sample_ratio ?? 1;
    sampler = ratio >= 1 ? { kind: 'parentbased_always_on' } : { kind: 'parentbased_traceidratio', ratio };
  }
  const delay = Number(env.OTEL_BSP_SCHEDULE_DELAY);
  return {
    url,
    serviceName: env.OTEL_SERVICE_NAME || policy?.service_name || 'portcullis',
    sampler,
    acceptTraceparent: policy?.accept_traceparent ?? 'trusted_proxies',
    scheduleDelayMs: Number.isFinite(delay) && delay >= 0 ? delay : 5000,
  };
}
