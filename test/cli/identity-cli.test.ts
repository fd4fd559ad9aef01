// The identity CLI commands as users run them: `portcullis token`, `portcullis secrets generate`
// (env lines, Kubernetes manifest, --apply through kubectl) and `portcullis test` on the example policies.
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli, tempDir } from '../helpers/gateway.ts';
import { SECRET, rsaPair } from '../helpers/identity.ts';

describe('portcullis token', () => {
  it('mints an HS256 token with sub, roles, scope and a ttl', async () => {
    const r = await runCli(['token', '--secret', SECRET, '--sub', 'alice', '--roles', 'admin,user', '--scope', 'read write', '--ttl', '15m', '--kid', 'k1', '--claim', 'tenant=acme', '--claim', 'level=3']);
    expect(r.code).toBe(0);
    const { payload, protectedHeader } = await jwtVerify(r.stdout.trim(), Buffer.from(SECRET), { algorithms: ['HS256'] });
    expect(protectedHeader).toMatchObject({ alg: 'HS256', kid: 'k1' });
    expect(payload).toMatchObject({ sub: 'alice', roles: ['admin', 'user'], scope: 'read write', tenant: 'acme', level: 3 });
    expect(payload.exp! - payload.iat!).toBe(900);
  });

  it('mints an RS256 token from a private key file', async () => {
    const dir = tempDir();
    const pair = rsaPair();
    writeFileSync(join(dir, 'key.pem'), pair.privatePem);
    const r = await runCli(['token', '--key', join(dir, 'key.pem'), '--sub', 'bob']);
    expect(r.code).toBe(0);
    const { protectedHeader } = await jwtVerify(r.stdout.trim(), pair.publicKey, { algorithms: ['RS256'] });
    expect(protectedHeader.alg).toBe('RS256');
  });

  it('refuses to run without a key', async () => {
    const r = await runCli(['token', '--sub', 'alice']);
    expect(r.code).toBe(1);
  });
});

describe('portcullis secrets generate', () => {
  it('--api-key prints a new key once and the key-file line holding only its SHA-256', async () => {
    const r = await runCli(['secrets', 'generate', '--api-key', 'ci-bot', '--id', 'ci-1', '--role', 'deployer', '--scope', 'deploy:write']);
    expect(r.code, r.stderr).toBe(0);
    const key = /^API_KEY=(pcak_[A-Za-z0-9_-]{43})$/m.exec(r.stdout)![1]!;
    const line = r.stdout.split('\n').find((l) => l.startsWith('  - {'))!;
    expect(line).toBe(`  - { id: "ci-1", sha256: ${createHash('sha256').update(key).digest('hex')}, subject: "ci-bot", roles: ["deployer"], scopes: ["deploy:write"] }`);
    expect(r.stdout.split(key)).toHaveLength(2); // printed once
    const other = await runCli(['secrets', 'generate', '--api-key', 'ci-bot']);
    expect(other.stdout).not.toContain(key);
    expect(other.stdout).toMatch(/id: "ci-bot-\d{4}-\d{2}-\d{2}-[0-9a-f]{6}"/);
  });

  it('prints fresh 256-bit secrets as NAME=value lines', async () => {
    const a = await runCli(['secrets', 'generate', '--name', 'JWT_SECRET', '--name', 'CSRF_TOKEN']);
    const b = await runCli(['secrets', 'generate']);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^JWT_SECRET=[0-9a-f]{64}\nCSRF_TOKEN=[0-9a-f]{64}\n$/);
    expect(b.stdout).toMatch(/^JWT_SECRET=[0-9a-f]{64}\n$/);
    expect(a.stdout.slice(11, 75)).not.toBe(b.stdout.slice(11, 75));
  });

  it('prints a Kubernetes Secret manifest', async () => {
    const r = await runCli(['secrets', 'generate', '--k8s', 'backend-env', '--namespace', 'prod']);
    expect(r.code).toBe(0);
    const m = JSON.parse(r.stdout) as { kind: string; metadata: { name: string; namespace: string }; data: Record<string, string> };
    expect(m).toMatchObject({ kind: 'Secret', metadata: { name: 'backend-env', namespace: 'prod' } });
    expect(Buffer.from(m.data.JWT_SECRET!, 'base64').toString()).toMatch(/^[0-9a-f]{64}$/);
  });

  it('--apply pipes the manifest to kubectl apply -f -', async () => {
    const dir = tempDir();
    const fake = join(dir, 'kubectl');
    writeFileSync(fake, `#!/bin/sh\necho "$@" > ${join(dir, 'args')}\ncat > ${join(dir, 'stdin')}\necho "secret/backend-env configured"\n`);
    chmodSync(fake, 0o755);
    const r = await runCli(['secrets', 'generate', '--k8s', 'backend-env', '--apply'], { KUBECTL: fake });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('secret/backend-env configured');
    expect(readFileSync(join(dir, 'args'), 'utf8').trim()).toBe('apply -f -');
    expect((JSON.parse(readFileSync(join(dir, 'stdin'), 'utf8')) as { kind: string }).kind).toBe('Secret');
  });
});

