// Baseline: a bare node:http server answering the upstream's 100-byte body itself (no proxying). It is the
// ceiling for anything written on node:http on this machine: "passthrough vs raw node" says how much of it
// the gateway keeps, and its RSS is what "memory like a plain Node server" compares with.
// Plain JavaScript, like the gateway's dist/: loading a .ts file would load Node's type stripper too
// (about 15 MiB of RSS a plain server does not have).
// Usage: node bench/baselines/raw-node.mjs PORT BODY (bench/run.ts passes bench/body.ts' UPSTREAM_BODY)
import { createServer } from 'node:http';

const [port, body] = process.argv.slice(2);
const length = String(Buffer.byteLength(body));
createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': length });
  res.end(body);
}).listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
