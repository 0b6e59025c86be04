/**
 * Filetracker versions: whole seconds since the epoch, carried on the wire as
 * RFC 2822 dates. The Python client sends `email.utils.formatdate(v)`; the
 * original server reads what it gets with `email.utils.parsedate_tz` and
 * `mktime_tz`, and answers with `formatdate`.
 *
 * So a version is read the way Python reads it (SPEC §2), quirks included:
 * a year below 100 is a two-digit year (`50` is 2050, `0000` is 2000), a
 * three-digit year is taken as it is (`109` is the year 109), the month may
 * come before the day, seconds and zone are optional, and so on. On top of
 * that, a date Python would read by guessing or by rolling fields over is
 * refused instead (400): unknown zone names and zones such as `+05:00`
 * (Python silently reads them as UTC), days, hours or minutes out of range
 * (`30 Feb` is 2 March to Python), numbers with signs or underscores, words
 * after the zone, and results outside the years 100-9999, which no answer
 * could carry back to a Python client. Whatever is accepted reads exactly as Python reads it; the table in
 * test/fixtures/parsedate/ (written by Python itself) holds us to that.
 */

const MONTHS = [
  'jan',
  'feb',
  'mar',
  'apr',
  'may',
  'jun',
  'jul',
  'aug',
  'sep',
  'oct',
  'nov',
  'dec',
  'january',
  'february',
  'march',
  'april',
  'may',
  'june',
  'july',
  'august',
  'september',
  'october',
  'november',
  'december',
];
const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
/** The zone names Python knows, as ±hhmm read as a decimal number (EST is -500). */
const NAMED_ZONES: Record<string, number> = {
  UT: 0,
  UTC: 0,
  GMT: 0,
  Z: 0,
  AST: -400,
  ADT: -300,
  EST: -500,
  EDT: -400,
  CST: -600,
  CDT: -500,
  MST: -700,
  MDT: -600,
  PST: -800,
  PDT: -700,
};

/** The pieces of a date as Python's parsedate_tz picks them out of the text, before conversion. */
interface DateTokens {
  day: string;
  /** 1-12 */
  month: number;
  year: string;
  hour: string;
  minute: string;
  second: string;
  /** '' when the text has none. */
  zone: string;
  /** Words after the five Python reads (it ignores them). */
  extra: number;
}

/**
 * Python's parsedate_tz, step for step, up to the point where it converts
 * the pieces to numbers: which word is the day, the month, the year, the
 * time and the zone. Null where parsedate_tz gives up on the shape.
 */
function dateTokens(text: string): DateTokens | null {
  let data = text.split(/[ \t]+/).filter((w) => w !== '');
  const first = data[0];
  if (first === undefined) return null;
  // A weekday is dropped, with or without its comma; "Fri,13" keeps what follows the comma.
  if (first.endsWith(',') || WEEKDAYS.includes(first.toLowerCase())) data.shift();
  else {
    const comma = first.lastIndexOf(',');
    if (comma >= 0) data[0] = first.slice(comma + 1);
  }
  // RFC 850: "13-Feb-09 23:31:30 GMT".
  if (data.length === 3) {
    const dashed = (data[0] ?? '').split('-');
    if (dashed.length === 3) data = [...dashed, ...data.slice(1)];
  }
  // Four words: the zone is glued to the time ("23:31:30+0100"), or absent.
  if (data.length === 4) {
    const last = data[3] ?? '';
    let sign = last.indexOf('+');
    if (sign === -1) sign = last.indexOf('-');
    if (sign > 0) data.splice(3, 1, last.slice(0, sign), last.slice(sign));
    else data.push('');
  }
  if (data.length < 5) return null;
  let [day = '', monthWord = '', year = '', time = '', zone = ''] = data;
  if (day === '' || monthWord === '' || year === '') return null;
  monthWord = monthWord.toLowerCase();
  if (!MONTHS.includes(monthWord)) {
    // "Feb 13 2009": the month came first.
    [day, monthWord] = [monthWord, day.toLowerCase()];
    if (!MONTHS.includes(monthWord)) return null;
  }
  const month = (MONTHS.indexOf(monthWord) % 12) + 1;
  if (day.endsWith(',')) day = day.slice(0, -1);
  // asctime order: "Feb 13 23:31:30 2009".
  if (year.indexOf(':') > 0) [year, time] = [time, year];
  if (year.endsWith(',')) {
    year = year.slice(0, -1);
    if (year === '') return null;
  }
  if (!/^[0-9]/.test(year)) [year, zone] = [zone, year];
  if (time.endsWith(',')) time = time.slice(0, -1);
  let clock = time.split(':');
  if (clock.length === 1 && time.includes('.')) {
    clock = time.split('.');
    if (clock.length !== 2 && clock.length !== 3) return null;
  } else if (clock.length !== 2 && clock.length !== 3) return null;
  const [hour = '', minute = '', second = '0'] = clock;
  return { day, month, year, hour, minute, second, zone, extra: Math.max(0, data.length - 5) };
}

