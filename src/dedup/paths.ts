import { invalidPath } from '../errors.js';

/** Limits from SPEC §2 "Paths". Byte lengths are of the UTF-8 encoding. */
export const MAX_PATH_BYTES = 1024;
export const MAX_SEGMENT_BYTES = 255;

// C0 controls, DEL and C1 controls (Unicode category Cc): none of them belong in
// a file name, and NUL in particular truncates names in C-based tools.
const CONTROL_CHARS = /\p{Cc}/u;

/**
 * Throws INVALID_PATH unless `path` (decoded, without leading or trailing
 * slash) is a valid file path or directory (SPEC §2): the rule for requests
 * and for files migrated from an old Filetracker alike.
 */
export function checkSegments(path: string): void {
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) {
    throw invalidPath(`longer than ${MAX_PATH_BYTES} bytes`);
  }
  if (CONTROL_CHARS.test(path)) throw invalidPath('contains a control character');
  for (const segment of path.split('/')) {
    if (segment === '') throw invalidPath('empty segment');
    if (segment === '.' || segment === '..') throw invalidPath(`"${segment}" segment`);
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) {
      throw invalidPath(`a segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
    }
  }
}
