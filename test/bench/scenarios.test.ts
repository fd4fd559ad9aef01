// Every benchmark scenario's policy is a valid policy (the bench is not run in CI; this keeps it runnable).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { passthroughPolicy } from '../../bench/policy.ts';
import type { Scenario } from '../../bench/scenarios/types.ts';
import { problems } from '../helpers/filters.ts';
import { ROOT, tempDir } from '../helpers/gateway.ts';

const ctx = { upstreamUrl: 'http://127.0.0.1:3000', redisUrl: 'redis://127.0.0.1:6379', dir: tempDir('portcullis-bench-test-') };
const fill = (policy: string) => policy.replaceAll('${LISTEN}', '127.0.0.1:0').replaceAll('${ADMIN}', '127.0.0.1:0');

const files = readdirSync(join(ROOT, 'bench/scenarios')).filter((f) => f.endsWith('.ts') && f !== 'types.ts');

describe('bench scenarios', () => {
  it('the passthrough reference validates', () => {
    expect(problems(fill(passthroughPolicy(ctx.upstreamUrl)))).toEqual([]);
    expect(problems(fill(passthroughPolicy(ctx.upstreamUrl, { top: 'workers: 2' })))).toEqual([]);
  });

  it.each(files)('%s has a valid policy', async (file) => {
    const { scenario } = (await import(join(ROOT, 'bench/scenarios', file))) as { scenario: Scenario };
    expect(problems(fill(scenario.policy(ctx)), { ...process.env, ...scenario.env?.(ctx) })).toEqual([]);
  });
});
