// Request id: keep a client's X-Request-ID when it is well-formed (so a trace can cross systems), else
// generate one. It is forwarded upstream, returned to the client, and appears in logs and problem bodies.
import { randomUUID } from 'node:crypto';
import { object, string, withDefault, type Infer } from '../config/schema.ts';
import { defineFilter } from '../contract/filter.ts';

/** Printable, no spaces or quotes, at most 128 characters: safe to log and to echo in a header. */
const VALID_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

const requestIdSchema = object(
  {
    header: withDefault(string({ description: 'Header carrying the id, both ways.', pattern: /^[A-Za-z0-9-]+$/, patternName: 'header name' }), 'X-Request-ID'),
  },
  { description: 'Request id: a valid client-sent id is kept, otherwise one is generated.' },
);

export type RequestIdConfig = Infer<typeof requestIdSchema>;

export const requestId = defineFilter<RequestIdConfig, undefined, RequestIdConfig | undefined>({
  name: 'request_id',
  reasons: [],
  stage: 'global',
  globalKey: 'request_id',
  globalSchema: withDefault(requestIdSchema, { header: 'X-Request-ID' }),
  setup: (config) => config,
  compile({ shared }) {
    const headerName = shared?.header ?? 'X-Request-ID';
    const key = headerName.toLowerCase();
    return {
      name: 'request_id',
      onRequest(ctx) {
        const sent = ctx.requestHeaders[key];
        const id = typeof sent === 'string' && VALID_ID.test(sent) ? sent : randomUUID();
        ctx.id = id;
        ctx.upstreamHeaders[key] = id;
        ctx.responseHeaders[key] = id;
        return undefined;
      },
      onResponse: null,
      describe: () => ({ header: headerName }),
    };
  },
});
