// Per-route response header edits: add (or replace) and remove, applied to the upstream's answer and to
// the gateway's own answers on that route.
import { array, object, optional, record, string, type Infer } from '../config/schema.ts';
import { defineFilter } from '../contract/filter.ts';

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

const responseHeadersSchema = object(
  {
    add: optional(record(string({ pattern: HEADER_VALUE, patternName: 'header value (no CR/LF)' }), { keyPattern: HEADER_NAME, description: 'Headers set on every response, replacing the upstream value.' })),
    remove: optional(array(string({ pattern: HEADER_NAME, patternName: 'header name' }), { description: 'Headers removed from every response.' })),
  },
  { description: 'Edits to the response headers of this route.' },
);

export type ResponseHeadersConfig = Infer<typeof responseHeadersSchema>;

export const responseHeaders = defineFilter<undefined, ResponseHeadersConfig, undefined>({
  name: 'response_headers',
  reasons: [],
  stage: 'route',
  routeKey: 'response_headers',
  routeSchema: responseHeadersSchema,
  compile({ config }) {
    if (!config) return null;
    const add = Object.entries(config.add ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
    const remove = (config.remove ?? []).map((k) => k.toLowerCase());
    if (add.length === 0 && remove.length === 0) return null;
    return {
      name: 'response_headers',
      onRequest: null,
      onResponse(_ctx, head) {
        for (const name of remove) delete head.headers[name];
        for (const [name, value] of add) head.headers[name] = value;
      },
      describe: () => ({ add: Object.fromEntries(add), remove }),
    };
  },
});
