// A real local HTTPS JWKS server (certificates from a test CA) behind the real gateway: rotation with
// overlapping keys, a removed key, a flood of unknown kids, and the IdP going down (last good set kept)
// or being down at start.
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeCerts } from '../helpers/certs.ts';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { signWith } from '../helpers/identity.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

interface Pair {
  kid: string;
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}
function ecKey(kid: string): Pair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' } };
}
const k1 = ecKey('k1');
const k2 = ecKey('k2');
const k3 = ecKey('k3');

const certs = makeCerts();
let idp: Server;
let idpUrl = '';
let served: Pair[] = [k1];
let idpStatus = 200;
let idpHits = 0;
let cacheControl = 'public, max-age=3600';
let upstream: RecordingUpstream;
let gw: RunningGateway;

function startIdp(port = 0): Promise<void> {
  idp = createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (_req, res) => {
    idpHits++;
    if (idpStatus !== 200) {
      res.writeHead(idpStatus).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': cacheControl });
    res.end(JSON.stringify({ keys: served.map((p) => p.jwk) }));
  });
  return new Promise((resolve) => idp.listen(port, '127.0.0.1', () => resolve()));
}

const token = (p: Pair, extra: Record<string, unknown> = {}) => signWith(p.privateKey, 'ES256', { sub: 'alice', jti: randomUUID(), ...extra }, { kid: p.kid });

async function call(t: string | null): Promise<{ status: number; reason?: string }> {
  const r = await fetch(`${gw.url}/api/x`, { headers: t ? { authorization: `Bearer ${t}` } : {} });
  const body = await r.text();
  return { status: r.status, reason: r.status === 200 ? undefined : (JSON.parse(body) as { reason: string }).reason };
}

async function metric(g: RunningGateway, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${g.admin.startsWith('http') ? '' : 'http://'}${g.admin}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + '{') && Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not reached in time');
}

const policy = (url: string) => `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${upstream.url}" } }
auth:
  default: idp
  providers:
    idp:
      jwt:
        algorithms: [ES256]
        jwks_url: ${url}
        jwks_ca: ${certs.ca}
        jwks_timeout: 1s
        jwks_min_refresh: 100ms
        jwks_max_refresh: 1h
        jwks_unknown_kid_interval: 1s
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app }
`;

beforeAll(async () => {
  upstream = await startUpstream();
  await startIdp();
  idpUrl = `https://127.0.0.1:${(idp.address() as AddressInfo).port}/.well-known/jwks.json`;
  gw = await startGateway(policy(idpUrl));
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  idp?.closeAllConnections();
  await new Promise((r) => idp?.close(() => r(undefined)));
});

beforeEach(() => {
  upstream.received.length = 0;
});

describe('JWKS over HTTPS', () => {
  it('verifies tokens with the fetched keys, and is ready', async () => {
    expect(await call(await token(k1))).toEqual({ status: 200, reason: undefined });
    expect((await fetch(`${gw.admin.startsWith('http') ? '' : 'http://'}${gw.admin}/readyz`)).status).toBe(200);
  });

  it('rotation: a new kid triggers a refetch and both keys work during the overlap', async () => {
    served = [k1, k2];
    await eventually(async () => (await call(await token(k2))).status === 200);
    expect((await call(await token(k1))).status).toBe(200);
  });

  it('a removed key makes its tokens fail once the set is refetched (cache cleared)', async () => {
    const cached = await token(k1);
    expect((await call(cached)).status).toBe(200);
    served = [k2, k3];
    // A token of the new key k3 brings the new set; the changed set clears the verified-token cache.
    await eventually(async () => (await call(await token(k3))).status === 200);
    expect(await call(cached)).toEqual({ status: 401, reason: 'token_key_unknown' });
    expect((await call(await token(k2))).status).toBe(200);
  });

  it('a flood of unknown kids costs the IdP at most one fetch per interval', async () => {
    await new Promise((r) => setTimeout(r, 1_100)); // let one interval pass so the flood may trigger one fetch
    const before = idpHits;
    const forged = await Promise.all(Array.from({ length: 60 }, () => signWith(k1.privateKey, 'ES256', { sub: 'x' }, { kid: randomUUID() })));
    const started = performance.now();
    const results = await Promise.all(forged.map((t) => call(t)));
    const intervals = Math.floor((performance.now() - started) / 1000); // extra intervals a slow machine let pass
    expect(results.every((r) => r.status === 401 && r.reason === 'token_key_unknown')).toBe(true);
    expect(idpHits - before).toBeLessThanOrEqual(1 + intervals);
    expect(upstream.received).toHaveLength(0);
  });

  it('IdP down: the last good key set is kept and failures are counted', async () => {
    idpStatus = 500;
    const failures = await metric(gw, 'portcullis_jwks_fetches_total', { provider: 'idp', result: 'failure' });
    await eventually(async () => {
      await call(await signWith(k1.privateKey, 'ES256', { sub: 'x' }, { kid: randomUUID() })); // unknown kid: refetch attempt
      return (await metric(gw, 'portcullis_jwks_fetches_total', { provider: 'idp', result: 'failure' })) > failures;
    });
    expect((await call(await token(k2))).status).toBe(200);
    expect((await call(await token(k3))).status).toBe(200);
    idpStatus = 200;
  });
});

describe('JWKS background refresh', () => {
  it('refreshes as Cache-Control max-age says, without any traffic', async () => {
    cacheControl = 'public, max-age=1';
    const g = await startGateway(policy(idpUrl));
    try {
      const start = idpHits;
      await eventually(async () => idpHits - start >= 3, 8_000);
    } finally {
      await g.stop();
      cacheControl = 'public, max-age=3600';
    }
  });
});

describe('JWKS unreachable at start', () => {
  it('starts, is not ready, and answers 503 jwks_unavailable without forwarding', async () => {
    const down = await startGateway(policy('https://127.0.0.1:1/jwks.json'));
    try {
      const ready = await fetch(`${down.admin.startsWith('http') ? '' : 'http://'}${down.admin}/readyz`);
      expect(ready.status).toBe(503);
      const r = await fetch(`${down.url}/api/x`, { headers: { authorization: `Bearer ${await token(k1)}` } });
      expect(r.status).toBe(503);
      expect((JSON.parse(await r.text()) as { reason: string }).reason).toBe('jwks_unavailable');
      expect(upstream.received).toHaveLength(0);
    } finally {
      await down.stop();
    }
  });
});
