// Per-route request header edits: add (or replace) and remove, on what is sent upstream. Headers that
// decide framing or that the gateway sets itself are refused at compile time: Host has `rewrite.host`,
// X-Forwarded-* are set after the filters from what the gateway knows.
import { array, object, optional, record, string, type Infer } from '../config/schema.ts';
import { HOP_BY_HOP } from '../proxy/headers.ts';
import { defineFilter } from '../contract/filter.ts';

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const RESERVED = new Set([...HOP_BY_HOP, 'host', 'content-length', 'expect', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);

const requestHeadersSchema = object(
  {
    add: optional(record(string({ pattern: HEADER_VALUE, patternName: 'header value (no CR/LF)' }), { keyPattern: HEADER_NAME, description: 'Headers set on the upstream request, replacing the client\'s value.' })),
    remove: optional(array(string({ pattern: HEADER_NAME, patternName: 'header name' }), { description: 'Client headers not sent upstream.' })),
  },
  { description: 'Edits to the request headers sent upstream by this route.' },
);

export type RequestHeadersConfig = Infer<typeof requestHeadersSchema>;

export const requestHeaders = defineFilter<undefined, RequestHeadersConfig, undefined>({
  name: 'request_headers',
  reasons: [],
  stage: 'route',
  routeKey: 'request_headers',
  routeSchema: requestHeadersSchema,
  compile({ config, routePath }, env) {
    if (!config) return null;
    const at = [...routePath, 'request_headers'];
    const add = Object.entries(config.add ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
    const remove = (config.remove ?? []).map((k) => k.toLowerCase());
    for (const key of Object.keys(config.add ?? {})) {
      const name = key.toLowerCase();
      if (RESERVED.has(name)) env.problem([...at, 'add', key], `"${name}" is set by the gateway${name === 'host' ? ' (use rewrite.host)' : ''}`, true);
    }
    remove.forEach((name, i) => {
      if (RESERVED.has(name)) env.problem([...at, 'remove', i], `"${name}" is set by the gateway`);
    });
    if (add.length === 0 && remove.length === 0) return null;
    return {
      name: 'request_headers',
      onRequest(ctx) {
        const headers = ctx.upstreamHeaders;
        for (const name of remove) delete headers[name];
        for (const [name, value] of add) headers[name] = value;
        return undefined;
      },
      onResponse: null,
      describe: () => ({ add: Object.fromEntries(add), remove }),
    };
  },
});
