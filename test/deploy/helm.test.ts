// The Helm chart: `helm lint` and `helm template` (the real helm v4 binary unpacked by scripts/helm.sh) of
// both modes and of each example values file; every rendered object validated against the Kubernetes API
// schemas (kubernetes-models); and the policy inside the rendered ConfigMap passing
// `portcullis validate --production`.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { makeCerts } from '../helpers/certs.ts';
import { ROOT, runCli, startGateway, tempDir } from '../helpers/gateway.ts';
import { execForm, readDockerfile } from './docker.ts';

const CHART = join(ROOT, 'helm/portcullis');
const EXAMPLES = readdirSync(join(CHART, 'examples')).filter((f) => f.endsWith('.yaml')).map((f) => join(CHART, 'examples', f));

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any };

// Kubernetes API models by apiVersion/kind; every rendered object must have one (or be a known CRD below).
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'networking.k8s.io/v1/Ingress': Ingress,
};

// Prometheus Operator CRDs are not in kubernetes-models: checked against the fields the operator requires.
const CRDS: Record<string, (o: K8sObject) => void> = {
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => {
    expect(o.spec.selector.matchLabels).toBeTypeOf('object');
    expect(o.spec.endpoints.length).toBeGreaterThan(0);
    for (const e of o.spec.endpoints) {
      expect(e.port).toBeTypeOf('string');
      expect(e.path).toBe('/metrics');
      expect(e.interval).toMatch(/^\d+(ms|s|m|h)$/);
    }
  },
  'monitoring.coreos.com/v1/PrometheusRule': (o) => {
    expect(Array.isArray(o.spec.groups)).toBe(true);
    for (const g of o.spec.groups) {
      expect(g.name).toBeTypeOf('string');
      expect(Array.isArray(g.rules)).toBe(true);
      for (const r of g.rules) {
        expect(typeof r.expr === 'string' || typeof r.expr === 'number').toBe(true);
        expect(r.alert ?? r.record).toBeTypeOf('string');
      }
    }
  },
};

