// Policies shared by the harness and the scenarios. `${LISTEN}` and `${ADMIN}` are filled in by bench/run.ts.

/** Portcullis with no filter but the request id, access log off: the reference every scenario is compared to. */
export function passthroughPolicy(upstreamUrl: string, extra = ''): string {
  return `version: 1
listeners: [{ address: "\${LISTEN}" }]
admin: { address: "\${ADMIN}" }
log: { access: off }
upstreams:
  app: { url: "${upstreamUrl}", max_connections: 64 }
routes:
  - name: bench
    match: { path_prefix: / }
    upstream: app
${extra}`;
}
