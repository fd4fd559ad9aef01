// The bundled demo upstream for `npm start`: answers every request with a JSON echo of what it received,
// so a first `curl` through the gateway shows exactly what the gateway forwarded.
import type { Server } from 'node:http';
import { createServer } from '../proxy/node-http.ts';
import { splitAddress } from './listeners.ts';

export async function startDemoUpstream(address: string): Promise<Server> {
  const server = createServer((req, res) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => (size += chunk.length));
    req.on('end', () => {
      const body = JSON.stringify({
        service: 'portcullis demo upstream',
        method: req.method,
        url: req.url,
        headers: req.headers,
        body_bytes: size,
      }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  const { host, port } = splitAddress(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
