#!/usr/bin/env node
// portcullis CLI: argument parsing only; the work lives in src/config and src/server.
import cluster from 'node:cluster';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PolicyError } from '../config/errors.ts';
import { explain, parseHeaderArgs } from './explain.ts';
import { compileCollecting, validate } from './validate.ts';

const USAGE = `usage:
  portcullis start [--config FILE] [--demo-upstream [ADDRESS]]
                                      run the gateway (FILE defaults to $PORTCULLIS_CONFIG or config/portcullis.yaml)
  portcullis validate FILE [--production]
                                      check a policy; --production also applies the production checklist
  portcullis explain FILE [METHOD URL [-H 'Name: value']... [--client-ip IP]]
                                      show the compiled routes, or the route, filter chain and each filter's
                                      decision for one request (no upstream is called)
  portcullis test POLICY CASES.yaml   run policy test cases; prints each failure with its line, exit 1 on any
  portcullis token (--secret VALUE | --key FILE) [--alg ALG] [--kid KID] [--sub SUB] [--roles a,b]
                   [--scope "a b"] [--iss ISS] [--aud AUD] [--ttl 15m | --no-exp] [--claim NAME=VALUE]...
                                      mint a signed JWT for development and tests
  portcullis secrets generate [--name NAME]... [--k8s SECRET_NAME [--namespace NS]] [--apply]
                                      print fresh 256-bit secrets (default JWT_SECRET), a Kubernetes Secret, or apply it
  portcullis secrets generate --api-key SUBJECT [--id ID] [--role R]... [--scope S]...
                                      print a new API key once, and the line (its hash) for the key file
`;

function fail(message: string): never {
  process.stderr.write(message.endsWith('\n') ? message : message + '\n');
  process.exit(1);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { values } = parseArgs({
        args: normalizeOptionalValue(rest, '--demo-upstream', '127.0.0.1:3000'),
        options: { config: { type: 'string', short: 'c' }, 'demo-upstream': { type: 'string' } },
        strict: true,
      });
      const file = values.config ?? process.env.PORTCULLIS_CONFIG ?? 'config/portcullis.yaml';
      if (values['demo-upstream'] !== undefined && cluster.isPrimary) {
        const { startDemoUpstream } = await import('../server/demo-upstream.ts');
        await startDemoUpstream(values['demo-upstream']);
        process.stdout.write(`portcullis demo upstream on http://${values['demo-upstream']}\n`);
      }
      const { start } = await import('../server/run.ts');
      try {
        await start({ configFile: resolve(file) });
      } catch (err) {
        // Name every problem at once, missing secrets and the rest together (see validate.ts).
        if (err instanceof PolicyError) await compileCollecting(resolve(file), false).close();
        throw err;
      }
      return;
    }
    case 'validate': {
      const { values, positionals } = parseArgs({ args: rest, options: { production: { type: 'boolean' } }, allowPositionals: true, strict: true });
      if (positionals.length !== 1) fail(USAGE);
      const result = validate(positionals[0]!, values.production === true);
      process.stdout.write(result.output);
      process.exit(result.ok ? 0 : 1);
      return;
    }
    case 'explain': {
      const { values, positionals } = parseArgs({ args: rest, options: { header: { type: 'string', short: 'H', multiple: true }, 'client-ip': { type: 'string' } }, allowPositionals: true, strict: true });
      if (positionals.length !== 1 && positionals.length !== 3) fail(USAGE);
      let headers: Record<string, string>;
      try {
        headers = parseHeaderArgs(values.header ?? []);
      } catch (err) {
        fail(`${(err as Error).message}\n\n${USAGE}`);
      }
      const out = await explain(positionals[0]!, positionals[1], positionals[2], headers, values['client-ip']);
      process.stdout.write(out);
      return;
    }
    case 'test': {
      const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true });
      if (positionals.length !== 2) fail(USAGE);
      const { runPolicyTests } = await import('./policy-test.ts');
      const result = await runPolicyTests(positionals[0]!, positionals[1]!);
      process.stdout.write(result.output);
      process.exit(result.ok ? 0 : 1);
      return;
    }
    case 'token': {
      const { values } = parseArgs({
        args: rest,
        options: {
          secret: { type: 'string' }, 'secret-encoding': { type: 'string' }, key: { type: 'string' }, alg: { type: 'string' }, kid: { type: 'string' },
          sub: { type: 'string' }, roles: { type: 'string' }, scope: { type: 'string' }, iss: { type: 'string' }, aud: { type: 'string' },
          ttl: { type: 'string' }, claim: { type: 'string', multiple: true }, 'no-exp': { type: 'boolean' },
        },
        strict: true,
      });
      const { tokenCommand } = await import('./token.ts');
      process.stdout.write(await tokenCommand(values));
      return;
    }
    case 'secrets': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { name: { type: 'string', multiple: true }, k8s: { type: 'string' }, namespace: { type: 'string' }, apply: { type: 'boolean' }, 'api-key': { type: 'string' }, id: { type: 'string' }, role: { type: 'string', multiple: true }, scope: { type: 'string', multiple: true } },
        allowPositionals: true,
        strict: true,
      });
      const { secretsCommand } = await import('./secrets.ts');
      process.stdout.write(await secretsCommand(positionals[0], values));
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      fail(`unknown command "${command}"\n\n${USAGE}`);
  }
}

/** `--demo-upstream` may stand alone (default address) or take a value. */
function normalizeOptionalValue(args: string[], flag: string, fallback: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    out.push(args[i]!);
    if (args[i] === flag && (i + 1 >= args.length || args[i + 1]!.startsWith('-'))) out.push(fallback);
  }
  return out;
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof PolicyError) fail(err.message);
  if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) fail(`${err.message}\n\n${USAGE}`);
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'EADDRINUSE' || e?.code === 'EACCES') fail(`cannot listen: ${e.message}`);
  fail(`portcullis: ${err instanceof Error ? err.message : String(err)}`);
});
