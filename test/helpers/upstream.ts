// A real upstream HTTP server that records exactly what it received, so attack tests can assert that a
// forbidden request never arrived (or arrived normalized).
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export interface RecordingUpstream {
  server: Server;
  url: string;
  port: number;
  received: Received[];
  /** Replace the default answer (200 JSON echo of method and url). */
  handler: ((req: IncomingMessage, res: ServerResponse, body: Buffer) => void) | null;
  close(): Promise<void>;
}

export async function startUpstream(host = '127.0.0.1'): Promise<RecordingUpstream> {
  const received: Received[] = [];
  const up: RecordingUpstream = {
    server: null as unknown as Server,
    url: '',
    port: 0,
    received,
    handler: null,
    close: () => new Promise((res) => {
      up.server.close(() => res());
      for (const s of sockets) s.destroy(); // upgraded sockets too, which closeAllConnections misses
    }),
  };
  up.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
      if (up.handler) return up.handler(req, res, body);
      const text = JSON.stringify({ method: req.method, url: req.url, body: body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'x-powered-by': 'test-upstream', server: 'test-upstream/1.0' });
      res.end(text);
    });
  });
  const sockets = new Set<Socket>();
  up.server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((res) => up.server.listen(0, host, () => res()));
  up.port = (up.server.address() as AddressInfo).port;
  up.url = `http://${host}:${up.port}`;
  return up;
}
