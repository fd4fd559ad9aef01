// src/proxy/undici.ts loads undici's pool and connector from their own files (to keep the rest of undici
// out of memory). These must stay the very classes undici's index exports: an undici upgrade that moved
// them fails here, not in production.
import { spawnSync } from 'node:child_process';
import * as whole from 'undici';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/gateway.ts';
import { buildConnector, Pool, undici } from '../../src/proxy/undici.ts';

describe('undici, in two parts', () => {
  it('exports undici\'s own Pool and buildConnector', () => {
    expect(Pool).toBe(whole.Pool);
    expect(buildConnector).toBe(whole.buildConnector);
    expect(undici().Agent).toBe(whole.Agent);
  });

  it('does not load the rest of undici with the pool', () => {
    const script = `import('./src/proxy/undici.ts').then(() => {
      const loaded = Object.keys(require.cache).filter((k) => k.includes('/node_modules/undici/'));
      console.log(JSON.stringify({ index: loaded.some((k) => k.endsWith('/undici/index.js')), fetch: loaded.some((k) => k.includes('/lib/web/fetch/')) }));
    })`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ index: false, fetch: false });
  });
});
