// The container image without a Docker daemon: the Dockerfile is linted with a real parser, then its
// stages are replayed: the deps stage's production install runs (from the npm cache), the build stage
// compiles src/ to dist/ with the image's own build script, the runtime stage's files go into a fresh
// directory tree laid out like the image, and the gateway starts as the image's non-root user with the
// image's default policy, answers through the proxy, writes nothing, and exits 0 on SIGTERM.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, lstatSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { gatewayRuntime } from '../../scripts/gateway-runtime.ts';
import { ROOT } from '../helpers/gateway.ts';
import { dockerignore, execForm, readDockerfile, type Stage } from './docker.ts';

const { stages, all } = readDockerfile();
const runtime = stages.at(-1)!;
const deps = stages.find((s) => s.name === 'deps');
const build = stages.find((s) => s.name === 'build');
const steps = (stage: Stage, keyword: string) => stage.steps.filter((s) => s.keyword === keyword);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };

describe('Dockerfile lint', () => {
  it('is multi-stage on a Node slim base pinned by full version, the Node major of package.json engines', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const major = /\d+/.exec(pkg.engines.node)![0];
    for (const s of stages) {
      expect(s.image).toBe('node');
      expect(s.tag, `FROM node:${s.tag}`).toMatch(new RegExp(`^${major}\\.\\d+\\.\\d+(-[a-z]+)?-slim$`));
      if (s.digest) expect(s.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
    // Both stages on the same base: the node_modules built in one run in the other.
    expect(new Set(stages.map((s) => `${s.tag}@${s.digest}`)).size).toBe(1);
    expect(runtime.name).toBe('runtime');
  });

  it('installs production dependencies only, from the lockfile, in the deps stage', () => {
    expect(deps).toBeDefined();
    const run = steps(deps!, 'RUN').map((s) => s.content).join(' && ');
    expect(run).toMatch(/npm ci\b/);
    expect(run).toMatch(/--omit=dev\b/);
    expect(steps(runtime, 'RUN')).toHaveLength(0); // nothing runs in the runtime stage: no package manager work there
    const fromStages = steps(runtime, 'COPY').filter((s) => s.flags.from !== undefined);
    // From the build stage only the compiled code: its node_modules (dev dependencies too) stay behind.
    expect(fromStages.map((s) => [s.flags.from, s.args[0]])).toEqual([['deps', '/app/node_modules'], ['build', '/app/dist']]);
  });

  it('compiles the gateway in a build stage with the build script npm start uses, and ships no TypeScript', () => {
    expect(build).toBeDefined();
    const run = steps(build!, 'RUN').map((s) => s.content).join(' && ');
    expect(run).toMatch(/npm ci\b[^&]*--ignore-scripts/);
    expect(run).toContain('node scripts/build.ts');
    const pkgScripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(pkgScripts.build).toBe('node scripts/build.ts');
    expect(steps(runtime, 'COPY').filter((s) => s.flags.from === undefined).flatMap((s) => s.args.slice(0, -1))).not.toContain('src');
  });

  it('runs as a non-root numeric user, fetches nothing over the network, and uses exec form for its process', () => {
    const users = steps(runtime, 'USER');
    expect(users).toHaveLength(1);
    const [uid, gid] = users[0]!.args[0]!.split(':');
    expect(uid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThan(0);
    if (gid !== undefined) expect(Number(gid)).toBeGreaterThan(0);
    expect(all.filter((s) => s.keyword === 'ADD')).toHaveLength(0);
    expect(all.filter((s) => s.keyword === 'RUN' && /\b(curl|wget)\b/.test(s.content))).toHaveLength(0);
    const entry = execForm(steps(runtime, 'ENTRYPOINT')[0]!);
    expect(entry).toEqual(['node', ...gatewayRuntime(ROOT).flags, '/app/bin/portcullis.js']); // node is PID 1 and gets SIGTERM itself
    expect(execForm(steps(runtime, 'CMD')[0]!)).toEqual(['start']);
    const stop = steps(runtime, 'STOPSIGNAL');
    if (stop.length) expect(stop[0]!.args[0]).toBe('SIGTERM');
  });

  it('gives the gateway its runtime environment and Node flags where it starts it: bin/portcullis.js\' first line, npm start, the image', () => {
    const { env, flags } = gatewayRuntime(ROOT);
    expect(flags.length).toBeGreaterThan(0);
    expect(Object.keys(env).length).toBeGreaterThan(0);
    const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    const assignments = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    expect(scripts.start).toBe([...assignments, 'node', ...flags, 'bin/portcullis.js', 'start', '--demo-upstream'].join(' '));
    const imageEnv = Object.fromEntries(steps(runtime, 'ENV').flatMap((s) => s.args.map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)])));
    for (const [k, v] of Object.entries(env)) expect(imageEnv[k], `ENV ${k}`).toBe(v);
    // The flags are real Node flags (a typo would stop the process before it reads its policy).
    const r = spawnSync(process.execPath, [...flags, '-e', 'process.exit(0)'], { encoding: 'utf8', env: { ...process.env, ...env } });
    expect(r.status, r.stderr).toBe(0);
    // The first line as the kernel runs it: env gets "-S <the rest>" as one argument and splits it (here
    // with this Node 24 in place of the `node` on PATH).
    const shebangArgument = readFileSync(join(ROOT, 'bin/portcullis.js'), 'utf8').split('\n')[0]!.slice('#!/usr/bin/env '.length);
    const viaEnv = spawnSync('/usr/bin/env', [shebangArgument.replace(' node ', ` ${process.execPath} `), '-p', 'JSON.stringify([process.env, process.execArgv])'], { encoding: 'utf8' });
    expect(viaEnv.status, viaEnv.stderr).toBe(0);
    const [seenEnv, seenFlags] = JSON.parse(viaEnv.stdout) as [Record<string, string>, string[]];
    expect(seenEnv).toMatchObject(env);
    expect(seenFlags.slice(0, flags.length)).toEqual(flags);
  });

  it('exposes the default policy\'s listener and the admin port, and documents the policy path', () => {
    const exposed = steps(runtime, 'EXPOSE').flatMap((s) => s.args.map((a) => Number(a.split('/')[0])));
    const policy = parseYaml(readFileSync(join(ROOT, 'config/container.yaml'), 'utf8')) as { listeners: { address: string }[]; admin: { address: string } };
    for (const l of policy.listeners) expect(exposed).toContain(Number(l.address.split(':').at(-1)));
    expect(exposed).toContain(9901);
    expect(exposed).toContain(8443);
    const env = Object.fromEntries(steps(runtime, 'ENV').flatMap((s) => s.args.map((a) => a.split('=') as [string, string])));
    expect(env.PORTCULLIS_CONFIG).toBe('/etc/portcullis/policy.yaml');
    expect(steps(runtime, 'COPY').some((s) => s.args.at(-1) === env.PORTCULLIS_CONFIG)).toBe(true);
  });

  it('has an exec-form HEALTHCHECK on the admin /healthz that needs no curl', () => {
    const hc = steps(runtime, 'HEALTHCHECK');
    expect(hc).toHaveLength(1);
    const cmd = execForm(hc[0]!);
    expect(cmd?.[0]).toBe('node');
    expect(cmd?.join(' ')).toContain('127.0.0.1:9901/healthz');
  });

  it('.dockerignore admits exactly what the Dockerfile copies and keeps the rest out of the build context', () => {
    const ignored = dockerignore();
    const sources = all.filter((s) => s.keyword === 'COPY' && s.flags.from === undefined).flatMap((s) => s.args.slice(0, -1));
    for (const src of sources) {
      expect(existsSync(join(ROOT, src)), src).toBe(true);
      expect(ignored(src), `${src} is excluded by .dockerignore`).toBe(false);
    }
    for (const p of ['.git', 'node_modules', 'node_modules/yaml/package.json', 'test/e2e/forwarding.test.ts', '.tools/helm/helm', 'helm/portcullis/values.yaml', 'config/portcullis.yaml', '.env', 'bench/run.ts']) {
      expect(ignored(p), `${p} should be excluded`).toBe(true);
    }
    expect(ignored('src/cli/main.ts')).toBe(false);
  });
});

