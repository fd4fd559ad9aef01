// node:http for ES modules, without its ESM facade. `import … from 'node:http'` builds a namespace of all of
// the module's exports, and reading them runs its lazy `WebSocket`, `CloseEvent` and `MessageEvent`
// getters, which load Node's bundled undici (fetch, WebSocket, web streams), none of it used: 13 MiB of
// RSS in a bare `node` (59 MiB importing node:http, 46 requiring it), 3 MiB in a fresh passthrough gateway
// (73 → 70 MiB; it loads much of the rest anyway). process.getBuiltinModule returns the CommonJS exports
// and leaves the getters alone. Types still come from `import type … from 'node:http'`, which emits nothing.
import type { ServerResponse as Response } from 'node:http';

const http = process.getBuiltinModule('node:http');

export const { createServer, request, ServerResponse, STATUS_CODES } = http;
/** The class above as a type too, like node:http's own export. */
export type ServerResponse = Response;
