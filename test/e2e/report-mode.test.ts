// Report mode (`mode: report`) on the filters that deny: IP rules, CORS, body rules, the path hardening.
// The same policy runs twice, once with every rule reporting and once enforcing. Reporting, the recording
// upstream gets the request and the metric and the access line say it would have been refused;
// enforcing, the upstream never sees it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { rawRequest, reasonOf, statusOf } from '../helpers/raw.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

function policy(upstream: string, mode: 'report' | 'enforce'): string {
  return `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: stdout, audit: stderr }
upstreams:
  app: { url: "${upstream}" }
hardening: { mode: ${mode} }
routes:
  - name: office
    match: { path_prefix: /office }
    upstream: app
    ip_rules: { allow: [10.0.0.0/8], mode: ${mode} }
    audit: office
  - name: api
    match: { path_prefix: /api }
    upstream: app
    cors: { origins: [https://app.example.com], methods: [GET, POST], mode: ${mode} }
  - name: uploads
    match: { path_prefix: /uploads }
    upstream: app
    body: { content_types: [multipart/form-data], multipart: { part_types: [image/png] }, mode: ${mode} }
  - name: pages
    match: { path_prefix: /pages }
    upstream: app
`;
}

function multipart(type: string, content: Buffer): string {
  return `--b1\r\nContent-Disposition: form-data; name="f"; filename="x"\r\nContent-Type: ${type}\r\n\r\n${content.toString('latin1')}\r\n--b1--\r\n`;
}

interface Attack {
  name: string;
  route: string;
  filter: string;
  reason: string;
  status: number;
  /** Raw HTTP/1.1 request; `mark` makes it recognizable at the upstream. */
  request(mark: string): string;
}

const head = (lines: string[]) => lines.map((l) => l + '\r\n').join('') + '\r\n';
const ATTACKS: Attack[] = [
  { name: 'an address outside the allow list', route: 'office', filter: 'ip_rules', reason: 'ip_not_allowed', status: 403,
    request: (mark) => head([`GET /office/${mark} HTTP/1.1`, 'Host: gw', 'Connection: close']) },
  { name: 'a preflight from another origin', route: 'api', filter: 'cors', reason: 'origin_not_allowed', status: 403,
    request: (mark) => head([`OPTIONS /api/${mark} HTTP/1.1`, 'Host: gw', 'Origin: https://evil.example.com', 'Access-Control-Request-Method: POST', 'Connection: close']) },
  { name: 'a body of a type the route does not take', route: 'uploads', filter: 'body_limits', reason: 'unsupported_media_type', status: 415,
    request: (mark) => head([`POST /uploads/${mark} HTTP/1.1`, 'Host: gw', 'Content-Type: application/json', 'Content-Length: 2', 'Connection: close']) + '{}' },
  { name: 'an executable in an image part (checked while the body streams)', route: 'uploads', filter: 'body_limits', reason: 'part_content_mismatch', status: 415,
    request: (mark) => {
      const body = multipart('image/png', Buffer.from('MZ\x90\x00 not a png at all, an exe', 'latin1'));
      return head([`POST /uploads/${mark} HTTP/1.1`, 'Host: gw', 'Content-Type: multipart/form-data; boundary=b1', `Content-Length: ${Buffer.byteLength(body, 'latin1')}`, 'Connection: close']) + body;
    } },
  { name: 'a path parameter (hardening)', route: 'pages', filter: 'gateway', reason: 'path_parameter', status: 400,
    request: (mark) => head([`GET /pages/${mark};jsessionid=1 HTTP/1.1`, 'Host: gw', 'Connection: close']) },
];

async function reportedCount(gw: RunningGateway, a: Attack): Promise<number> {
  const text = await (await fetch(gw.admin + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`portcullis_reported_denies_total{route="${a.route}",filter="${a.filter}",reason="${a.reason}"}`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

function lines(text: string): Record<string, unknown>[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('report mode', () => {
  let up: RecordingUpstream;
  let reporting: RunningGateway;
  let enforcing: RunningGateway;

  beforeAll(async () => {
    up = await startUpstream();
    [reporting, enforcing] = await Promise.all([startGateway(policy(up.url, 'report')), startGateway(policy(up.url, 'enforce'))]);
  });
  afterAll(async () => {
    await reporting?.stop();
    await enforcing?.stop();
    await up?.close();
  });

  const seen = (mark: string) => up.received.filter((r) => r.url.includes(mark));

  for (const a of ATTACKS) {
    it(`${a.name}: reported and let through in report mode`, async () => {
      const mark = `r${Math.random().toString(36).slice(2, 10)}`;
      const before = await reportedCount(reporting, a);
      const response = await rawRequest(reporting.url, a.request(mark));
      expect(statusOf(response)).toBe(200);
      expect(seen(mark)).toHaveLength(1);
      if (a.reason === 'part_content_mismatch') expect(seen(mark)[0]!.body.includes(Buffer.from('MZ'))).toBe(true); // the whole body
      await waitFor(async () => (await reportedCount(reporting, a)) === before + 1);
      const line = await waitFor(() => lines(reporting.stdout()).find((l) => String(l.path).includes(mark)));
      expect(line.status).toBe(200);
      expect(line.deny_reason).toBeUndefined();
      expect(line.reported).toEqual([{ filter: a.filter, reason: a.reason }]);
    });

    it(`${a.name}: refused in enforce mode, never reaching the upstream`, async () => {
      const mark = `e${Math.random().toString(36).slice(2, 10)}`;
      const response = await rawRequest(enforcing.url, a.request(mark));
      expect(statusOf(response)).toBe(a.status);
      expect(reasonOf(response)).toBe(a.reason);
      if (a.reason === 'part_content_mismatch') {
        // The head may have reached the upstream before the part was read; the refused part never did.
        for (const r of seen(mark)) expect(r.body.includes(Buffer.from('MZ'))).toBe(false);
      } else expect(seen(mark)).toHaveLength(0);
      expect(await reportedCount(enforcing, a)).toBe(0);
    });
  }

  it('writes `reported` in the audit line of an audited route, whose outcome is success', async () => {
    const mark = `a${Math.random().toString(36).slice(2, 10)}`;
    await rawRequest(reporting.url, ATTACKS[0]!.request(mark));
    const audit = await waitFor(() => lines(reporting.stderr()).find((l) => l.action === 'office' && String(l.path).includes(mark)));
    expect(audit.outcome).toBe('succeeded');
    expect(audit.reported).toEqual([{ filter: 'ip_rules', reason: 'ip_not_allowed' }]);
  });

  it('never reports the framing checks: an ambiguous body is refused in report mode too', async () => {
    const mark = `f${Math.random().toString(36).slice(2, 10)}`;
    const response = await rawRequest(reporting.url, head([`POST /pages/${mark} HTTP/1.1`, 'Host: gw', 'Content-Length: 3', 'Content-Length: 3', 'Connection: close']) + 'abc');
    expect(statusOf(response)).toBe(400);
    expect(seen(mark)).toHaveLength(0);
  });
});
