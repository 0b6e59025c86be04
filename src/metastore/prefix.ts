/**
 * The smallest string greater than every string starting with `prefix`, for
 * range scans ("path > prefix AND path < upper") that use the primary key
 * instead of a LIKE that would need escaping and a special index. Directory
 * prefixes end with "/", so bumping that last character ("dir/" -> "dir0")
 * is enough. Null for the root (no upper bound).
 */
export function prefixUpperBound(prefix: string): string | null {
  if (prefix === '') return null;
  if (!prefix.endsWith('/')) throw new Error(`directory prefix must end with "/": ${prefix}`);
  return `${prefix.slice(0, -1)}0`;
}
