// Listeners: plain HTTP/1.1, TLS with ALPN (h2 + http/1.1 on one port), and redirect-only. Certificates
// are re-read when their files change. Malformed requests that never reach the handler (Node's parser
// refused them) still get a problem+json answer with a precise reason.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { IncomingMessage, Server } from 'node:http';
import { constants as http2constants, createSecureServer, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { constants as cryptoConstants, randomUUID } from 'node:crypto';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { Limits, Listener } from '../policy/compile.ts';
import { addAnswerHeaders, answerHeaderLines, problemBody } from '../proxy/answer.ts';
import { guardChunkedBody } from '../proxy/chunked.ts';
import { markClientCertSocket, type ClientCertSettings } from '../proxy/client-cert.ts';
import { createServer as createHttpServer, ServerResponse, STATUS_CODES } from '../proxy/node-http.ts';
import { normalizeTarget } from '../proxy/normalize.ts';
import { wantsWebSocket } from '../proxy/websocket.ts';
import type { Gateway } from './gateway.ts';
import { tlsContextOptions } from './tls-profiles.ts';
import type { Logger } from 'pino';

export type AnyServer = Server | HttpsServer | Http2SecureServer;

export interface RunningListener {
  readonly config: Listener;
  readonly server: AnyServer;
  /** Bound address as `host:port` (the port is real even when 0 was asked). */
  readonly address: string;
  readonly url: string;
  /** Stop accepting; idle keep-alive connections are closed, busy ones finish. */
  stopAccepting(): Promise<void>;
  /** Destroy every connection still open. */
  destroy(): void;
}

export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  return { host, port: Number(address.slice(colon + 1)) };
}

/** Reasons for requests Node's HTTP parser refused before any handler ran. */
function parserReason(code: string | undefined): { status: number; reason: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, reason: 'header_too_large' };
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
      return { status: 400, reason: 'ambiguous_framing' };
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return { status: 400, reason: 'invalid_transfer_encoding' };
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 400, reason: 'invalid_chunk' };
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
    case 'HPE_INVALID_EOF_STATE':
      return { status: 400, reason: 'invalid_header' };
    case 'HPE_INVALID_METHOD':
      return { status: 400, reason: 'invalid_method' };
    case 'HPE_INVALID_URL':
      return { status: 400, reason: 'invalid_request_target' };
    case 'HPE_INVALID_VERSION':
      return { status: 505, reason: 'http_version_not_supported' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, reason: 'request_timeout' };
    default:
      return { status: 400, reason: 'bad_request' };
  }
}

/** A problem answer written straight to the socket (the parser refused the head, so no response object). */
function rawProblem(socket: Duplex, status: number, reason: string, https: boolean, extra = ''): void {
  const id = randomUUID();
  const body = problemBody(status, reason, id);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Bad Request'}\r\n${extra}` +
      `Content-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n` +
      `X-Request-ID: ${id}\r\n${answerHeaderLines(https)}Connection: close\r\n\r\n${body}`,
  );
}

function clientErrorAnswer(https: boolean): (err: Error & { code?: string }, socket: Duplex) => void {
  return (err, socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const inProgress = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (inProgress) {
      // The parser failed behind a request already being answered (a refusal of its body, typically).
      // Destroying now would discard that answer or, with the client's bytes unread, send a TCP RST that
      // makes the client drop it: let it finish, close our side, and destroy shortly after.
      const linger = setTimeout(() => socket.destroy(), 1_000);
      linger.unref();
      socket.once('close', () => clearTimeout(linger));
      if (inProgress.writableFinished) socket.end();
      else inProgress.once('finish', () => socket.end());
      return;
    }
    const { status, reason } = parserReason(err.code);
    rawProblem(socket, status, reason, https);
  };
}

function tooManyHeaders(req: IncomingMessage, max: number): boolean {
  return req.rawHeaders.length > max * 2;
}

type ListenerTls = NonNullable<Listener['tls']>;

interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  /** Client CAs and revocation lists (mutual TLS), when configured. */
  ca?: Buffer;
  crl?: Buffer;
}

