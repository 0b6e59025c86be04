/**
 * A value as a message may quote it, with a URL's userinfo (user and
 * password) replaced by `***`: FILETRACKER_URL and DATABASE_URL may carry a
 * password. It works on text too broken to parse as a URL (a typo in the
 * scheme must not print the secret), up to the last `@`, line breaks
 * included (the URL parser drops them, so they do occur in such values).
 */
export function withoutUserinfo(text: string): string {
  return text.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)?[\s\S]*@/i,
    (_all, scheme: string | undefined) => `${scheme ?? ''}***@`,
  );
}