/** A free TCP port on loopback (for the demo upstream, whose address the default policy names). */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/**
 * One command of a RUN step. The production install is run for real (what it installs ships); the build
 * stage's full install is the repository's own `npm ci` of the same lockfile, linked rather than repeated
 * (only dist/ leaves that stage); `node …` runs with this Node 24, as the image's would.
 */
function replayRun(command: string, cwd: string, stage: string): void {
  const [program, ...args] = command.split(/\s+/);
  if (program === 'npm' && args[0] === 'cache') return; // the npm cache is shared with this machine
  if (program === 'npm' && args[0] === 'ci') {
    if (!args.includes('--omit=dev')) {
      symlinkSync(join(ROOT, 'node_modules'), join(cwd, 'node_modules'));
      return;
    }
    const r = spawnSync('npm', [...args, '--prefer-offline'], { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
    if (r.status !== 0) throw new Error(`npm ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
    return;
  }
  if (program === 'node') {
    const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${command} failed:\n${r.stdout}\n${r.stderr}`);
    return;
  }
  throw new Error(`the replay does not know how to run "${command}" (stage ${stage}); teach replayRun`);
}

/** Every file under dir with its size and mtime, to prove the running gateway wrote nothing. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const st = lstatSync(p);
        out.set(p, `${st.size}:${st.mtimeMs}`);
      }
    }
  };
  walk(dir);
  return out;
}

describe('Dockerfile runtime stage, replayed without a daemon', () => {
  let root = '';
  let env: Record<string, string> = {};
  let argv: string[] = [];
  let workdir = '/';
  const user = steps(runtime, 'USER')[0]!.args[0]!;
  const [uid, gid = uid] = user.split(':');
  const inImage = (p: string) => join(root, p);

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'portcullis-image-'));
    chmodSync(root, 0o755);
    // deps and build stages, each in its own directory: COPYs from the context, then each RUN command.
    const stageRoot = join(root, '.stages');
    const stageDirs = new Map<string, string>();
    for (const stage of [deps!, build!]) {
      const top = join(stageRoot, stage.name!);
      stageDirs.set(stage.name!, top);
      let cwd = top;
      for (const s of stage.steps) {
        if (s.keyword === 'WORKDIR') cwd = join(top, s.args[0]!);
        if (s.keyword === 'COPY') {
          mkdirSync(cwd, { recursive: true });
          const dest = s.args.at(-1)!;
          for (const src of s.args.slice(0, -1)) {
            const to = dest === './' ? join(cwd, posix.basename(src)) : dest.endsWith('/') ? join(cwd, dest, posix.basename(src)) : join(cwd, dest);
            mkdirSync(dirname(to), { recursive: true });
            cpSync(join(ROOT, src), to, { recursive: true });
          }
        }
        if (s.keyword === 'RUN') for (const command of s.content.split('&&').map((c) => c.trim())) replayRun(command, cwd, stage.name!);
      }
    }
    // runtime stage: ENV, WORKDIR, COPY (from the context or from the deps stage), USER, ENTRYPOINT + CMD.
    for (const s of runtime.steps) {
      if (s.keyword === 'ENV') for (const a of s.args) env[a.slice(0, a.indexOf('='))] = a.slice(a.indexOf('=') + 1);
      if (s.keyword === 'WORKDIR') workdir = posix.resolve(workdir, s.args[0]!);
      if (s.keyword === 'COPY') {
        const dest = s.args.at(-1)!;
        const target = inImage(posix.resolve(workdir, dest));
        for (const src of s.args.slice(0, -1)) {
          const from = s.flags.from !== undefined ? join(stageDirs.get(s.flags.from)!, src) : join(ROOT, src);
          const to = dest.endsWith('/') ? join(target, posix.basename(src)) : target;
          mkdirSync(dirname(to), { recursive: true });
          cpSync(from, to, { recursive: true, verbatimSymlinks: true });
        }
      }
    }
    rmSync(stageRoot, { recursive: true, force: true });
    argv = [...execForm(steps(runtime, 'ENTRYPOINT')[0]!)!, ...execForm(steps(runtime, 'CMD')[0]!)!];
    // Everything root-owned and not writable by the gateway's user, as COPY leaves it.
    execFileSync('chmod', ['-R', 'go-w,a+rX', root]);
  }, 240_000);

  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('has production dependencies only: no devDependency in node_modules', () => {
    const nm = inImage('/app/node_modules');
    expect(existsSync(join(nm, 'yaml/package.json'))).toBe(true);
    expect(existsSync(join(nm, 'undici/package.json'))).toBe(true);
    for (const dev of ['node', 'vitest', 'typescript', 'dockerfile-ast', 'kubernetes-models', '@aws-cdk']) expect(existsSync(join(nm, dev)), dev).toBe(false);
  });

  it('carries the compiled gateway with the dashboard\'s assets, and no TypeScript sources', () => {
    expect(existsSync(inImage('/app/dist/cli/main.js'))).toBe(true);
    expect(existsSync(inImage('/app/dist/server/dashboard/assets/index.html'))).toBe(true);
    expect(existsSync(inImage('/app/src'))).toBe(false);
  });

  it('starts as the non-root user with the default policy, answers through the proxy, writes nothing, drains on SIGTERM', async () => {
    // The image's node is Node 24; here the repo's Node 24 (with --omit=dev the `node` package is absent).
    const [entryNode, ...entryArgs] = argv;
    expect(entryNode).toBe('node');
    const scriptAt = entryArgs.findIndex((a) => !a.startsWith('--'));
    const flags = entryArgs.slice(0, scriptAt);
    const [script, ...rest] = entryArgs.slice(scriptAt);
    // The default policy as the image has it, with ports free on this shared machine.
    const upstreamPort = await freePort();
    const policyPath = inImage(env.PORTCULLIS_CONFIG!);
    const policy = readFileSync(policyPath, 'utf8');
    expect(policy).toMatch(/mode: development/);
    writeFileSync(policyPath, policy.replaceAll('0.0.0.0:8080', '127.0.0.1:0').replaceAll('127.0.0.1:9901', '127.0.0.1:0').replaceAll('127.0.0.1:3000', `127.0.0.1:${upstreamPort}`));
    const before = snapshot(root);

    const asUser = process.getuid?.() === 0 ? ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--'] : [];
    const command = [...asUser, process.execPath, ...flags, inImage(script!), ...rest, '--demo-upstream', `127.0.0.1:${upstreamPort}`];
    const proc = spawn(command[0]!, command.slice(1), {
      cwd: inImage(workdir),
      // No writable home or temp dir: anything that tried to write would fail (the image's root is read-only).
      env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', TMPDIR: inImage('/nonexistent-tmp'), ...env, PORTCULLIS_CONFIG: policyPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
    try {
      await new Promise<void>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no start in time\n${out}\n${err}`)), 20_000);
        proc.stdout.on('data', () => /portcullis policy /.test(out) && (clearTimeout(timer), res()));
        void exited.then((c) => (clearTimeout(timer), rej(new Error(`exited ${c}\n${out}\n${err}`))));
      });
      const status = readFileSync(`/proc/${proc.pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)/m.exec(status)![1]).toBe(uid);
      expect(/^Gid:\s+(\d+)/m.exec(status)![1]).toBe(gid);

      const url = /portcullis listening on (\S+)/.exec(out)![1]!;
      const admin = /portcullis admin on (\S+)/.exec(out)![1]!;
      const res = await fetch(`${url}/hello?x=1`);
      expect(res.status, `${await res.clone().text()}\n${err}`).toBe(200);
      const body = (await res.json()) as { service: string; url: string };
      expect(body.service).toBe('portcullis demo upstream');
      expect(body.url).toBe('/hello?x=1');
      expect(res.headers.get('x-request-id')).toBeTruthy();

      // The image's HEALTHCHECK command, pointed at this admin port.
      const hc = execForm(steps(runtime, 'HEALTHCHECK')[0]!)!;
      const check = spawnSync(process.execPath, hc.slice(1).map((a) => a.replace('127.0.0.1:9901', admin.replace(/^https?:\/\//, ''))), { encoding: 'utf8' });
      expect(check.status).toBe(0);
      expect(err).toContain('DEVELOPMENT MODE');
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(snapshot(root)).toEqual(before);
  }, 60_000);
});