let helm = '';
beforeAll(() => {
  helm = execFileSync('bash', [join(ROOT, 'scripts/helm.sh')], { encoding: 'utf8', env: { ...process.env, PORTCULLIS_BUNDLED_HELM: '1' } }).trim();
}, 60_000);

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(helm, args, { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: join(ROOT, '.tools/helm-home/cache'), HELM_CONFIG_HOME: join(ROOT, '.tools/helm-home/config'), HELM_DATA_HOME: join(ROOT, '.tools/helm-home/data') } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function valueArgs(files: string[], set: string[]): string[] {
  return [...files.flatMap((f) => ['-f', f]), ...set.flatMap((s) => ['--set', s])];
}

function template(files: string[] = [], set: string[] = [], chart = CHART): K8sObject[] {
  const r = run(['template', 'rel', chart, '--namespace', 'apps', ...valueArgs(files, set)]);
  if (r.code !== 0) throw new Error(`helm template failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
}

function templateError(set: string[], files: string[] = []): string {
  const r = run(['template', 'rel', CHART, ...valueArgs(files, set)]);
  expect(r.code).not.toBe(0);
  return r.stderr;
}

const find = (objs: K8sObject[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const one = (objs: K8sObject[], kind: string) => {
  const list = find(objs, kind);
  expect(list, kind).toHaveLength(1);
  return list[0]!;
};

function validateAll(objs: K8sObject[]): void {
  for (const o of objs) {
    const key = `${o.apiVersion}/${o.kind}`;
    if (CRDS[key]) {
      CRDS[key](o);
      continue;
    }
    const Model = MODELS[key];
    expect(Model, `no Kubernetes schema for ${key}`).toBeDefined();
    try {
      new Model!(o).validate();
    } catch (err) {
      throw new Error(`${key} ${o.metadata.name} is invalid: ${(err as Error).message}`);
    }
    expect(o.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  }
}

/** The rendered policy, validated by the real CLI with --production (every secretEnv set to 256 random bits). */
async function validatePolicy(objs: K8sObject[], files: string[]): Promise<{ code: number | null; stdout: string; policy: any }> {
  const cm = find(objs, 'ConfigMap').find((c) => c.metadata.name.endsWith('-policy'))!;
  const text = cm.data['policy.yaml'] as string;
  const file = join(tempDir('portcullis-helm-'), 'policy.yaml');
  writeFileSync(file, text);
  const env: Record<string, string> = {};
  for (const f of files) {
    const values = parseYaml(readText(f)) as { secretEnv?: { name: string }[]; env?: Record<string, string> };
    // 256 random bits for each secret; URL-valued ones get a URL of the right scheme (never connected to).
    for (const s of values.secretEnv ?? []) env[s.name] = /REDIS_URL$/.test(s.name) ? 'redis://:stand-in@127.0.0.1:9/0' : randomBytes(32).toString('hex');
    Object.assign(env, values.env ?? {});
  }
  const r = await runCli(['validate', file, '--production'], env);
  return { code: r.code, stdout: r.stdout + r.stderr, policy: parseYaml(text) };
}

function readText(f: string): string {
  return execFileSync('cat', [f], { encoding: 'utf8' });
}

const CASES: { name: string; files: string[]; set: string[]; mode: 'standalone' | 'sidecar' }[] = [
  { name: 'defaults (standalone, TLS from a Secret, deny-all policy)', files: [], set: [], mode: 'standalone' },
  { name: 'sidecar with defaults', files: [], set: ['mode=sidecar', 'app.image=registry.example.com/app:1.0'], mode: 'sidecar' },
  ...EXAMPLES.map((f) => ({ name: `example ${f.slice(CHART.length + 1)}`, files: [f], set: [], mode: (parseYaml(readText(f)) as { mode: 'standalone' | 'sidecar' }).mode })),
];

describe('helm chart', () => {
  it('has an example values file for each mode', () => {
    expect(new Set(CASES.slice(2).map((c) => c.mode))).toEqual(new Set(['standalone', 'sidecar']));
  });

  describe.each(CASES)('$name', ({ files, set, mode }) => {
    let objs: K8sObject[] = [];
    beforeAll(() => {
      objs = template(files, set);
    }, 60_000);

    it('passes helm lint --strict', () => {
      const r = run(['lint', '--strict', CHART, ...valueArgs(files, set)]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }, 60_000);

    it('renders only objects valid against the Kubernetes API schemas', () => {
      expect(objs.length).toBeGreaterThanOrEqual(5);
      validateAll(objs);
    });

    it('renders a policy that passes `portcullis validate --production`', async () => {
      const r = await validatePolicy(objs, files);
      expect(r.stdout).toContain('nothing missing');
      expect(r.code, r.stdout).toBe(0);
      expect(r.policy.mode).toBe('production');
    });

    it('runs Portcullis locked down: non-root, read-only root, no capabilities, RuntimeDefault seccomp, resources', () => {
      const pod = one(objs, 'Deployment').spec.template.spec;
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      expect(pod.automountServiceAccountToken).toBe(false);
      const c = pod.containers.find((x: any) => x.name === 'portcullis');
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      expect(c.resources.requests.cpu).toBeDefined();
      expect(c.resources.limits.memory).toBeDefined();
      const mounts = Object.fromEntries(c.volumeMounts.map((m: any) => [m.name, m]));
      expect(mounts.policy.readOnly).toBe(true);
      const config = c.env.find((e: any) => e.name === 'PORTCULLIS_CONFIG').value as string;
      expect(config).toBe(`${mounts.policy.mountPath}/policy.yaml`);
    });

    it('probes the admin port, and preStop + drain fit in the termination grace period', () => {
      const d = one(objs, 'Deployment');
      const pod = d.spec.template.spec;
      const c = pod.containers.find((x: any) => x.name === 'portcullis');
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
      const adminPort = c.ports.find((p: any) => p.name === 'admin').containerPort;
      const policy = parseYaml(find(objs, 'ConfigMap').find((x) => x.metadata.name.endsWith('-policy'))!.data['policy.yaml']);
      expect(policy.admin.address).toBe(`0.0.0.0:${adminPort}`);
      const drain = Number(/^(\d+)s$/.exec(policy.limits.shutdown_grace)![1]);
      const preStop = c.lifecycle.preStop.sleep.seconds;
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(preStop + drain);
      expect(d.spec.template.metadata.annotations['checksum/policy']).toMatch(/^[0-9a-f]{64}$/);
      // Every listener the policy has is a container port, and the Service reaches only those.
      const ports = new Map(c.ports.map((p: any) => [p.containerPort, p.name]));
      for (const l of policy.listeners) expect(ports.has(Number(l.address.split(':').at(-1)))).toBe(true);
      const svc = find(objs, 'Service').find((s) => !s.metadata.name.endsWith('-admin'))!;
      for (const p of svc.spec.ports) expect(['http', 'https']).toContain(p.targetPort);
    });

    it('keeps the admin port private with a NetworkPolicy the policy names', () => {
      const np = one(objs, 'NetworkPolicy');
      const policy = parseYaml(find(objs, 'ConfigMap').find((x) => x.metadata.name.endsWith('-policy'))!.data['policy.yaml']);
      expect(policy.admin.protected_by).toBe('network_policy');
      const adminRules = np.spec.ingress.filter((r: any) => r.ports.some((p: any) => p.port === 'admin'));
      expect(adminRules).toHaveLength(1);
      expect(adminRules[0].from.length).toBeGreaterThan(0);
      expect(adminRules[0].ports).toEqual([{ port: 'admin', protocol: 'TCP' }]);
      for (const r of np.spec.ingress) for (const p of r.ports) expect(['http', 'https', 'admin']).toContain(p.port);
    });

    if (mode === 'sidecar') {
      it('sidecar: the app and Portcullis in one pod, the app on loopback behind upstream `app`', () => {
        const d = one(objs, 'Deployment');
        const containers = d.spec.template.spec.containers;
        expect(containers).toHaveLength(2);
        const app = containers.find((x: any) => x.name !== 'portcullis');
        expect(app.ports ?? []).toEqual([]);
        expect(app.env).toEqual(expect.arrayContaining([{ name: 'HOST', value: '127.0.0.1' }]));
        const policy = parseYaml(find(objs, 'ConfigMap').find((x) => x.metadata.name.endsWith('-policy'))!.data['policy.yaml']);
        expect(policy.upstreams.app.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
        // The app outlives Portcullis' drain.
        const gw = containers.find((x: any) => x.name === 'portcullis');
        expect(app.lifecycle.preStop.sleep.seconds).toBeGreaterThan(gw.lifecycle.preStop.sleep.seconds);
        expect(d.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(app.lifecycle.preStop.sleep.seconds);
      });
    } else {
      it('standalone: Portcullis alone in its pods', () => {
        expect(one(objs, 'Deployment').spec.template.spec.containers.map((c: any) => c.name)).toEqual(['portcullis']);
      });
    }
  });

  it('standalone example: Ingress, HPA, PDB, ServiceMonitor on an admin-only Service, secrets as env', () => {
    const file = EXAMPLES.find((f) => f.endsWith('values-standalone.yaml'))!;
    const objs = template([file]);
    const d = one(objs, 'Deployment');
    expect(d.spec.replicas).toBeUndefined(); // the HPA owns the count
    const hpa = one(objs, 'HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: d.metadata.name });
    expect(one(objs, 'PodDisruptionBudget').spec.selector.matchLabels).toEqual(d.spec.selector.matchLabels);
    const ing = one(objs, 'Ingress');
    expect(ing.spec.rules[0].http.paths[0].backend.service).toEqual({ name: d.metadata.name, port: { name: 'http' } });
    const sm = one(objs, 'ServiceMonitor');
    const adminSvc = find(objs, 'Service').find((s) => s.metadata.name.endsWith('-admin'))!;
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(adminSvc.metadata.labels![k]).toBe(v);
    const main = find(objs, 'Service').find((s) => !s.metadata.name.endsWith('-admin'))!;
    expect(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => main.metadata.labels![k] === v)).toBe(false);
    const env = d.spec.template.spec.containers[0].env;
    expect(env).toEqual(expect.arrayContaining([{ name: 'JWT_SECRET', valueFrom: { secretKeyRef: { name: 'edge-portcullis-secrets', key: 'JWT_SECRET' } } }]));
  });

  it('agrees with the image: the Dockerfile\'s user, exposed ports and policy path', () => {
    const { stages } = readDockerfile();
    const runtime = stages.at(-1)!;
    const [uid, gid] = runtime.steps.find((s) => s.keyword === 'USER')!.args[0]!.split(':').map(Number);
    const pod = one(template(), 'Deployment').spec.template.spec;
    expect(pod.securityContext.runAsUser).toBe(uid);
    expect(pod.securityContext.runAsGroup).toBe(gid ?? uid);
    const exposed = runtime.steps.filter((s) => s.keyword === 'EXPOSE').flatMap((s) => s.args.map(Number));
    for (const p of pod.containers[0].ports) expect(exposed).toContain(p.containerPort);
    const entry = execForm(runtime.steps.find((s) => s.keyword === 'ENTRYPOINT')!)!;
    expect(entry.at(0)).toBe('node');
    expect(entry.at(-1)).toBe('/app/bin/portcullis.js');
    expect(pod.containers[0].command).toBeUndefined(); // the image's ENTRYPOINT; the chart gives args only
    expect(pod.containers[0].args[0]).toBe('start');
  });

  it('the rendered sidecar policy runs: probes answer on the admin port, TLS reaches the app, plain HTTP redirects, SIGTERM drains', async () => {
    const file = EXAMPLES.find((f) => f.endsWith('values-sidecar.yaml'))!;
    const objs = template([file]);
    const pod = one(objs, 'Deployment').spec.template.spec;
    const gwContainer = pod.containers.find((c: any) => c.name === 'portcullis');
    const tlsMount = gwContainer.volumeMounts.find((m: any) => m.name === 'tls').mountPath as string;
    const app = createServer((req, res) => res.end(`app saw ${req.url}`));
    await new Promise<void>((res) => app.listen(0, '127.0.0.1', res));
    const appPort = (app.address() as AddressInfo).port;
    const certs = makeCerts();
    // As in the pod, except addresses (loopback, free ports) and where the TLS Secret's files are.
    const text = (one(objs, 'ConfigMap').data['policy.yaml'] as string)
      .replace(/0\.0\.0\.0:\d+/g, '127.0.0.1:0')
      .replaceAll(`${tlsMount}/tls.crt`, certs.cert)
      .replaceAll(`${tlsMount}/tls.key`, certs.key)
      .replace(/http:\/\/127\.0\.0\.1:3000\b/g, `http://127.0.0.1:${appPort}`);
    const gw = await startGateway(text, { env: { JWT_SECRET: randomBytes(32).toString('hex'), FRONTEND_ORIGIN: 'https://shop.example.com' } });
    try {
      expect((await fetch(`${gw.admin}${gwContainer.livenessProbe.httpGet.path}`)).status).toBe(200);
      expect((await fetch(`${gw.admin}${gwContainer.readinessProbe.httpGet.path}`)).status).toBe(200);
      const [plain, tls] = gw.urls;
      const redirect = await fetch(`${plain}/health`, { redirect: 'manual' });
      expect([301, 308]).toContain(redirect.status);
      expect(redirect.headers.get('location')).toMatch(/^https:\/\//);
      const get = (path: string) =>
        new Promise<{ status: number; body: string; hsts: string | undefined }>((res, rej) => {
          const req = httpsRequest(`${tls}${path}`, { ca: certs.caPem, servername: 'localhost' }, (r) => {
            let body = '';
            r.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => res({ status: r.statusCode!, body, hsts: r.headers['strict-transport-security'] as string | undefined }));
          });
          req.on('error', rej).end();
        });
      const health = await get('/health');
      expect(health.status).toBe(200);
      expect(health.body).toBe('app saw /health');
      expect(health.hsts).toContain('max-age=');
      expect((await get('/api/orders')).status).toBe(401); // every other route needs a token
    } finally {
      expect(await gw.stop()).toBe(0);
      app.close();
    }
  }, 60_000);

  it('TLS comes from a Secret mounted where the policy\'s TLS listener reads it; the plain listener only redirects', () => {
    const objs = template();
    const pod = one(objs, 'Deployment').spec.template.spec;
    const tls = pod.volumes.find((v: any) => v.name === 'tls');
    expect(tls.secret.secretName).toBe('portcullis-tls');
    const mount = pod.containers[0].volumeMounts.find((m: any) => m.name === 'tls');
    const policy = parseYaml(one(objs, 'ConfigMap').data['policy.yaml']);
    const https = policy.listeners.find((l: any) => l.tls);
    expect(https.tls).toEqual({ cert: `${mount.mountPath}/tls.crt`, key: `${mount.mountPath}/tls.key` });
    expect(policy.listeners.find((l: any) => !l.tls).redirect_to_https).toBe(true);
  });

  it('a policy change changes the checksum annotation (pods roll); the same values keep it', () => {
    const a = one(template(), 'Deployment').spec.template.metadata.annotations['checksum/policy'];
    const b = one(template(), 'Deployment').spec.template.metadata.annotations['checksum/policy'];
    const c = one(template([], ['policy.trusted_proxies[0]=10.0.0.0/8']), 'Deployment').spec.template.metadata.annotations['checksum/policy'];
    expect(a).toBe(b);
    expect(c).not.toBe(a);
  });

  it('templates the Prometheus rules and the Grafana dashboard from files/ when they exist and are enabled', () => {
    // The files belong to the observability work; a chart copy with stand-ins proves the templates.
    const copy = join(tempDir('portcullis-chart-'), 'portcullis');
    cpSync(CHART, copy, { recursive: true });
    mkdirSync(join(copy, 'files'), { recursive: true });
    if (!existsSync(join(CHART, 'files/prometheus-rules.yaml'))) {
      writeFileSync(join(copy, 'files/prometheus-rules.yaml'), 'groups:\n  - name: portcullis\n    rules:\n      - alert: PortcullisDown\n        expr: up{job="portcullis"} == 0\n        for: 5m\n');
    }
    if (!existsSync(join(CHART, 'files/grafana-dashboard.json'))) {
      writeFileSync(join(copy, 'files/grafana-dashboard.json'), JSON.stringify({ title: 'Portcullis', panels: [] }, null, 2));
    }
    const on = ['metrics.prometheusRule.enabled=true', 'metrics.grafanaDashboard.enabled=true'];
    const objs = template([], on, copy);
    validateAll(objs);
    expect(one(objs, 'PrometheusRule').spec.groups.length).toBeGreaterThan(0);
    const dash = find(objs, 'ConfigMap').find((c) => c.metadata.name.endsWith('-dashboard'))!;
    expect(dash.metadata.labels!.grafana_dashboard).toBe('1');
    expect(JSON.parse(dash.data['portcullis.json']).title).toBeTypeOf('string');
    // Off by default.
    const off = template([], [], copy);
    expect(find(off, 'PrometheusRule')).toHaveLength(0);
    expect(find(off, 'ConfigMap').filter((c) => c.metadata.name.endsWith('-dashboard'))).toHaveLength(0);
    rmSync(copy, { recursive: true, force: true });
  });

  it('refuses values that would deploy an insecure or broken gateway, naming the fix', () => {
    expect(templateError(['networkPolicy.enabled=false'])).toMatch(/admin port .* no authentication: enable networkPolicy, or set admin.protectedBy/);
    expect(templateError(['tls.enabled=false'])).toMatch(/production policy needs TLS.*trusted_proxies/);
    expect(templateError(['policy.listeners[0].address=0.0.0.0:1'])).toMatch(/\/policy/);
    expect(templateError(['mode=sidecar'])).toMatch(/app\/image/);
    expect(templateError(['replicas=3'])).toMatch(/additional properties 'replicas' not allowed/);
    expect(templateError(['mode=ingress'])).toMatch(/\/mode/);
    // A firewall instead of the NetworkPolicy is accepted, and the policy says so.
    const objs = template([], ['networkPolicy.enabled=false', 'admin.protectedBy=firewall']);
    expect(find(objs, 'NetworkPolicy')).toHaveLength(0);
    expect(parseYaml(one(objs, 'ConfigMap').data['policy.yaml']).admin.protected_by).toBe('firewall');
  });
});
