// The gateway's runtime settings, read from bin/portcullis.js' first line
// (`#!/usr/bin/env -S [NAME=VALUE ...] node [--flag ...]`): the environment the process needs set before it
// starts (glibc reads its malloc settings at the first allocation) and Node's flags. `npm start` and the
// image's ENV + ENTRYPOINT repeat them (test/deploy/dockerfile.test.ts); the bench starts the gateway with them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface GatewayRuntime {
  env: Record<string, string>;
  flags: string[];
}

const SHEBANG = /^#!\/usr\/bin\/env -S((?: [A-Z_][A-Z0-9_]*=\S+)*) node((?: --[a-z0-9-]+(?:=\S+)?)*)$/;

export function gatewayRuntime(root: string): GatewayRuntime {
  const line = readFileSync(join(root, 'bin/portcullis.js'), 'utf8').split('\n')[0]!;
  const m = SHEBANG.exec(line);
  if (!m) throw new Error(`bin/portcullis.js: first line is not "#!/usr/bin/env -S [NAME=VALUE ...] node [--flag ...]": ${line}`);
  const words = (s: string) => s.split(' ').filter((w) => w !== '');
  const env = Object.fromEntries(words(m[1]!).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
  return { env, flags: words(m[2]!) };
}
