import { describe, expect, it } from 'vitest';
import { formatVersion, parseVersion } from '../../src/protocol/versions.js';

describe('parseVersion', () => {
  it.each([
    // What the Python client sends: email.utils.formatdate(1234567890)
    ['Fri, 13 Feb 2009 23:31:30 -0000', 1234567890],
    ['Fri, 13 Feb 2009 23:31:30 GMT', 1234567890],
    ['Fri, 13 Feb 2009 23:31:30 UT', 1234567890],
    ['Fri, 13 Feb 2009 23:31:30 +0000', 1234567890],
    ['13 Feb 2009 23:31:30 -0000', 1234567890],
    ['Fri,13 Feb 2009 23:31:30 -0000', 1234567890],
    ['fri, 13 feb 2009 23:31:30 gmt', 1234567890],
    // Numeric offsets are applied: 00:31:30 at +0100 is 23:31:30 UTC the day before.
    ['Sat, 14 Feb 2009 00:31:30 +0100', 1234567890],
    ['Fri, 13 Feb 2009 18:31:30 EST', 1234567890],
    ['Fri, 13 Feb 2009 18:01:30 -0530', 1234567890],
    // Seconds are optional; a missing zone is UTC.
    ['Fri, 13 Feb 2009 23:31 -0000', 1234567860],
    ['Fri, 13 Feb 2009 23:31:30', 1234567890],
    // The weekday is optional and, as in Python, not checked.
    ['Mon, 13 Feb 2009 23:31:30 -0000', 1234567890],
    // Pre-1970 dates are valid versions.
    ['Wed, 31 Dec 1969 23:59:59 -0000', -1],
    ['Thu, 01 Jan 1970 00:00:00 -0000', 0],
    ['Mon, 01 Jan 1900 00:00:00 -0000', -2208988800],
    // RFC 2822 obsolete two-digit years.
    ['13 Feb 09 23:31:30 GMT', 1234567890],
    ['1 Jan 70 00:00:00 GMT', 0],
    // A leap second rolls over.
    ['Wed, 31 Dec 2008 23:59:60 -0000', 1230768000],
    ['29 Feb 2024 12:00:00 GMT', 1709208000],
  ])('%s -> %d', (text, expected) => {
    expect(parseVersion(text)).toBe(expected);
  });

  it.each([
    '',
    'yesterday',
    '1234567890',
    '2009-02-13T23:31:30Z',
    'Fri, 13 Foo 2009 23:31:30 -0000',
    'Fri, 32 Jan 2009 23:31:30 -0000',
    'Sat, 29 Feb 2025 00:00:00 -0000',
    'Fri, 31 Apr 2009 00:00:00 -0000',
    'Fri, 13 Feb 2009 24:00:00 -0000',
    'Fri, 13 Feb 2009 23:60:00 -0000',
    'Fri, 13 Feb 2009 23:31:61 -0000',
    'Fri, 13 Feb 2009 23:31:30 +0160',
    'Fri, 13 Feb 2009 23:31:30 XYZ',
    'Fri, 13 Feb 2009 23:31:30 -0000 trailing',
    'Fri, 0 Feb 2009 23:31:30 -0000',
  ])('rejects %j', (text) => {
    expect(parseVersion(text)).toBeNull();
  });
});

describe('formatVersion', () => {
  it('matches Python email.utils.formatdate', () => {
    expect(formatVersion(1234567890)).toBe('Fri, 13 Feb 2009 23:31:30 -0000');
    expect(formatVersion(0)).toBe('Thu, 01 Jan 1970 00:00:00 -0000');
    expect(formatVersion(-1)).toBe('Wed, 31 Dec 1969 23:59:59 -0000');
    expect(formatVersion(1709208000)).toBe('Thu, 29 Feb 2024 12:00:00 -0000');
  });

  it('round-trips through parseVersion', () => {
    for (const v of [-2208988800, -86400 * 365, -1, 0, 1, 1234567890, 4102444800, 253402300799]) {
      expect(parseVersion(formatVersion(v))).toBe(v);
    }
  });
});
