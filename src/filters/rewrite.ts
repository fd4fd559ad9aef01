// Per-route rewrite of what the upstream sees: strip a path prefix, add one (together: replace a prefix),
// and set the upstream Host (default: the client's). The rewritten path goes to `ctx.upstreamPath`;
// `ctx.path` stays what the client asked for, so logs, and every filter before this one, see that.
//
// Safety: the input is the normalized path (no dot segments, no `//`, no encoded `/` or `\`), prefixes are
// checked to be normalized at compile time, and the output is `add_prefix` + a normalized suffix that
// starts with `/`, so it can never leave `add_prefix`.
import { object, optional, string, type Infer, type Path } from '../config/schema.ts';
import { normalizeTarget } from '../proxy/normalize.ts';
import { defineFilter, type CompileEnv } from '../contract/filter.ts';

const PREFIX = /^\/[^?#\s]*$/;

const rewriteSchema = object(
  {
    strip_prefix: optional(string({ pattern: PREFIX, patternName: 'absolute path', description: 'Removed from the start of the path (segment-aware: /app strips /app and /app/x, never /apple); / when nothing is left.' })),
    add_prefix: optional(string({ pattern: PREFIX, patternName: 'absolute path', description: 'Put in front of the path (after strip_prefix): both together replace a prefix.' })),
    host: optional(string({ pattern: /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:.]+\](:\d{1,5})?$/, patternName: 'host[:port]', description: 'Host header sent upstream (default: the client\'s).' })),
  },
  {
    description: 'Rewrites of the request sent upstream.',
    check(v, path, issues) {
      if (v.strip_prefix === undefined && v.add_prefix === undefined && v.host === undefined) issues.push({ path, message: 'give strip_prefix, add_prefix or host' });
    },
  },
);

export type RewriteConfig = Infer<typeof rewriteSchema>;

/** A prefix as compared and joined: normalized, without its trailing slash ('' for `/`). */
export function compilePrefix(prefix: string, path: Path, env: Pick<CompileEnv, 'problem'>): string {
  const n = normalizeTarget(prefix);
  if (typeof n === 'string' || n.query !== '' || n.path !== prefix) {
    env.problem(path, `${JSON.stringify(prefix)} is not a normalized path (no dot segments, "//", encoded "/" or "\\")`);
    return '';
  }
  return n.path.endsWith('/') ? n.path.slice(0, -1) : n.path;
}

/** `path` (normalized) without `strip` when it starts with it, segment-aware; '' when nothing is left. */
export function stripPrefix(path: string, strip: string): string {
  if (strip === '') return path;
  if (!path.startsWith(strip)) return path;
  if (path.length === strip.length) return '';
  return path.charCodeAt(strip.length) === 0x2f /* / */ ? path.slice(strip.length) : path;
}

/** The upstream path: `add` + the rest after `strip`; never empty. */
export function rewritePath(path: string, strip: string, add: string): string {
  const rest = stripPrefix(path, strip);
  const out = add + rest;
  return out === '' ? '/' : out;
}

export const rewrite = defineFilter<undefined, RewriteConfig, undefined>({
  name: 'rewrite',
  reasons: [],
  stage: 'route',
  routeKey: 'rewrite',
  routeSchema: rewriteSchema,
  compile({ config, routePath }, env) {
    if (!config) return null;
    const strip = config.strip_prefix !== undefined ? compilePrefix(config.strip_prefix, [...routePath, 'rewrite', 'strip_prefix'], env) : '';
    const add = config.add_prefix !== undefined ? compilePrefix(config.add_prefix, [...routePath, 'rewrite', 'add_prefix'], env) : '';
    const host = config.host ?? null;
    const paths = strip !== '' || add !== '';
    return {
      name: 'rewrite',
      onRequest(ctx) {
        if (paths) ctx.upstreamPath = rewritePath(ctx.path, strip, add);
        if (host !== null) ctx.upstreamHeaders.host = host;
        return undefined;
      },
      onResponse: null,
      describe: () => ({ strip_prefix: strip || null, add_prefix: add || null, host }),
    };
  },
});
