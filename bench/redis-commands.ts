// Redis command counting for the rate-limit scenarios: INFO commandstats before and after a run, written
// to `<dir>/<scenario>.redis-commands.json` and printed. Divide by the run's request count (the results
// table) for commands per request. The counts are server-wide: other clients of the same Redis add to them.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';

function parse(info: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

export async function countRedisCommands(name: string, redisUrl: string, dir: string): Promise<() => Promise<void>> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  const before = parse(await client.info('commandstats'));
  return async () => {
    const after = parse(await client.info('commandstats'));
    await client.quit();
    const delta: Record<string, number> = {};
    for (const [cmd, calls] of Object.entries(after)) {
      const d = calls - (before[cmd] ?? 0);
      if (d > 0) delta[cmd] = d;
    }
    const total = Object.values(delta).reduce((a, b) => a + b, 0);
    writeFileSync(join(dir, `${name}.redis-commands.json`), JSON.stringify({ scenario: name, total, commands: delta }, null, 2));
    process.stderr.write(`bench: ${name}: Redis commands during the run: ${total} (${Object.entries(delta).map(([k, v]) => `${k}=${v}`).join(' ')}); divide by its request count\n`);
  };
}
