import type { Readable } from 'node:stream';
import type { BodyEncoding } from '../dedup/upload-check.js';

/** What the old Filetracker says of a file. */
export interface OldHead {
  version: number;
  encoding: BodyEncoding;
  /** Bytes of the body as it is sent (Content-Length), when known. */
  length?: number | undefined;
  /** Uncompressed size, when the old store says it (V2's Logical-Size). */
  logicalSize?: number | undefined;
}

/** A file fetched from the old Filetracker: its body as sent (gzip for V2, raw for V1). */
export interface OldFile extends OldHead {
  body: Readable;
}

/** A file to send to the old Filetracker (live migration writes go to both). */
export interface OldUpload {
  version: number;
  /** gzip bytes */
  body: Readable | Buffer;
  length: number;
  logicalSize: number;
  sha256: string;
}

/**
 * Where files are migrated from: the old Filetracker server (V2 or V1, over
 * HTTP) or a V1 storage folder. Absence is null; a failing old store is a
 * thrown BACKEND_UNAVAILABLE ('filetracker'), never an absence.
 */
export interface OldStore {
  /** For logs and reports. */
  readonly name: string;
  /**
   * Every file under `dir` ("" = all) with a version up to `cutoff`, as
   * paths relative to `dir`, in the old store's order, with constant memory.
   * Absent where the old store cannot list (a V1 HTTP server).
   */
  list?(dir: string, cutoff?: number): AsyncIterable<string>;
  head(path: string, signal?: AbortSignal): Promise<OldHead | null>;
  fetch(path: string, signal?: AbortSignal): Promise<OldFile | null>;
  /** Where live migration sends writes to the old store too. */
  put?(path: string, upload: OldUpload): Promise<void>;
  /** 'absent' when the old store did not have it. */
  delete?(path: string, version: number): Promise<'done' | 'absent'>;
  close(): Promise<void>;
}

/**
 * The original server lists non-ASCII names mis-encoded: each UTF-8 byte of
 * the name read as a Latin-1 character and encoded as UTF-8 again (`über` is
 * listed as `Ã¼ber`), and fetching the listed name is a 404. It does that to
 * every non-ASCII name, so the reverse is always right: a listed name whose
 * characters are all Latin-1 and whose bytes then read as UTF-8 is the real
 * name in disguise. Any other name is taken as it is.
 */
export function realName(listed: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: Latin-1 is the point
  if (!/[\u0080-\u00ff]/.test(listed) || /[^\u0000-\u00ff]/.test(listed)) return listed;
  const bytes = Buffer.from(listed, 'latin1');
  const decoded = bytes.toString('utf8');
  // A byte sequence that is not UTF-8 decodes with U+FFFD: not a disguised name.
  return Buffer.from(decoded, 'utf8').equals(bytes) ? decoded : listed;
}

/** Every file of a store that can list (a V2 server, a V1 folder). */
export function everyFile(store: OldStore): AsyncIterable<string> {
  if (!store.list) throw new Error(`${store.name} cannot list its files`);
  return store.list('');
}
