// Rotating an HS256 secret by reload (seed 001: "rotating SECRET_KEY forces re-login"): during the overlap
// both keys verify; once the old key is removed its tokens — even ones verified and cached before — get
// 401 token_key_unknown with a WWW-Authenticate error the UI can act on, and nothing reaches the upstream.
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { OTHER_SECRET, SECRET, hs256 } from '../helpers/identity.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let gw: RunningGateway;

const policy = (keys: string) => `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${upstream.url}" } }
auth:
  default: main
  providers:
    main:
      jwt:
        algorithms: [HS256]
        keys: [${keys}]
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app }
`;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(policy(`{ kid: old, secret: "\${env:OLD_SECRET}" }, { kid: new, secret: "\${env:NEW_SECRET}" }`), { env: { OLD_SECRET: SECRET, NEW_SECRET: OTHER_SECRET } });
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

async function call(token: string) {
  const r = await fetch(`${gw.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
  const body = await r.text();
  return { status: r.status, challenge: r.headers.get('www-authenticate'), reason: r.status === 200 ? undefined : (JSON.parse(body) as { reason: string }).reason };
}

describe('secret rotation by reload', () => {
  it('overlap, then removal', async () => {
    const oldToken = await hs256({ sub: 'alice' }, { kid: 'old', secret: SECRET });
    const newToken = await hs256({ sub: 'alice' }, { kid: 'new', secret: OTHER_SECRET });
    expect((await call(oldToken)).status).toBe(200);
    expect((await call(newToken)).status).toBe(200);

    writeFileSync(gw.policyFile, policy(`{ kid: new, secret: "\${env:NEW_SECRET}" }`));
    const admin = gw.admin.startsWith('http') ? gw.admin : `http://${gw.admin}`;
    const reload = await fetch(`${admin}/reload`, { method: 'POST' });
    expect(reload.status).toBe(200);

    upstream.received.length = 0;
    expect(await call(oldToken)).toEqual({ status: 401, reason: 'token_key_unknown', challenge: 'Bearer realm="main", error="invalid_token", error_description="token_key_unknown"' });
    expect(upstream.received).toHaveLength(0);
    expect((await call(newToken)).status).toBe(200);
  });
});
