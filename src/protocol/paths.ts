import { checkSegments } from '../dedup/paths.js';
import { invalidPath } from '../errors.js';

function percentDecode(encoded: string): string {
  try {
    // decodeURIComponent rejects malformed escapes and invalid UTF-8 sequences,
    // which is exactly "percent-decoded UTF-8" with errors instead of U+FFFD.
    return decodeURIComponent(encoded);
  } catch {
    throw invalidPath('malformed percent-encoding or invalid UTF-8');
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
