#!/usr/bin/env -S node --max-semi-space-size=8
// npm's bin entry: the CLI compiled to dist/ by `npm run build` (scripts/build.ts; `npm start` builds first).
// Tests and development may run the TypeScript directly instead: node src/cli/main.ts.
//
// The Node flags on the first line are the gateway's runtime settings; the Dockerfile's ENTRYPOINT and
// `npm start` repeat them (test/deploy/dockerfile.test.ts holds all three equal), and cluster workers
// inherit them. --max-semi-space-size=8: V8 otherwise grows its young generation to 64 MiB under load and
// keeps it when the load is gone (RSS 83 → 157 MiB after a passthrough load, 122 with the cap); scavenges
// at 8 MiB measured no slower (docs/architecture.md).
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    process.stderr.write('portcullis: dist/ is missing; build it with `npm run build` (or run `node src/cli/main.ts`)\n');
    process.exit(1);
  }
  throw err;
}
