// Body limits: content-type verdicts, and the streaming multipart inspector fed in chunks of every size.
import { describe, expect, it } from 'vitest';
import { boundaryOf, parsePartHeaders } from '../../src/filters/body-limits.ts';
import type { RequestContext } from '../../src/contract/context.ts';
import { BASE, compile, context, problems, route, verdict } from '../helpers/filters.ts';

const policy = compile(`${BASE}
body:
  uploads:
    content_types: [multipart/form-data, application/json]
    multipart: { part_types: [image/png, image/jpeg, application/pdf, "text/*"], max_parts: 4, max_part_size: 1KiB }
routes:
  - name: uploads
    match: { path_prefix: /upload }
    upstream: app
    body: uploads
  - name: json
    match: { path_prefix: /json }
    upstream: app
    body: { content_types: [application/json] }
`);

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 1, 2, 3]);
const EXE = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(60, 0x90), Buffer.from('This program cannot be run in DOS mode')]);
const B = 'XyZ----boundary42';

type Part = { name: string; filename?: string; type?: string; data: Buffer | string; raw?: string };
function multipart(parts: Part[], boundary = B): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}\r\n`;
    if (p.type) head += `Content-Type: ${p.type}\r\n`;
    if (p.raw) head += p.raw;
    chunks.push(Buffer.from(head + '\r\n'), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

async function inspect(body: Buffer, chunkSize: number, contentType = `multipart/form-data; boundary=${B}`): Promise<{ out: Buffer; error?: string; status?: number; ctx: RequestContext }> {
  const ctx = context('POST', { 'content-type': contentType, 'content-length': String(body.length) });
  const d = verdict(route(policy, 'uploads'), ctx);
  if (d) return { out: Buffer.alloc(0), error: d.reason, status: d.status, ctx };
  expect(ctx.bodyFilter).not.toBeNull();
  async function* source() {
    for (let i = 0; i < body.length; i += chunkSize) yield body.subarray(i, i + chunkSize);
  }
  const out: Buffer[] = [];
  try {
    for await (const c of ctx.bodyFilter!(ctx, source())) out.push(c);
  } catch (err) {
    const e = err as { reason: string; status: number };
    return { out: Buffer.concat(out), error: e.reason, status: e.status, ctx };
  }
  return { out: Buffer.concat(out), ctx };
}

const SIZES = [1, 2, 7, 16, 64, 100_000];

describe('content types', () => {
  const table: [string, Record<string, string>, string][] = [
    ['json', { 'content-type': 'application/json', 'content-length': '2' }, 'pass'],
    ['json with charset, upper case', { 'content-type': 'Application/JSON; charset=utf-8', 'content-length': '2' }, 'pass'],
    ['xml', { 'content-type': 'application/xml', 'content-length': '2' }, 'unsupported_media_type'],
    ['json look-alike', { 'content-type': 'application/jsonp', 'content-length': '2' }, 'unsupported_media_type'],
    ['no type with a body', { 'content-length': '2' }, 'unsupported_media_type'],
    ['no type, chunked', { 'transfer-encoding': 'chunked' }, 'unsupported_media_type'],
    ['no body', {}, 'pass'],
    ['empty body, any type', { 'content-type': 'text/html', 'content-length': '0' }, 'pass'],
  ];
  it.each(table)('%s', (_n, headers, expected) => {
    const d = verdict(route(policy, 'json'), context('POST', headers));
    expect(d?.reason ?? 'pass').toBe(expected);
    if (d) expect(d.status).toBe(415);
  });

  it('needs a valid multipart boundary', () => {
    const d = verdict(route(policy, 'uploads'), context('POST', { 'content-type': 'multipart/form-data', 'content-length': '10' }));
    expect(d).toMatchObject({ status: 400, reason: 'multipart_invalid' });
    expect(boundaryOf('multipart/form-data; boundary="a b"')).toBe('a b');
    expect(boundaryOf('multipart/form-data; BOUNDARY=abc; charset=x')).toBe('abc');
    expect(boundaryOf(`multipart/form-data; boundary=${'x'.repeat(71)}`)).toBeNull();
  });
});

describe('multipart inspection', () => {
  const good = multipart([
    { name: 'title', data: 'holiday' },
    { name: 'photo', filename: 'a.png', type: 'image/png', data: PNG },
    { name: 'doc', filename: 'a.pdf', type: 'application/pdf', data: '%PDF-1.7\n...' },
    { name: 'empty', filename: '', type: 'application/octet-stream', data: '' },
  ]);
  it.each(SIZES)('passes a valid body unchanged in chunks of %i', async (size) => {
    const r = await inspect(good, size);
    expect(r.error).toBeUndefined();
    expect(r.out.equals(good)).toBe(true);
  });

  const bad: [string, Part[], number, string][] = [
    ['renamed executable as PNG', [{ name: 'photo', filename: 'cat.png', type: 'image/png', data: EXE }], 415, 'part_content_mismatch'],
    ['executable as text', [{ name: 'notes', filename: 'notes.txt', type: 'text/plain', data: EXE }], 415, 'part_content_mismatch'],
    ['shell script as text field with type', [{ name: 'x', type: 'text/csv', data: '#!/bin/sh\nrm -rf /' }], 415, 'part_content_mismatch'],
    ['JPEG declared, PNG bytes', [{ name: 'p', filename: 'a.jpg', type: 'image/jpeg', data: PNG }], 415, 'part_content_mismatch'],
    ['type not allowed', [{ name: 'p', filename: 'a.svg', type: 'image/svg+xml', data: '<svg/>' }], 415, 'part_type_not_allowed'],
    ['file without type', [{ name: 'p', filename: 'a.bin', data: 'abc' }], 415, 'part_type_not_allowed'],
    ['executable with empty filename', [{ name: 'p', filename: '', type: 'image/png', data: EXE }], 415, 'part_content_mismatch'],
    ['too many parts', Array.from({ length: 5 }, (_, i) => ({ name: `f${i}`, data: 'x' })), 413, 'too_many_parts'],
    ['part too large', [{ name: 'p', filename: 'a.png', type: 'image/png', data: Buffer.concat([PNG, Buffer.alloc(2000)]) }], 413, 'part_too_large'],
    ['duplicate part Content-Type', [{ name: 'p', filename: 'a.png', type: 'image/png', raw: 'Content-Type: application/x-msdownload\r\n', data: PNG }], 400, 'multipart_invalid'],
    ['no Content-Disposition', [{ name: 'p', data: 'x', raw: '' }], 400, 'multipart_invalid'],
  ];
  for (const size of [1, 5, 100_000]) {
    it.each(bad)(`refuses %s (chunks of ${size}), releasing none of the part`, async (_n, parts, status, reason) => {
      const lead = multipart([{ name: 'first', data: 'ok' }]).subarray(0, -(`--${B}--\r\n`.length));
      const body = Buffer.concat([lead, multipart(parts)]);
      if (reason === 'multipart_invalid' && parts[0]!.raw === '') {
        // replace the disposition header with another header
        const text = body.toString('latin1').replace('Content-Disposition: form-data; name="p"', 'X-Other: 1');
        const r = await inspect(Buffer.from(text, 'latin1'), size);
        expect(r.error).toBe(reason);
        return;
      }
      const r = await inspect(body, size);
      expect({ status: r.status, reason: r.error }).toEqual({ status, reason });
      expect(r.ctx.deny).toEqual({ filter: 'body_limits', reason });
      if (status === 415 || status === 400) {
        // a refused part is never let through: nothing past the first (valid) part was released
        expect(r.out.length).toBeLessThanOrEqual(lead.length);
      } else {
        // size and count limits stop the stream where they are crossed; the body never completes
        expect(r.out.length).toBeLessThan(body.length);
      }
      if (parts[0]!.data === EXE) expect(r.out.includes(Buffer.from('This program'))).toBe(false);
    });
  }

  it('refuses a truncated body (no close delimiter)', async () => {
    const r = await inspect(good.subarray(0, good.length - 10), 64);
    expect(r.error).toBe('multipart_invalid');
  });

  const smuggled: [string, string][] = [
    ['a bare-LF delimiter hiding a second part', `--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nok\n--${B}\r\nContent-Disposition: form-data; name="f"; filename="x.exe"\r\nContent-Type: image/png\r\n\r\nMZ...\r\n--${B}--\r\n`],
    ['a boundary borrowing the header block\'s CRLF', `--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n--${B}\r\nContent-Disposition: form-data; name="f"; filename="x.exe"\r\n\r\nMZ\r\n--${B}--\r\n`],
    ['parts after the close delimiter', `--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nok\r\n--${B}--\r\n--${B}\r\nContent-Disposition: form-data; name="f"; filename="x.exe"\r\n\r\nMZ\r\n--${B}--\r\n`],
    ['a boundary glued to the preamble', `junk--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nok\r\n--${B}--\r\n`],
  ];
  for (const size of [1, 3, 100_000]) {
    it.each(smuggled)(`refuses %s (chunks of ${size}) as multipart_invalid`, async (_n, text) => {
      const r = await inspect(Buffer.from(text, 'latin1'), size);
      expect(r.error).toBe('multipart_invalid');
      expect(r.out.includes(Buffer.from('MZ'))).toBe(false);
    });
  }

  it('accepts a preamble and a CRLF-led first delimiter', async () => {
    for (const text of [`preamble\r\n--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nok\r\n--${B}--\r\n`, `\r\n--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nok\r\n--${B}--`]) {
      for (const size of [1, 4, 1000]) {
        const r = await inspect(Buffer.from(text), size);
        expect(r.error).toBeUndefined();
        expect(r.out.toString()).toBe(text);
      }
    }
  });

  it('refuses a body that is not multipart at all', async () => {
    const r = await inspect(Buffer.from('just some bytes'), 64);
    expect(r.error).toBe('multipart_invalid');
  });

  it('parses part headers strictly', () => {
    expect(parsePartHeaders('Content-Disposition: form-data; name="a"')).toEqual({ type: null, filename: null });
    expect(parsePartHeaders('Content-Disposition: form-data; name="a"; filename="x.png"')).toEqual({ type: 'application/octet-stream', filename: 'x.png' });
    expect(parsePartHeaders('content-disposition: form-data; name="a"; filename*=UTF-8\'\'x.png\r\nCONTENT-TYPE: Image/PNG')).toMatchObject({ type: 'image/png' });
    expect(parsePartHeaders('Content-Disposition: form-data; name="a"\r\n folded: yes')).toBeNull();
    expect(parsePartHeaders('Content-Disposition: attachment; name="a"')).toBeNull();
  });

  it('reports policy errors', () => {
    const out = problems(`${BASE}routes:\n  - match: { path_prefix: / }\n    upstream: app\n    body: { content_types: [application/json], multipart: { part_types: [image/png] } }\n`);
    expect(out[0]).toMatch(/content_types does not allow multipart\/form-data/);
    expect(problems(`${BASE}routes:\n  - match: { path_prefix: / }\n    upstream: app\n    body: { content_types: [json] }\n`)[0]).toMatch(/not a valid media type/);
  });
});
