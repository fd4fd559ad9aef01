// The filter-chain contract. A protection is one module: its config schemas, its deny reasons, and a
// compile step that closes over resolved values and returns request/response hooks. The core never
// learns a filter's name; `src/filters/index.ts` lists them in chain order.
import type { Path, Schema } from '../config/schema.ts';
import type { SecretRegistry } from '../config/secrets.ts';
import type { Telemetry } from './telemetry.ts';
import type { HeaderMap, RequestContext, ResponseHead } from './context.ts';

/** A filter's refusal. The runner answers it with one problem+json body; no filter writes a response. */
export interface Deny {
  status: number;
  reason: string;
  headers?: HeaderMap;
  /** A short human explanation; never a secret, a token or a stack trace. */
  detail?: string;
}

/** `undefined` continues the chain. */
export type Verdict = Deny | undefined;

export type RequestHook = (ctx: RequestContext) => Verdict | Promise<Verdict>;
export type ResponseHook = (ctx: RequestContext, head: ResponseHead) => void;

export interface CompiledFilter {
  readonly name: string;
  readonly onRequest: RequestHook | null;
  readonly onResponse: ResponseHook | null;
  /** What `portcullis explain` shows: the effective settings, secrets masked. */
  describe(): Record<string, unknown>;
  /**
   * False when `onRequest` reaches beyond the request (counts against a rate limit, asks an auth service):
   * `explain` and the admin dashboard then report the filter as not evaluated instead of running it.
   * Absent: true (the hook only reads the request and writes its context).
   */
  readonly explainable?: boolean;
  /**
   * True when `onRequest` answers every CORS preflight itself (the CORS filter): the gateway then routes a
   * preflight to the route serving its Access-Control-Request-Method, so method-split routes each carry
   * their own CORS. Absent: false.
   */
  readonly answersPreflight?: boolean;
  /**
   * True when `onRequest` reads the first bytes of the body (`ctx.body.prefix`, rate-limit keys from body
   * fields): the gateway then gives requests with a body a reader before the chain. Absent: false.
   */
  readonly readsBody?: boolean;
}

/** What compile steps get from the core: where they are, how to report problems, telemetry to use. */
export interface CompileEnv {
  readonly mode: 'development' | 'production';
  readonly secrets: SecretRegistry;
  readonly telemetry: Telemetry;
  /** Report a policy problem at `path`; compilation fails after all modules ran. */
  problem(path: Path, message: string, atKey?: boolean): void;
  /** Register a resource to release when this policy is replaced or the gateway stops. */
  onClose(close: () => void | Promise<void>): void;
  /** Register a promise the policy must await before serving (JWKS first fetch, Redis script load). */
  onReady(ready: Promise<void>): void;
  /** Register a readiness check shown by the admin `/readyz`; a string return is the failure reason. */
  readiness(name: string, check: () => true | string): void;
  /**
   * Register a live status report for the admin dashboard (store up or down and since when, key sets
   * and their last refresh...). Called only when the dashboard asks, never on the request path; the
   * report names its `kind` (`rate_limit_store`, `jwt`, `forward_auth`) and is masked before display.
   */
  status?(name: string, report: () => StatusReport): void;
}

/** A status report: `kind` groups it on the dashboard; other fields are JSON values (times as epoch ms). */
export interface StatusReport {
  readonly kind: string;
  readonly [field: string]: unknown;
}

export interface RouteInput<R, S> {
  /** The route's value under the module's `routeKey`, parsed (undefined when absent). */
  config: R | undefined;
  /** What `setup` returned for this policy. */
  shared: S;
  routeName: string;
  /** Path of the route in the policy, e.g. ['routes', 3]. */
  routePath: Path;
  /** Methods the route matches (empty: all), for filters whose rules depend on it. */
  methods: readonly string[];
}

export interface FilterModule<G = unknown, R = unknown, S = unknown> {
  readonly name: string;
  /** Every reason this module may deny with: the bounded label set of its metrics. */
  readonly reasons: readonly string[];
  /** 'global' filters run before routing on every request (request id); 'route' filters per route. */
  readonly stage: 'global' | 'route';
  /** Top-level policy key this module owns, and its schema. */
  readonly globalKey?: string;
  readonly globalSchema?: Schema<G>;
  /** Key on each route this module owns, and its schema. */
  readonly routeKey?: string;
  readonly routeSchema?: Schema<R>;
  /** Once per policy: build what all routes share (named policies, key sets, stores). */
  setup?(config: G | undefined, env: CompileEnv): S;
  /** Once per route (or once for a global filter): return the filter, or null when it does nothing here. */
  compile(input: RouteInput<R, S>, env: CompileEnv): CompiledFilter | null;
}

/** Declares a module with its types checked: `export const csrf = defineFilter({...})`. */
export function defineFilter<G, R, S>(module: FilterModule<G, R, S>): FilterModule<G, R, S> {
  return module;
}

export function deny(status: number, reason: string, detail?: string, headers?: HeaderMap): Deny {
  return detail === undefined && headers === undefined ? { status, reason } : { status, reason, detail, headers };
}