describe('portcullis test', () => {
  it('runs the example policies\' cases', async () => {
    const secret = (await runCli(['secrets', 'generate'])).stdout.trim().split('=')[1]!;
    const r = await runCli(['test', 'config/examples/identity-rbac.yaml', 'config/examples/identity-rbac.cases.yaml'], { JWT_SECRET: secret });
    expect(r.stdout).toMatch(/11 passed, 0 failed/);
    expect(r.code).toBe(0);
    const d = await runCli(['test', 'config/portcullis.yaml', 'config/portcullis.cases.yaml']);
    expect(d.code).toBe(0);
  });

  it('prints each failure with the line of its case and exits 1', async () => {
    const dir = tempDir();
    const cases = join(dir, 'cases.yaml');
    writeFileSync(cases, `cases:
  - name: fine
    path: /health
    expect: allowed
  - name: wrong expectation
    path: /api/admin/x
    claims: { sub: a, iss: https://id.example.com, aud: api, roles: [user] }
    expect: allowed
  - name: wrong reason
    path: /api/me
    expect: { status: 401, reason: token_expired }
`);
    const r = await runCli(['test', join(ROOT, 'config/examples/identity-rbac.yaml'), cases], { JWT_SECRET: SECRET });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${cases}:5: wrong expectation: expected allowed, got 403 role_missing`);
    expect(r.stdout).toContain(`${cases}:9: wrong reason: expected 401 token_expired, got 401 token_missing`);
    expect(r.stdout).toMatch(/1 passed, 2 failed/);
  });
});

describe('portcullis test with signing_keys, and explain', () => {
  it('mints with a private key from the cases file for a public-key provider', async () => {
    const dir = tempDir();
    const pair = rsaPair();
    writeFileSync(join(dir, 'idp.pem'), pair.privatePem);
    writeFileSync(join(dir, 'policy.yaml'), `version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: none
  providers:
    hs: { jwt: { algorithms: [HS256], keys: [{ secret: "${SECRET}" }] } }
    idp:
      jwt:
        algorithms: [RS256]
        keys:
          - kid: k1
            public_key: |
${pair.publicPem.trimEnd().split('\n').map((l) => '              ' + l).join('\n')}
routes:
  - { match: { path_prefix: /admin }, upstream: app, auth: idp, authorize: { roles_any: [admin] } }
  - { match: { path_prefix: /hs }, upstream: app, auth: hs }
`);
    writeFileSync(join(dir, 'cases.yaml'), `signing_keys:
  idp: { private_key_file: idp.pem, kid: k1, algorithm: RS256 }
cases:
  - { name: admin, path: /admin/x, claims: { sub: a, roles: [admin] }, expect: allowed }
  - { name: user, path: /admin/x, claims: { sub: a, roles: [user] }, expect: { status: 403, reason: role_missing } }
  - { name: the route's provider signs, path: /hs/x, claims: { sub: a }, expect: allowed }
`);
    const r = await runCli(['test', join(dir, 'policy.yaml'), join(dir, 'cases.yaml')]);
    expect(r.stdout).toMatch(/3 passed, 0 failed/);
    expect(r.code).toBe(0);
  });

  it('explain shows providers and rules, never the secret', async () => {
    const r = await runCli(['explain', 'config/examples/identity-rbac.yaml', 'DELETE', '/api/items/1'], { JWT_SECRET: SECRET });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(SECRET);
    const out = JSON.parse(r.stdout) as { filters: { filter: string }[] };
    expect(out.filters.map((f) => f.filter)).toEqual(['jwt', 'authorize']);
  });
});
