// Raw HTTP/1.1 over a socket: for requests that well-behaved clients refuse to send.
import { connect } from 'node:net';

export function rawRequest(url: string, text: string, timeoutMs = 5_000): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (data += d));
    socket.on('end', () => resolve(data));
    socket.on('close', () => resolve(data));
    socket.on('error', (err) => (data ? resolve(data) : reject(err)));
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      resolve(data);
    });
    socket.write(text);
  });
}

export function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0);
}

export function reasonOf(response: string): string | undefined {
  const body = response.slice(response.indexOf('\r\n\r\n') + 4);
  try {
    return (JSON.parse(body) as { reason?: string }).reason;
  } catch {
    return undefined;
  }
}
