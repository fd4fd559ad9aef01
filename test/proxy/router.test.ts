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