/** Plain digits only: a sign or an underscore in a date is a mistake, not a number we guess at. */
function digits(word: string): number | null {
  return /^[0-9]{1,9}$/.test(word) ? Number(word) : null;
}

/** Seconds east of UTC for an accepted zone, or null for a zone refused. */
function zoneOffset(zone: string): number | null {
  const name = zone.toUpperCase();
  if (name === '') return 0;
  const named = NAMED_ZONES[name];
  // Python reads "-0500" as the number -500: hours are its hundreds, minutes the rest.
  const hhmm = named ?? (/^[+-][0-9]{4}$/.test(name) ? Number(name) : null);
  if (hhmm === null) return null;
  const abs = Math.abs(hhmm);
  if (abs % 100 > 59) return null;
  return Math.sign(hhmm) * (Math.floor(abs / 100) * 3600 + (abs % 100) * 60);
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

/**
 * 0100-01-01T00:00:00Z to 9999-12-31T23:59:59Z: the versions an answer can
 * carry so that Python reads it back as the same version (it would read the
 * year 0099 of an earlier one as 1999).
 */
const FIRST_VERSION = -59011459200;
const LAST_VERSION = 253402300799;

/** Parses a version (see the top of this file) into seconds since the epoch, or returns null. */
export function parseVersion(text: string): number | null {
  // Python splits on more kinds of white space than these; nothing else belongs in a date.
  if (!/^[\x20-\x7e\t]*$/.test(text)) return null;
  const t = dateTokens(text);
  if (t === null || t.extra > 0) return null;
  const [yearNumber, day, hour, minute, second] = [t.year, t.day, t.hour, t.minute, t.second].map(
    digits,
  );
  if (yearNumber == null || day == null || hour == null || minute == null || second == null) {
    return null;
  }
  // Python's two-digit years: 69-99 are 1969-1999, 0-68 are 2000-2068.
  const year = yearNumber < 100 ? yearNumber + (yearNumber > 68 ? 1900 : 2000) : yearNumber;
  const offset = zoneOffset(t.zone);
  if (offset === null || year > 9999) return null;
  if (day < 1 || day > daysInMonth(year, t.month)) return null;
  // A leap second (60) is allowed and rolls over, as Python's timegm does.
  if (hour > 23 || minute > 59 || second > 60) return null;
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(year, t.month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  const version = date.getTime() / 1000 - offset;
  return version >= FIRST_VERSION && version <= LAST_VERSION ? version : null;
}

const MONTH_NAMES = [
  'Jan',
  'Feb',
  'Mar',
  'Apr',
  'May',
  'Jun',
  'Jul',
  'Aug',
  'Sep',
  'Oct',
  'Nov',
  'Dec',
];
const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const pad2 = (n: number) => String(n).padStart(2, '0');

/**
 * Formats a version the way the original server does (Python
 * `email.utils.formatdate`). Only versions parseVersion() accepts are ever
 * stored, so the year always has four digits.
 */
export function formatVersion(seconds: number): string {
  const d = new Date(seconds * 1000);
  return (
    `${DAY_NAMES[d.getUTCDay()]}, ${pad2(d.getUTCDate())} ${MONTH_NAMES[d.getUTCMonth()]} ` +
    `${String(d.getUTCFullYear()).padStart(4, '0')} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:` +
    `${pad2(d.getUTCSeconds())} -0000`
  );
}
