// The body-field reader behind `form:NAME` / `json:NAME` rate-limit keys: what counts as the field, what
// is absent and what is ambiguous, and the prefix reader that hands the upstream the same bytes.
import { describe, expect, it } from 'vitest';
import { AMBIGUOUS, BODY_FIELD_CAP, bodyField, formFields, jsonFields, type FieldKind } from '../../src/filters/body-fields.ts';
import { RequestContext } from '../../src/contract/context.ts';
import { RequestBody } from '../../src/proxy/request-body.ts';

async function* chunks(parts: (string | Buffer)[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield Buffer.from(p);
}

async function field(body: string | Buffer | (string | Buffer)[], kind: FieldKind, name: string, headers: Record<string, string> = {}): Promise<string | null | typeof AMBIGUOUS> {
  const type = kind === 'form' ? 'application/x-www-form-urlencoded' : 'application/json';
  const ctx = new RequestContext('POST', '1.1', { 'content-type': type, ...headers }, '127.0.0.1', 'http', 0);
  ctx.body = new RequestBody(chunks(Array.isArray(body) ? body : [body]), () => undefined);
  await ctx.body.prefix(BODY_FIELD_CAP);
  return bodyField(ctx, kind, name);
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}

describe('form fields', () => {
  it('reads a field as browsers encode it (percent, +), names decoded too', async () => {
    expect(await field('username=alice&password=x', 'form', 'username')).toBe('alice');
    expect(await field('password=x&user%6Eame=al%C3%AFce+b', 'form', 'username')).toBe('alïce b');
    expect(await field(['user', 'name=ali', 'ce'], 'form', 'username')).toBe('alice'); // split over chunks
  });

  it('a field sent twice is ambiguous, even with an empty or equal second value', async () => {
    expect(await field('username=alice&username=bob', 'form', 'username')).toBe(AMBIGUOUS);
    expect(await field('username=alice&username=', 'form', 'username')).toBe(AMBIGUOUS);
    expect(await field('username=alice&user%6eame=alice', 'form', 'username')).toBe(AMBIGUOUS);
  });

  it('absent: missing, empty, another media type, encoded bodies, another case of the name', async () => {
    expect(await field('password=x', 'form', 'username')).toBeNull();
    expect(await field('username=&password=x', 'form', 'username')).toBeNull();
    expect(await field('Username=alice', 'form', 'username')).toBeNull();
    expect(await field('username=alice', 'form', 'username', { 'content-type': 'text/plain' })).toBeNull();
    expect(await field('username=alice', 'form', 'username', { 'content-type': 'multipart/form-data; boundary=x' })).toBeNull();
    expect(await field('username=alice', 'form', 'username', { 'content-encoding': 'gzip' })).toBeNull();
    expect(await field('username=alice', 'form', 'username', { 'content-type': 'Application/X-WWW-Form-Urlencoded; charset=UTF-8' })).toBe('alice');
  });

  it('the whole body must fit in the cap: a longer one has no field, since a second copy could follow', async () => {
    const head = 'username=alice&pad=';
    const fits = head + 'x'.repeat(BODY_FIELD_CAP - head.length);
    expect(Buffer.byteLength(fits)).toBe(BODY_FIELD_CAP);
    expect(await field(fits, 'form', 'username')).toBe('alice');
    expect(await field(fits + 'x', 'form', 'username')).toBeNull();
    expect(await field([fits, '&username=bob'], 'form', 'username')).toBeNull();
  });

  it('formFields keeps every value of a name', () => {
    expect([...formFields('a=1&b=2&a=3')]).toEqual([['a', ['1', '3']], ['b', ['2']]]);
  });
});

describe('JSON fields', () => {
  it('reads a top-level string member, names unescaped', async () => {
    expect(await field('{"username":"alice","password":"x"}', 'json', 'username')).toBe('alice');
    expect(await field('{"user\\u006eame": "al\\"ice"}', 'json', 'username')).toBe('al"ice');
    expect(await field('{"username":"alice"}', 'json', 'username', { 'content-type': 'application/vnd.api+json' })).toBe('alice');
  });

  it('a member named twice at the top level is ambiguous (parsers keep the first, the last or fail)', async () => {
    expect(await field('{"username":"alice","username":"bob"}', 'json', 'username')).toBe(AMBIGUOUS);
    expect(await field('{"username":"alice","user\\u006eame":"alice"}', 'json', 'username')).toBe(AMBIGUOUS);
    // Nested members of the same name are other fields.
    expect(await field('{"profile":{"username":"x","list":["username",{"username":1}]},"username":"alice"}', 'json', 'username')).toBe('alice');
  });

  it('non-string values, nested-only names, non-objects and invalid JSON are absent', async () => {
    for (const body of ['{"username":42}', '{"username":true}', '{"username":null}', '{"username":["alice"]}', '{"username":{"v":"alice"}}', '{"username":""}',
      '{"profile":{"username":"alice"}}', '["username","alice"]', '"alice"', '{"username":"alice"', '\uFEFF{"username":"alice"}']) {
      expect(await field(body, 'json', 'username')).toBeNull();
    }
    expect(await field('{"username":"alice"}', 'json', 'username', { 'content-type': 'application/x-www-form-urlencoded' })).toBeNull();
  });

  it('jsonFields counts every occurrence of a top-level name, strings with brackets and escapes included', () => {
    const f = jsonFields('{"a":"}{,\\"","b":[1,{"a":2}],"a":3}')!;
    expect(f.get('a')).toHaveLength(2);
    expect(f.get('b')).toHaveLength(1);
    expect(jsonFields('[1]')).toBeNull();
  });
});

describe('the prefix reader', () => {
  it('hands the upstream every byte in order: read-ahead bytes, then the rest', async () => {
    const parts = [Buffer.alloc(10_000, 1), Buffer.alloc(10_000, 2), Buffer.alloc(50_000, 3), Buffer.from('end')];
    const body = new RequestBody(chunks(parts), () => undefined);
    const p = await body.prefix(BODY_FIELD_CAP);
    expect(p.complete).toBe(false);
    expect(p.bytes.length).toBe(BODY_FIELD_CAP);
    expect((await collect(body.stream())).equals(Buffer.concat(parts))).toBe(true);
  });

  it('a body that fits is complete; a body of exactly the cap is told from a longer one', async () => {
    const exact = new RequestBody(chunks([Buffer.alloc(BODY_FIELD_CAP, 7)]), () => undefined);
    expect((await exact.prefix(BODY_FIELD_CAP)).complete).toBe(true);
    expect((await collect(exact.stream())).length).toBe(BODY_FIELD_CAP);
  });

  it('answers Expect: 100-continue once, before reading; a failing source fails the stream before any byte', async () => {
    let continued = 0;
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('abc');
      throw Object.assign(new Error('too large'), { code: 'REQUEST_BODY_TOO_LARGE' });
    }
    const body = new RequestBody(failing(), () => continued++);
    expect(body.started).toBe(false);
    const p = await Promise.all([body.prefix(BODY_FIELD_CAP), body.prefix(BODY_FIELD_CAP)]);
    expect(p[0]).toBe(p[1]);
    expect(continued).toBe(1);
    expect(p[0].complete).toBe(false);
    const got: Buffer[] = [];
    await expect((async () => { for await (const c of body.stream()) got.push(c); })()).rejects.toThrow('too large');
    expect(got).toEqual([]);
  });

  it('a body never read ahead streams straight through', async () => {
    const body = new RequestBody(chunks(['a', 'b']), () => undefined);
    expect((await collect(body.stream())).toString()).toBe('ab');
  });
});
