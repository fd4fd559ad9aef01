import { describe, expect, it } from 'vitest';
import { normalizeTarget } from '../../src/proxy/normalize.ts';

describe('normalizeTarget', () => {
  it.each([
    ['/', '/'],
    ['/api/users', '/api/users'],
    ['/api//users', '/api/users'],
    ['/a/./b', '/a/b'],
    ['/a/b/../c', '/a/c'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/%2E/b', '/a/b'],
    ['/%61pi/x', '/api/x'],
    ['/a/b/', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/a%20b', '/a%20b'],
    ['/x%3fy', '/x%3Fy'],
  ])('%s → %s', (raw, path) => {
    const r = normalizeTarget(raw);
    expect(typeof r).toBe('object');
    expect((r as { path: string }).path).toBe(path);
  });

  it('keeps the query as sent', () => {
    expect(normalizeTarget('/a//b?x=1&y=%2F')).toEqual({ path: '/a/b', query: '?x=1&y=%2F', authority: null, flags: 0 });
  });

  it.each([
    ['/a%2fb', 'encoded_path_separator'],
    ['/a%2Fb', 'encoded_path_separator'],
    ['/a%5cb', 'encoded_path_separator'],
    ['/a\\b', 'invalid_request_target'],
    ['/a%00b', 'control_character'],
    ['/a%0d%0ab', 'control_character'],
    ['/..', 'path_traversal'],
    ['/a/../../etc/passwd', 'path_traversal'],
    ['/%2e%2e/etc', 'path_traversal'],
    ['/a%zz', 'invalid_percent_encoding'],
    ['/a%2', 'invalid_percent_encoding'],
    ['/a%c3', 'invalid_utf8'],
    ['/a%c3%28', 'invalid_utf8'],
    ['/a%ff', 'invalid_utf8'],
    ['/a%c0%af', 'invalid_utf8'],
    ['*', 'invalid_request_target'],
    ['example.com:443', 'invalid_request_target'],
    ['/a?b\x01', 'control_character'],
  ])('refuses %j with %s', (raw, reason) => {
    expect(normalizeTarget(raw)).toBe(reason);
  });

  it('takes the authority of an absolute-form target', () => {
    expect(normalizeTarget('http://Example.com:8080/a/../b?q')).toEqual({ path: '/b', query: '?q', authority: 'example.com:8080', flags: 0 });
    expect(normalizeTarget('http://user@example.com/')).toBe('invalid_request_target');
  });
});
