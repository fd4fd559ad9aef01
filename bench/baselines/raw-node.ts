// Baseline: a bare node:http server answering the upstream's 100-byte body itself (no proxying). It is the
// ceiling for anything written on node:http on this machine: "passthrough vs raw node" says how much of it
// the gateway keeps.
// Usage: node bench/baselines/raw-node.ts PORT
import { createServer } from 'node:http';
import { UPSTREAM_BODY } from '../body.ts';

const [port] = process.argv.slice(2);
const length = String(Buffer.byteLength(UPSTREAM_BODY));
createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': length });
  res.end(UPSTREAM_BODY);
}).listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
