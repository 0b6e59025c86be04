import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatVersion, parseVersion } from '../../src/protocol/versions.js';

/**
 * How Python reads and writes versions, written by Python itself
 * (test/fixtures/parsedate/generate.py, run with Debian's python3).
 */
interface Row {
  input: string;
  kind: 'valid' | 'edge';
  /** mktime_tz(parsedate_tz(input)), null when Python refuses it. */
  value: number | null;
  /** formatdate(value), null where Python cannot format it. */
  formatted: string | null;
}
const table = JSON.parse(
  readFileSync(new URL('../fixtures/parsedate/table.json', import.meta.url), 'utf8'),
) as Row[];

describe('versions against Python (email.utils.parsedate_tz + mktime_tz)', () => {
  it('the table covers both kinds', () => {
    expect(table.filter((r) => r.kind === 'valid').length).toBeGreaterThan(400);
    expect(table.filter((r) => r.kind === 'edge').length).toBeGreaterThan(400);
  });

  it('never reads a date otherwise than Python, and never accepts one Python refuses', () => {
    const misread = table.flatMap((row) => {
      const ours = parseVersion(row.input);
      return ours === null || ours === row.value ? [] : [{ ...row, ours }];
    });
    expect(misread).toEqual([]);
  });

  it('accepts every well-formed date, as Python reads it', () => {
    const refused = table.filter((r) => r.kind === 'valid' && parseVersion(r.input) !== r.value);
    expect(refused).toEqual([]);
  });

  it('answers every accepted version the way formatdate writes it', () => {
    const differing = table.flatMap((row) => {
      const ours = parseVersion(row.input);
      if (ours === null) return [];
      const formatted = formatVersion(ours);
      return formatted === row.formatted
        ? []
        : [{ input: row.input, formatted, python: row.formatted }];
    });
    expect(differing).toEqual([]);
  });

  function python(input: string): Row {
    const row = table.find((r) => r.input === input);
    if (!row) throw new Error(`${input} is not in the table`);
    return row;
  }

  // The cases issue #9 named, with what Python makes of them.
  it.each([
    ['Fri, 13 Feb 109 23:31:30 -0000', 'Wed, 13 Feb 0109 23:31:30 -0000'],
    ['Fri, 13 Feb 50 23:31:30 -0000', 'Sun, 13 Feb 2050 23:31:30 -0000'],
    ['Fri, 13 Feb 68 23:31:30 -0000', 'Mon, 13 Feb 2068 23:31:30 -0000'],
    ['Fri, 13 Feb 69 23:31:30 -0000', 'Thu, 13 Feb 1969 23:31:30 -0000'],
    ['Sat, 01 Jan 0000 00:00:00 +9959', 'Mon, 27 Dec 1999 20:01:00 -0000'],
  ])('%s is read as Python reads it: %s', (input, answer) => {
    const row = python(input);
    expect(parseVersion(input)).toBe(row.value);
    expect(formatVersion(parseVersion(input) as number)).toBe(answer);
    expect(row.formatted).toBe(answer);
  });

  // What Python reads by guessing or rolling over, and we refuse (400) instead.
  it.each([
    ['Fri, 30 Feb 2009 00:00:00 GMT', '2 March to Python'],
    ['Fri, 13 Feb 2009 24:00:00 GMT', 'hour 24'],
    ['Fri, 13 Feb 2009 23:60:00 GMT', 'minute 60'],
    ['Fri, 13 Feb 2009 23:31:30 CET', 'a zone Python does not know, read as UTC'],
    ['Fri, 13 Feb 2009 23:31:30 +05:00', 'an offset Python ignores'],
    ['Fri, 13 Feb 2009 23:31:30 +0099', 'minutes of an offset past 59'],
    ['Fri, 13 Feb 2_009 23:31:30 GMT', 'an underscore in a number'],
    ['Fri, 13 Feb 2009 23:31:30 GMT extra words', 'words after the zone'],
    ['Fri, 31 Dec 9999 23:59:59 -0001', 'past the year 9999'],
    ['Fri, 01 Jan 0100 00:00:00 +0001', 'a year-99 answer Python itself would read as 1999'],
  ])('refuses %s (%s)', (input) => {
    expect(python(input).value).not.toBeNull();
    expect(parseVersion(input)).toBeNull();
  });
});

describe('formatVersion', () => {
  it('round-trips through parseVersion from year 100 to 9999', () => {
    for (const v of [
      -59011459200,
      -2208988800,
      -86400 * 365,
      -1,
      0,
      1,
      1234567890,
      4102444800,
      253402300799,
    ]) {
      expect(parseVersion(formatVersion(v))).toBe(v);
    }
  });
});
