// Policies shared by the harness and the scenarios. `${LISTEN}` and `${ADMIN}` are filled in by bench/run.ts.
// A scenario built from the reference differs from it only by what it measures (same listener, upstream
// pool and route), so its ratio to the passthrough is the cost of that feature alone.

export interface PolicyAdditions {
  /** Top-level YAML (named policies, `workers`, `tracing`...). */
  top?: string;
  /** Keys added to the one route, one per line, without indentation. */
  route?: string;
  /** The `log:` value; the reference turns the access log off. */
  log?: string;
}

/** Portcullis with no filter but the request id, access log off: the reference every scenario is compared to. */
export function passthroughPolicy(upstreamUrl: string, add: PolicyAdditions = {}): string {
  const routeKeys = (add.route ?? '').split('\n').filter((l) => l.trim() !== '').map((l) => `    ${l}\n`).join('');
  return `version: 1
listeners: [{ address: "\${LISTEN}" }]
admin: { address: "\${ADMIN}" }
log: ${add.log ?? '{ access: off }'}
upstreams:
  app: { url: "${upstreamUrl}", max_connections: 64 }
${add.top ? add.top.trim() + '\n' : ''}routes:
  - name: bench
    match: { path_prefix: / }
    upstream: app
${routeKeys}`;
}
