import { invalidPath } from '../errors.js';

/** Limits from SPEC §2 "Paths". Byte lengths are of the UTF-8 encoding. */
export const MAX_PATH_BYTES = 1024;
export const MAX_SEGMENT_BYTES = 255;

// C0 controls, DEL and C1 controls (Unicode category Cc): none of them belong in
// a file name, and NUL in particular truncates names in C-based tools.
const CONTROL_CHARS = /\p{Cc}/u;

function percentDecode(encoded: string): string {
  try {
    // decodeURIComponent rejects malformed escapes and invalid UTF-8 sequences,
    // which is exactly "percent-decoded UTF-8" with errors instead of U+FFFD.
    return decodeURIComponent(encoded);
  } catch {
    throw invalidPath('malformed percent-encoding or invalid UTF-8');
  }
}

function checkSegments(path: string): void {
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

/**
 * Turns the still-encoded part of a `/files/{path}` URL into the canonical
 * stored form: decoded, no leading or trailing slash ("a/b/c").
 */
export function parseFilePath(encoded: string): string {
  let path = percentDecode(encoded);
  if (path.endsWith('/')) path = path.slice(0, -1);
  if (path === '') throw invalidPath('empty');
  checkSegments(path);
  return path;
}

/**
 * Parses the `{dir}` of `/list/{dir}`: `dir`, `/dir` and `dir/` name the same
 * directory, and an empty dir is the root. Returns the canonical directory
 * ("" for the root, otherwise "a/b" without slashes).
 */
export function parseListDir(encoded: string): string {
  const dir = percentDecode(encoded).replace(/^\/+/, '').replace(/\/+$/, '');
  if (dir !== '') checkSegments(dir);
  return dir;
}