function readTls(tls: ListenerTls): TlsFiles {
  const files: TlsFiles = { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
  if (tls.client_ca !== undefined) files.ca = readFileSync(tls.client_ca);
  if (tls.crl !== undefined) files.crl = readFileSync(tls.crl);
  return files;
}

const same = (a: Buffer | undefined, b: Buffer | undefined) => (a === undefined ? b === undefined : b !== undefined && a.equals(b));

/**
 * Everything a secure context of the listener is made with, at start and on each reload (setSecureContext
 * replaces the whole context). Client certificates: `ca` is what they must chain to; with `crl` Node sets
 * OpenSSL's CRL checks for the chain, so a revoked certificate fails the handshake's verification
 * (CERT_REVOKED). On those listeners renegotiation is refused (SSL_OP_NO_RENEGOTIATION): a client
 * certificate is only ever asked for in the first handshake, never by renegotiating into one.
 */
function secureContextOf(files: TlsFiles, tls: ListenerTls): SecureContextOptions {
  const options: SecureContextOptions = { cert: files.cert, key: files.key, ...tlsContextOptions(tls) };
  if (files.ca !== undefined) {
    options.ca = files.ca;
    options.secureOptions = cryptoConstants.SSL_OP_NO_RENEGOTIATION;
  }
  if (files.crl !== undefined) options.crl = files.crl;
  return options;
}

/** Server options for client certificates: asked for when client_ca is set, enforced at the handshake with `require`. */
function clientCertOptions(tls: ListenerTls): { requestCert: boolean; rejectUnauthorized: boolean } {
  if (tls.client_ca === undefined) return { requestCert: false, rejectUnauthorized: false };
  return { requestCert: true, rejectUnauthorized: tls.client_auth === 'require' };
}

/**
 * Stream resets a client may send: a token bucket per connection (`limits.http2_reset_burst`, refilled at
 * `limits.http2_resets_per_second`). Past it the connection gets GOAWAY ENHANCE_YOUR_CALM and is closed:
 * opening and resetting streams costs the client one frame each and the gateway a request each
 * (CVE-2023-44487, "rapid reset"). Each reset stream has already freed its upstream slot (forwarder.ts).
 */
function limitResets(session: ServerHttp2Session, limits: Limits, log: Logger): void {
  const burst = limits.http2_reset_burst;
  const perMs = limits.http2_resets_per_second / 1000;
  let tokens = burst;
  let last = performance.now();
  session.on('stream', (stream: ServerHttp2Stream) => {
    stream.once('aborted', () => {
      const now = performance.now();
      tokens = Math.min(burst, tokens + (now - last) * perMs);
      last = now;
      if (tokens >= 1) {
        tokens--;
        return;
      }
      if (session.destroyed) return;
      log.warn({ remote: session.socket?.remoteAddress, burst, per_second: limits.http2_resets_per_second }, 'HTTP/2 client reset streams faster than allowed; connection closed (ENHANCE_YOUR_CALM)');
      session.goaway(http2constants.NGHTTP2_ENHANCE_YOUR_CALM);
      // Let the GOAWAY go out, then drop whatever else the client queued.
      setImmediate(() => session.destroy());
    });
  });
}

/**
 * Whether a cluster worker binds its own listening socket with SO_REUSEPORT, so the kernel spreads
 * connections over the workers and the primary does no per-connection work. Without it (another
 * platform, or port 0, which each worker would resolve to a port of its own) node:cluster's primary
 * accepts every connection and passes it to a worker.
 */
export function ownsListeningSocket(port: number, isWorker: boolean, platform: NodeJS.Platform = process.platform): boolean {
  return isWorker && port !== 0 && (platform === 'linux' || platform === 'freebsd');
}

export async function startListener(
  config: Listener,
  gateway: Gateway,
  limits: Limits,
  log: Logger,
  isWorker = false,
): Promise<RunningListener> {
  const scheme = config.tls ? 'https' : 'http';
  const maxHeaders = limits.max_headers;
  const onRequest = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean) => {
    if (req.httpVersionMajor === 1) {
      if (tooManyHeaders(req, maxHeaders)) {
        const id = randomUUID();
        const body = problemBody(431, 'too_many_headers', id);
        const headers: Record<string, string> = { 'content-type': 'application/problem+json', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store', 'x-request-id': id, connection: 'close' };
        addAnswerHeaders(headers, scheme === 'https');
        res.writeHead(431, headers);
        res.end(body);
        return;
      }
      // An upgrade other than WebSocket (h2c...) is served as plain HTTP without its Upgrade header. Node's
      // parser stops at such a head, so a request pipelined behind it would be lost: close after this one.
      if (req.headers.upgrade !== undefined) res.shouldKeepAlive = false;
      // Chunked bodies get a second, stricter reader of their chunk-size lines (src/proxy/chunked.ts).
      if (req.headers['transfer-encoding'] !== undefined) guardChunkedBody(req);
    }
    gateway.handle(req, res, scheme, expectContinue);
  };
  const redirect = (req: IncomingMessage, res: ServerResponse) => {
    const target = normalizeTarget(req.url ?? '/');
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (typeof target === 'string' || !/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:.]+\]$/.test(host)) {
      const id = randomUUID();
      const body = problemBody(400, typeof target === 'string' ? target : 'invalid_host', id);
      const headers: Record<string, string> = { 'content-type': 'application/problem+json', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store', 'x-request-id': id };
      addAnswerHeaders(headers, false);
      res.writeHead(400, headers);
      res.end(body);
      return;
    }
    const port = config.https_port === 443 ? '' : `:${config.https_port}`;
    const safe = req.method === 'GET' || req.method === 'HEAD';
    const headers: Record<string, string> = { location: `https://${host}${port}${target.path}${target.query}`, 'content-length': '0' };
    addAnswerHeaders(headers, false);
    res.writeHead(safe ? 301 : 308, headers);
    res.end();
  };

  const serverOptions = {
    maxHeaderSize: limits.max_header_size,
    requestTimeout: limits.request_timeout,
    headersTimeout: limits.header_timeout,
    keepAliveTimeout: limits.keep_alive_timeout,
    requireHostHeader: true,
    // Node checks header/request timeouts on this interval (30 s by default): keep it finer than the limits.
    connectionsCheckingInterval: Math.max(250, Math.min(1_000, Math.floor(limits.header_timeout / 2))),
  };

  let server: AnyServer;
  let files: TlsFiles | null = null;
  if (config.tls) {
    files = readTls(config.tls);
    if (config.http2) {
      server = createSecureServer({
        ...secureContextOf(files, config.tls),
        ...clientCertOptions(config.tls),
        allowHTTP1: true,
        maxSessionMemory: 10,
        settings: { maxConcurrentStreams: 128, maxHeaderListSize: limits.max_header_size },
        maxHeaderListPairs: maxHeaders * 2 + 8,
        // Node's own rapid-reset limit is the backstop (it ends the session with INTERNAL_ERROR); the
        // budget in `limitResets` is stricter and answers with ENHANCE_YOUR_CALM.
        streamResetBurst: limits.http2_reset_burst * 4,
        streamResetRate: limits.http2_resets_per_second * 2,
        maxSessionInvalidFrames: 100,
        maxSessionRejectedStreams: 100,
      });
    } else {
      server = createHttpsServer({ ...secureContextOf(files, config.tls), ...clientCertOptions(config.tls), ...serverOptions });
    }
  } else {
    server = createHttpServer(serverOptions);
  }
  const s = server as Server;
  if (!(config.tls && config.http2)) {
    s.maxHeadersCount = maxHeaders + 1;
    s.keepAliveTimeout = limits.keep_alive_timeout;
  } else {
    // HTTP/1 connections on the h2 port: the same limits as a plain listener.
    (server as Http2SecureServer).setTimeout(limits.request_timeout);
  }
  s.maxConnections = limits.max_connections;

  if (config.redirect_to_https) {
    s.on('request', redirect);
  } else {
    s.on('request', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, false));
    s.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, true));
    // Only WebSocket handshakes become upgrades; any other Upgrade (h2c...) is an ordinary request.
    (s as Server & { shouldUpgradeCallback: (req: IncomingMessage) => boolean }).shouldUpgradeCallback = wantsWebSocket;
    // CONNECT is never proxied (no tunnels through a security gateway).
    s.on('connect', (_req: IncomingMessage, socket: Duplex) => rawProblem(socket, 405, 'method_not_allowed', scheme === 'https', 'Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n'));
    s.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      gateway.handleUpgrade(req, socket, head, scheme, () => {
        const res = new ServerResponse(req);
        res.assignSocket(socket as Socket);
        res.shouldKeepAlive = false;
        return res;
      });
    });
  }
  s.on('clientError', clientErrorAnswer(scheme === 'https'));
  server.on('sessionError', () => {
    /* a broken HTTP/2 session is closed by node; nothing to answer */
  });

  const sockets = new Set<Duplex>();
  const sessions = new Set<ServerHttp2Session>();

  // Client certificates: each connection is marked with the listener's settings; its certificate is read
  // once, by its first request (src/proxy/client-cert.ts). A `require` listener refuses at the handshake,
  // where no HTTP answer can be given: the reason goes to the log (debug: scanners would flood info).
  const clientCerts: ClientCertSettings | null = config.tls?.client_ca !== undefined ? Object.freeze({ forward: config.tls.forward_client_cert === 'sanitize_set' }) : null;
  if (clientCerts !== null) {
    server.on('secureConnection', (socket: TLSSocket) => markClientCertSocket(socket, clientCerts));
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      log.debug({ listener: config.name ?? config.address, remote: socket.remoteAddress, code: err.code, err: err.message }, 'TLS handshake refused');
    });
  }

  /**
   * After client_ca or the CRL changed, connections verified against the old files must not go on: HTTP/2
   * sessions get GOAWAY (streams in flight finish), idle HTTP/1.1 connections close, busy ones close after
   * the response in progress. Clients reconnect and their new handshake is checked against the new files
   * (the new secure context also has new session-ticket keys, so no old session can be resumed).
   */
  const closeVerifiedConnections = () => {
    for (const session of sessions) session.close();
    for (const sock of sockets) {
      if ((sock as TLSSocket).alpnProtocol === 'h2') continue; // its session was closed above
      const inProgress = (sock as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (!inProgress) sock.destroy();
      else {
        inProgress.shouldKeepAlive = false;
        inProgress.once('finish', () => sock.end());
      }
    }
  };

  // Certificate hot reload: poll the files (works across Kubernetes' symlink swaps of Secret volumes).
  const watched: string[] = [];
  if (config.tls && files) {
    const tls = config.tls;
    const reloadCerts = () => {
      try {
        const next = readTls(tls);
        const prev = files!;
        const trustChanged = !same(next.ca, prev.ca) || !same(next.crl, prev.crl);
        if (next.cert.equals(prev.cert) && next.key.equals(prev.key) && !trustChanged) return;
        (server as HttpsServer).setSecureContext({ ...secureContextOf(next, tls), ...(config.http2 ? { ALPNProtocols: ['h2', 'http/1.1'] } : {}) });
        files = next;
        if (trustChanged) {
          closeVerifiedConnections();
          log.info({ listener: config.name ?? config.address }, 'TLS client CA / revocation list reloaded; open connections closed so clients are verified again');
        } else {
          log.info({ listener: config.name ?? config.address }, 'TLS certificate reloaded');
        }
      } catch (err) {
        log.error({ listener: config.name ?? config.address, err: (err as Error).message }, 'TLS certificate reload failed; keeping the previous one');
      }
    };
    for (const f of [tls.cert, tls.key, tls.client_ca, tls.crl]) {
      if (f === undefined) continue;
      watchFile(f, { interval: 1000, persistent: false }, reloadCerts);
      watched.push(f);
    }
  }
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    limitResets(session, limits, log);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('secureConnection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  const { host, port } = splitAddress(config.address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // reusePort makes a worker bind its own socket (Node sets exclusive for it); only processes of the
    // same user can join a SO_REUSEPORT group on Linux, so no other user's process can take a share.
    const own = ownsListeningSocket(port, isWorker);
    server.listen({ host, port, exclusive: own, reusePort: own }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound ? bound.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const address = `${shownHost}:${boundPort}`;
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : shownHost;
  return {
    config,
    server,
    address,
    url: `${scheme}://${urlHost}:${boundPort}`,
    stopAccepting() {
      for (const f of watched) unwatchFile(f);
      return new Promise((resolve) => {
        // Keep closing connections as they turn idle, so a finished keep-alive client cannot hold the exit.
        const sweep = setInterval(() => (server as Server).closeIdleConnections?.(), 100);
        server.close(() => {
          clearInterval(sweep);
          resolve();
        });
        (server as Server).closeIdleConnections?.();
        // HTTP/2 sessions: GOAWAY, let open streams finish.
        for (const session of sessions) session.close();
      });
    },
    destroy() {
      (server as Server).closeAllConnections?.();
      for (const sock of sockets) sock.destroy();
    },
  };
}
