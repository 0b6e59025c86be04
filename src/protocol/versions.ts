/**
 * Filetracker versions: whole seconds since the epoch, carried on the wire as
 * RFC 2822 dates. The Python client sends `email.utils.formatdate(v)` and reads
 * responses with `parsedate_tz`, so we accept what RFC 2822 (and its obsolete
 * forms) allow and always answer in the exact shape of `formatdate`:
 * `Fri, 13 Feb 2009 23:31:30 -0000`.
 */

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
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

/** RFC 2822 §4.3 obsolete zone names, in minutes east of UTC. */
const NAMED_ZONES: Record<string, number> = {
  UT: 0,
  UTC: 0,
  GMT: 0,
  Z: 0,
  EST: -300,
  EDT: -240,
  CST: -360,
  CDT: -300,
  MST: -420,
  MDT: -360,
  PST: -480,
  PDT: -420,
};

// [weekday ","] day month year hour ":" minute [":" second] [zone]
const RFC2822 =
  /^\s*(?:(mon|tue|wed|thu|fri|sat|sun)\s*,\s*)?(\d{1,2})\s+([a-z]{3})\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([+-]\d{4}|[a-z]{1,3}))?\s*$/i;

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month] ?? 0;
}

/**
 * Parses an RFC 2822 date into whole seconds since the epoch, or returns null.
 * A missing zone is read as UTC. The weekday, when present, is not checked
 * against the date (Python's parser does not check it either).
 */
export function parseVersion(text: string): number | null {
  const m = RFC2822.exec(text);
  if (!m) return null;
  const [, , dayText, monthText, yearText, hourText, minuteText, secondText, zoneText] = m;
  const month = MONTHS.indexOf((monthText ?? '').toLowerCase());
  if (month < 0) return null;
  let year = Number(yearText);
  // RFC 2822 §4.3: two-digit years 00-49 are 20xx, 50-99 are 19xx; three-digit years add 1900.
  if (yearText?.length === 2) year += year < 50 ? 2000 : 1900;
  else if (yearText?.length === 3) year += 1900;
  const day = Number(dayText);
  const hour = Number(hourText);
  const minute = Number(minuteText);
  const second = secondText === undefined ? 0 : Number(secondText);
  if (day < 1 || day > daysInMonth(year, month)) return null;
  // A leap second (60) is allowed and rolls over, as Python's timegm does.
  if (hour > 23 || minute > 59 || second > 60) return null;

  let offsetMinutes = 0;
  if (zoneText !== undefined) {
    if (zoneText.startsWith('+') || zoneText.startsWith('-')) {
      const hh = Number(zoneText.slice(1, 3));
      const mm = Number(zoneText.slice(3, 5));
      if (mm > 59) return null;
      offsetMinutes = (zoneText.startsWith('-') ? -1 : 1) * (hh * 60 + mm);
    } else {
      const named = NAMED_ZONES[zoneText.toUpperCase()];
      if (named === undefined) return null;
      offsetMinutes = named;
    }
  }
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month, day);
  date.setUTCHours(hour, minute, second, 0);
  return date.getTime() / 1000 - offsetMinutes * 60;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Formats a version the way the original server does (Python `email.utils.formatdate`). */
export function formatVersion(seconds: number): string {
  const d = new Date(seconds * 1000);
  return (
    `${DAY_NAMES[d.getUTCDay()]}, ${pad2(d.getUTCDate())} ${MONTH_NAMES[d.getUTCMonth()]} ` +
    `${String(d.getUTCFullYear()).padStart(4, '0')} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:` +
    `${pad2(d.getUTCSeconds())} -0000`
  );
}
