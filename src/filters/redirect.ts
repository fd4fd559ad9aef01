// Per-route redirects: the gateway answers 301/302/303/307/308 with a Location built from a fixed target
// and (optionally) the request's normalized path and query. Nothing is forwarded. The Location can only
// point where the policy says: the appended path is normalized (no `//`, no `\`), and a path target may
// not be protocol-relative.
import { boolean, integer, object, optional, string, withDefault, type Infer } from '../config/schema.ts';
import { compilePrefix, stripPrefix } from './rewrite.ts';
import { defineFilter, type Deny } from '../contract/filter.ts';

const redirectSchema = object(
  {
    to: string({ description: 'Where to: an absolute http(s) URL, or an absolute path on the same host.' }),
    status: withDefault(integer({ min: 301, max: 308, description: '301, 302, 303, 307 or 308.' }), 302),
    keep_path: withDefault(boolean({ description: 'Append the request path (after strip_prefix) to `to`.' }), false),
    strip_prefix: optional(string({ pattern: /^\/[^?#\s]*$/, patternName: 'absolute path', description: 'Removed from the request path before it is appended.' })),
    keep_query: withDefault(boolean({ description: 'Append the request\'s query string.' }), true),
  },
  {
    description: 'Answer this route with a redirect instead of forwarding.',
    check(v, path, issues) {
      if (![301, 302, 303, 307, 308].includes(v.status)) issues.push({ path: [...path, 'status'], message: 'must be 301, 302, 303, 307 or 308' });
      if (v.strip_prefix !== undefined && !v.keep_path) issues.push({ path: [...path, 'strip_prefix'], message: 'strip_prefix needs keep_path: true' });
    },
  },
);

export type RedirectConfig = Infer<typeof redirectSchema>;

const SAFE_TARGET = /^[\x21-\x7e]+$/;

export const redirect = defineFilter<undefined, RedirectConfig, undefined>({
  name: 'redirect',
  reasons: ['redirect'],
  stage: 'route',
  routeKey: 'redirect',
  routeSchema: redirectSchema,
  compile({ config, routePath }, env) {
    if (!config) return null;
    const at = [...routePath, 'redirect'];
    let to = config.to;
    if (!SAFE_TARGET.test(to)) env.problem([...at, 'to'], 'the target may not contain spaces or control characters');
    if (to.startsWith('/')) {
      if (to.startsWith('//') || to.startsWith('/\\')) env.problem([...at, 'to'], 'a path target may not start with "//" (that names another host)');
    } else {
      let url: URL | null = null;
      try {
        url = new URL(to);
      } catch {
        /* reported below */
      }
      if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password) {
        env.problem([...at, 'to'], 'expected an absolute http(s) URL without credentials, or a path starting with /');
      }
    }
    const keepPath = config.keep_path;
    const keepQuery = config.keep_query;
    const strip = config.strip_prefix !== undefined ? compilePrefix(config.strip_prefix, [...at, 'strip_prefix'], env) : '';
    if (keepPath) {
      // The path is appended after the target's own path: a query or fragment in `to` would swallow it.
      if (/[?#]/.test(to)) env.problem([...at, 'to'], 'with keep_path the target may not have a query or fragment');
      if (to.endsWith('/')) to = to.slice(0, -1);
    }
    if (keepQuery && to.includes('?')) env.problem([...at, 'keep_query'], 'the target has its own query: set keep_query: false');
    const status = config.status;
    const fixed: Deny | null = keepPath || keepQuery ? null : { status, reason: 'redirect', headers: { location: to } };
    return {
      name: 'redirect',
      onRequest(ctx) {
        if (fixed !== null) return fixed;
        let location = to;
        if (keepPath) {
          const rest = stripPrefix(ctx.path, strip);
          location += rest === '' ? '/' : rest;
        }
        if (keepQuery) location += ctx.query;
        return { status, reason: 'redirect', headers: { location } };
      },
      onResponse: null,
      describe: () => ({ to: config.to, status, keep_path: keepPath, strip_prefix: strip || null, keep_query: keepQuery }),
    };
  },
});
