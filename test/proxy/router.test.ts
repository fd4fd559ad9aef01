import { describe, expect, it } from 'vitest';
import { Router } from '../../src/proxy/router.ts';

function router() {
  const r = new Router<string>();
  let i = 0;
  const add = (name: string, spec: { hosts?: string[]; path?: string; pathPrefix?: string; methods?: string[] }) =>
    r.add({ hosts: spec.hosts ?? [], path: spec.path ?? null, pathPrefix: spec.pathPrefix ?? null, methods: spec.methods ?? [] }, name, i++);
  return { r, add };
}

describe('Router', () => {
  it('matches prefixes on segment boundaries, longest first', () => {
    const { r, add } = router();
    add('root', { pathPrefix: '/' });
    add('api', { pathPrefix: '/api' });
    add('admin', { pathPrefix: '/api/admin/' });
    expect(r.match('x', 'GET', '/api')).toBe('api');
    expect(r.match('x', 'GET', '/api/users')).toBe('api');
    expect(r.match('x', 'GET', '/apiary')).toBe('root');
    expect(r.match('x', 'GET', '/api/admin')).toBe('admin');
    expect(r.match('x', 'GET', '/api/admin/x/y')).toBe('admin');
    expect(r.match('x', 'GET', '/api/administrator')).toBe('api');
  });

  it('prefers exact paths, then method-specific routes', () => {
    const { r, add } = router();
    add('prefix', { pathPrefix: '/login' });
    add('login-post', { path: '/login', methods: ['POST'] });
    add('login', { path: '/login' });
    expect(r.match('x', 'POST', '/login')).toBe('login-post');
    expect(r.match('x', 'GET', '/login')).toBe('login');
    expect(r.match('x', 'GET', '/login/x')).toBe('prefix');
  });

  it('prefers exact hosts, then wildcards, then any host', () => {
    const { r, add } = router();
    add('any', { pathPrefix: '/' });
    add('wild', { hosts: ['*.example.com'], pathPrefix: '/' });
    add('exact', { hosts: ['api.example.com'], pathPrefix: '/' });
    expect(r.match('api.example.com', 'GET', '/')).toBe('exact');
    expect(r.match('www.example.com', 'GET', '/')).toBe('wild');
    expect(r.match('example.com', 'GET', '/')).toBe('any');
    expect(r.match('example.com.evil.net', 'GET', '/')).toBe('any');
  });

  it('answers null when nothing matches', () => {
    const { r, add } = router();
    add('api', { pathPrefix: '/api', methods: ['GET'] });
    expect(r.match('x', 'GET', '/other')).toBeNull();
    expect(r.match('x', 'POST', '/api')).toBeNull();
  });

  it('reports duplicates', () => {
    const { add } = router();
    expect(add('a', { path: '/x', methods: ['GET'] })).toBeNull();
    expect(add('b', { path: '/x', methods: ['POST'] })).toBeNull();
    expect(add('c', { path: '/x', methods: ['GET', 'PUT'] })).toEqual({ index: 2, otherIndex: 0 });
    expect(add('d', { pathPrefix: '/y/' })).toBeNull();
    expect(add('e', { pathPrefix: '/y' })).toEqual({ index: 4, otherIndex: 3 });
  });
});

describe('Router, case-insensitive routes', () => {
  it('takes any letter case for a case-insensitive route, keeping specificity', () => {
    const r = new Router<string>();
    r.add({ hosts: [], path: null, pathPrefix: '/', methods: [] }, 'catch-all', 0);
    r.add({ hosts: [], path: '/api/login', pathPrefix: null, methods: ['POST'], caseInsensitive: true }, 'login', 1);
    r.add({ hosts: [], path: null, pathPrefix: '/Files', methods: [], caseInsensitive: true }, 'files', 2);
    r.add({ hosts: [], path: null, pathPrefix: '/Docs', methods: [] }, 'docs', 3);
    expect(r.match('x', 'POST', '/api/login')).toBe('login');
    expect(r.match('x', 'POST', '/API/LOGIN')).toBe('login');
    expect(r.match('x', 'POST', '/Api/Login')).toBe('login');
    expect(r.match('x', 'GET', '/API/LOGIN')).toBe('catch-all');
    expect(r.match('x', 'GET', '/FILES/a/b')).toBe('files');
    expect(r.match('x', 'GET', '/files')).toBe('files');
    expect(r.match('x', 'GET', '/filesystem')).toBe('catch-all');
    // Case-sensitive routes keep their case.
    expect(r.match('x', 'GET', '/Docs/x')).toBe('docs');
    expect(r.match('x', 'GET', '/docs/x')).toBe('catch-all');
  });

  it('refuses a case-insensitive duplicate', () => {
    const r = new Router<string>();
    expect(r.add({ hosts: [], path: '/a', pathPrefix: null, methods: [], caseInsensitive: true }, 'a', 0)).toBeNull();
    expect(r.add({ hosts: [], path: '/A', pathPrefix: null, methods: [], caseInsensitive: true }, 'b', 1)).toEqual({ index: 1, otherIndex: 0 });
  });
});

