import { describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
import { parseFilePath, parseListDir } from '../../src/protocol/paths.js';

function rejects(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isAppError(err, 'INVALID_PATH')) return err.message;
    throw err;
  }
  throw new Error('expected INVALID_PATH');
}

describe('parseFilePath', () => {
  it.each([
    ['a', 'a'],
    ['dir/file.txt', 'dir/file.txt'],
    ['dir/file.txt/', 'dir/file.txt'],
    ['with%20space/and+plus', 'with space/and+plus'],
    ['%C5%BC%C3%B3%C5%82w.txt', 'żółw.txt'],
    ['a%2Fb', 'a/b'],
    ['Case/Sensitive', 'Case/Sensitive'],
    ['...', '...'],
    ['.hidden', '.hidden'],
    [`${'x'.repeat(255)}/${'y'.repeat(255)}`, `${'x'.repeat(255)}/${'y'.repeat(255)}`],
  ])('accepts %#: %s', (encoded, expected) => {
    expect(parseFilePath(encoded)).toBe(expected);
  });

  it.each([
    ['', /empty/],
    ['/', /empty/],
    ['a//b', /empty segment/],
    ['/a', /empty segment/],
    ['a/./b', /"\." segment/],
    ['a/../b', /"\.\." segment/],
    ['..', /"\.\." segment/],
    ['a%00b', /control character/],
    ['a%0Ab', /control character/],
    ['a%7Fb', /control character/],
    ['a%C2%85b', /control character/],
    ['bad%zz', /malformed/],
    ['bad%C3', /malformed/],
    ['%FF%FE', /malformed/],
    ['x'.repeat(256), /segment is longer than 255/],
    [encodeURIComponent('ż'.repeat(128)), /segment is longer than 255/],
    [Array.from({ length: 5 }, () => 'x'.repeat(205)).join('/'), /longer than 1024 bytes/],
  ])('rejects %#: %s', (encoded, message) => {
    expect(rejects(() => parseFilePath(encoded))).toMatch(message);
  });

  it('accepts exactly 1024 bytes', () => {
    const exact = `${'x'.repeat(255)}/${'x'.repeat(255)}/${'x'.repeat(255)}/${'x'.repeat(254)}/y`;
    expect(Buffer.byteLength(exact)).toBe(1024);
    expect(parseFilePath(exact)).toBe(exact);
    expect(rejects(() => parseFilePath(`${exact}x`))).toMatch(/1024/);
  });
});

describe('parseListDir', () => {
  it.each([
    ['', ''],
    ['/', ''],
    ['dir', 'dir'],
    ['/dir', 'dir'],
    ['dir/', 'dir'],
    ['//dir//', 'dir'],
    ['a/b', 'a/b'],
  ])('%j is %j', (encoded, expected) => {
    expect(parseListDir(encoded)).toBe(expected);
  });

  it.each(['a//b', 'a/../b', 'a%00'])('rejects %j', (encoded) => {
    rejects(() => parseListDir(encoded));
  });
});
