/** The HTTP status of an S3 SDK error, when the server answered at all. */
export function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** An S3 SDK error in one line: name, code, status, message. */
export function describeError(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  const status = statusOf(err);
  return [e.name, e.code, status ? `HTTP ${status}` : undefined, e.message]
    .filter(Boolean)
    .join(': ');
}
