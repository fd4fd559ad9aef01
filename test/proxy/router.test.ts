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
