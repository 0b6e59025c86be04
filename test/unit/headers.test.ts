import { describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
import {
  acceptsGzip,
  bodyEncoding,
  contentHints,
  requestVersion,
} from '../../src/protocol/headers.js';

describe('acceptsGzip', () => {
  it.each([
    [undefined, true],
    ['gzip, deflate', true],
    ['gzip, deflate, br, zstd', true],
    ['*', true],
    ['identity;q=0.5, gzip;q=0.1', true],
    ['identity', false],
    ['gzip;q=0', false],
    ['gzip;q=0, identity', false],
    ['*;q=0, identity', false],
    ['br', false],
    ['', false],
  ])('Accept-Encoding %j -> %s', (value, expected) => {
    expect(acceptsGzip(value === undefined ? {} : { 'accept-encoding': value })).toBe(expected);
  });
});

describe('bodyEncoding', () => {
  it.each([
    ['gzip', 'gzip'],
    ['GZIP', 'gzip'],
    [' Gzip ', 'gzip'],
    ['x-gzip', 'gzip'],
    ['identity', 'identity'],
    ['br', 'identity'],
    [undefined, 'identity'],
  ])('%j -> %s', (value, expected) => {
    expect(bodyEncoding(value === undefined ? {} : { 'content-encoding': value })).toBe(expected);
  });
});

describe('contentHints', () => {
  const sha = 'a'.repeat(64);
  it('reads both hints, lower-casing the checksum', () => {
    expect(contentHints({ 'sha256-checksum': sha.toUpperCase(), 'logical-size': '42' })).toEqual({
      sha256: sha,
      logicalSize: 42,
    });
  });
  it.each([
    [{ 'sha256-checksum': 'abc' }, /SHA256-Checksum/],
    [{ 'sha256-checksum': 'g'.repeat(64) }, /SHA256-Checksum/],
    [{ 'logical-size': '-1' }, /Logical-Size/],
    [{ 'logical-size': '1.5' }, /Logical-Size/],
    [{ 'logical-size': 'lots' }, /Logical-Size/],
    [{ 'logical-size': '99999999999999999999' }, /Logical-Size/],
  ])('rejects %j', (headers, message) => {
    try {
      contentHints(headers);
      expect.unreachable();
    } catch (err) {
      expect(isAppError(err, 'INVALID_HEADER')).toBe(true);
      expect((err as Error).message).toMatch(message);
    }
  });
});

describe('requestVersion', () => {
  const q = (s: string) => new URLSearchParams(s);
  it('prefers the query parameter over the header', () => {
    expect(
      requestVersion(
        q('last_modified=Fri%2C+13+Feb+2009+23%3A31%3A30+-0000'),
        { 'last-modified': 'Thu, 01 Jan 1970 00:00:00 GMT' },
        true,
      ),
    ).toBe(1234567890);
  });
  it('falls back to the Last-Modified header', () => {
    expect(requestVersion(q(''), { 'last-modified': 'Thu, 01 Jan 1970 00:00:10 GMT' }, true)).toBe(
      10,
    );
  });
  it('is required for PUT/DELETE and optional for list', () => {
    expect(() => requestVersion(q(''), {}, true)).toThrow(/Missing last_modified/);
    expect(requestVersion(q(''), {}, false)).toBeUndefined();
  });
  it('rejects an unparsable or empty value', () => {
    expect(() => requestVersion(q('last_modified=tomorrow'), {}, true)).toThrow(
      /Invalid last_modified "tomorrow"/,
    );
    expect(() => requestVersion(q('last_modified='), {}, false)).toThrow(/Invalid last_modified/);
  });
});
