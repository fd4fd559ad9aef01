#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=8
// npm's bin entry: the CLI compiled to dist/ by `npm run build` (scripts/build.ts; `npm start` builds first).
// Tests and development may run the TypeScript directly instead: node src/cli/main.ts.
//
// The first line holds the gateway's runtime settings: the environment it needs before it starts and Node's
// flags. The Dockerfile's ENV and ENTRYPOINT and `npm start` repeat them (test/deploy/dockerfile.test.ts holds
// all three equal; scripts/gateway-runtime.ts reads them), and cluster workers inherit them.
// --max-semi-space-size=8: V8 otherwise grows its young generation to 64 MiB under load and keeps it when
// the load is gone (RSS 83 → 157 MiB after a passthrough load, 122 with the cap); scavenges at 8 MiB
// measured no slower. MALLOC_ARENA_MAX=2: glibc otherwise lets each of Node's threads (V8's compiler and
// GC helpers, libuv's pool) take a malloc arena of its own (up to 8 per core), whose freed memory stays
// resident after a load (full
// policy after 8 s of load: 100-102 → 93-96 MiB, fresh 79 MiB; throughput unchanged within noise).
// docs/architecture.md has the measurements.
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    process.stderr.write('portcullis: dist/ is missing; build it with `npm run build` (or run `node src/cli/main.ts`)\n');
    process.exit(1);
  }
  throw err;
}