describe('Router, glob routes', () => {
  const glob = (r: Router<string>, name: string, pathGlob: string, i: number, extra: { methods?: string[]; caseInsensitive?: boolean } = {}) =>
    r.add({ hosts: [], path: null, pathPrefix: null, pathGlob, methods: extra.methods ?? [], caseInsensitive: extra.caseInsensitive }, name, i);
  const prefix = (r: Router<string>, name: string, pathPrefix: string, i: number) => r.add({ hosts: [], path: null, pathPrefix, methods: [] }, name, i);

  it('* is one segment or part of one, ** any number of segments', () => {
    const r = new Router<string>();
    glob(r, 'png', '/files/**/*.png', 0);
    glob(r, 'one', '/img/*', 1);
    glob(r, 'thumb', '/img/thumb-*.jpg', 2);
    glob(r, 'tail', '/static/**', 3);
    expect(r.match('x', 'GET', '/files/a.png')).toBe('png');
    expect(r.match('x', 'GET', '/files/a/b/c.png')).toBe('png');
    expect(r.match('x', 'GET', '/files/a/b/c.png.exe')).toBeNull();
    expect(r.match('x', 'GET', '/files.png')).toBeNull();
    expect(r.match('x', 'GET', '/other/files/a.png')).toBeNull();
    expect(r.match('x', 'GET', '/img/x')).toBe('one');
    expect(r.match('x', 'GET', '/img/x/y')).toBeNull();
    expect(r.match('x', 'GET', '/img/')).toBeNull();
    expect(r.match('x', 'GET', '/img/thumb-7.jpg')).toBe('thumb'); // more literal characters than /img/*
    expect(r.match('x', 'GET', '/static')).toBe('tail');
    expect(r.match('x', 'GET', '/static/a/b')).toBe('tail');
    expect(r.match('x', 'GET', '/staticky')).toBeNull();
  });

  it('specificity: exact > glob or prefix by literal leading segments (glob wins a tie) > shorter prefix', () => {
    const r = new Router<string>();
    prefix(r, 'root', '/', 0);
    prefix(r, 'files', '/files', 1);
    prefix(r, 'private', '/files/private', 2);
    glob(r, 'png', '/files/**/*.png', 3);
    glob(r, 'any-png', '/**/*.png', 4);
    r.add({ hosts: [], path: '/files/logo.png', pathPrefix: null, methods: [] }, 'logo', 5);
    expect(r.match('x', 'GET', '/files/logo.png')).toBe('logo'); // exact first
    expect(r.match('x', 'GET', '/files/a/b.png')).toBe('png'); // depth 1 glob beats /files (1) and / (0)
    expect(r.match('x', 'GET', '/files/private/b.png')).toBe('private'); // a deeper prefix keeps its requests
    expect(r.match('x', 'GET', '/files/a/b.txt')).toBe('files');
    expect(r.match('x', 'GET', '/pics/b.png')).toBe('any-png'); // depth 0 glob beats the catch-all
    expect(r.match('x', 'GET', '/files/b.png')).toBe('png'); // both globs match: the deeper one
  });

  it('method-limited globs, case-insensitive globs, duplicates', () => {
    const r = new Router<string>();
    prefix(r, 'root', '/', 0);
    glob(r, 'upload', '/up/*.bin', 1, { methods: ['PUT'] });
    glob(r, 'icons', '/Icons/*.svg', 2, { caseInsensitive: true });
    expect(r.match('x', 'PUT', '/up/a.bin')).toBe('upload');
    expect(r.match('x', 'GET', '/up/a.bin')).toBe('root');
    expect(r.match('x', 'GET', '/ICONS/A.SVG')).toBe('icons');
    expect(glob(r, 'dup', '/up/*.bin', 3, { methods: ['PUT', 'POST'] })).toEqual({ index: 3, otherIndex: 1 });
    expect(glob(r, 'post', '/up/*.bin', 4, { methods: ['POST'] })).toBeNull();
  });

  it('refuses patterns that are not linear to match, or not globs', async () => {
    const { globProblem } = await import('../../src/proxy/router.ts');
    expect(globProblem('/files/**/*.png')).toBeNull();
    expect(globProblem('/a/*-*.png')).toMatch(/one \* per segment/);
    expect(globProblem('/a/**/b/**/c')).toMatch(/one \*\* per glob/);
    expect(globProblem('/a/x**')).toMatch(/whole segment/);
    expect(globProblem('/a/b')).toMatch(/use "path"/);
    expect(globProblem('/a/?.png')).toMatch(/reserved/);
  });

  it('a bucket without globs runs no regular expression', () => {
    const r = new Router<string>();
    prefix(r, 'root', '/', 0);
    glob(r, 'other-host', '/**/*.png', 1);
    const exec = RegExp.prototype.exec;
    let calls = 0;
    RegExp.prototype.exec = function (this: RegExp, s: string) {
      calls++;
      return exec.call(this, s);
    };
    try {
      const plain = new Router<string>();
      plain.add({ hosts: [], path: null, pathPrefix: '/', methods: [] }, 'root', 0);
      plain.add({ hosts: [], path: '/x', pathPrefix: null, methods: [] }, 'x', 1);
      expect(plain.match('h', 'GET', '/a/b.png')).toBe('root');
      expect(plain.match('h', 'GET', '/x')).toBe('x');
      expect(calls).toBe(0);
      expect(r.match('h', 'GET', '/a/b.png')).toBe('other-host');
      expect(calls).toBeGreaterThan(0);
    } finally {
      RegExp.prototype.exec = exec;
    }
  });
});
