// Baseline: the plain `http-proxy` package (the design card's original choice), keep-alive agent on.
// Usage: node bench/baselines/http-proxy.ts PORT UPSTREAM_URL
import { createServer, Agent } from 'node:http';
import httpProxy from 'http-proxy';

const [port, target] = process.argv.slice(2);
const proxy = httpProxy.createProxyServer({ target, agent: new Agent({ keepAlive: true, maxSockets: 64 }), xfwd: true });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
createServer((req, res) => proxy.web(req, res)).listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
