// An upstream service: its settings and its keep-alive connection pool (undici). The forwarding engine
// (forwarder.ts) talks to it through `dispatch` only, so the engine can be swapped behind one interface.
import { Pool } from 'undici';
import { duration, integer, object, url, withDefault, type Infer } from '../config/schema.ts';

export const upstreamSchema = object(
  {
    url: url({ protocols: ['http:', 'https:'], description: 'Base URL of the service; its path is not prepended.' }),
    connect_timeout: withDefault(duration({ description: 'Time to open a connection (504 above it).' }), 2_000),
    timeout: withDefault(duration({ description: 'Time to the response head, and longest pause in the body (504).' }), 30_000),
    max_connections: withDefault(integer({ min: 1, description: 'Connections kept to the upstream per process.' }), 128),
    keep_alive_timeout: withDefault(duration({ description: 'Idle time before a pooled connection is closed; keep it below the upstream\'s own.' }), 4_000),
  },
  { description: 'An upstream service.' },
);

export type UpstreamConfig = Infer<typeof upstreamSchema>;

export class Upstream {
  readonly name: string;
  readonly origin: string;
  readonly config: UpstreamConfig;
  readonly pool: Pool;

  constructor(name: string, config: UpstreamConfig) {
    this.name = name;
    this.config = config;
    this.origin = config.url.origin;
    this.pool = new Pool(this.origin, {
      connections: config.max_connections,
      pipelining: 1,
      connectTimeout: config.connect_timeout,
      headersTimeout: config.timeout,
      bodyTimeout: config.timeout,
      keepAliveTimeout: config.keep_alive_timeout,
      keepAliveMaxTimeout: Math.max(config.keep_alive_timeout, 1_000),
    });
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
