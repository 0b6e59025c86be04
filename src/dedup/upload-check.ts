import { createHash, type Hash } from 'node:crypto';
import { checksumMismatch, invalidHeader, sizeMismatch, tooLarge } from '../errors.js';
import { SHA256_HEX } from './keys.js';

export type BodyEncoding = 'gzip' | 'identity';

export interface ContentHints {
  /** SHA256-Checksum: hex SHA-256 of the uncompressed content. */
  sha256?: string | undefined;
  /** Logical-Size: uncompressed byte count. */
  logicalSize?: number | undefined;
}

export interface UploadRules {
  encoding: BodyEncoding;
  hints: ContentHints;
  /** false with TRUST_CLIENT_CHECKSUMS=true: hints are taken as they are. */
  verify: boolean;
  /** MAX_UPLOAD_SIZE, in uncompressed bytes. */
  maxLogicalSize: number;
  /** Content-Length, when the client sent one. */
  declaredLength?: number | undefined;
}

/** What an upload turned out to hold. */
export interface ContentId {
  sha256: string;
  logicalSize: number;
}

/**
 * The most stored (gzip) bytes an upload within `maxLogicalSize` can have:
 * gzip of incompressible data is slightly larger than the data; anything far
 * beyond that is not a legitimate upload.
 */
export function maxStoredSize(maxLogicalSize: number): number {
  return maxLogicalSize + Math.ceil(maxLogicalSize / 100) + 65536;
}

/**
 * The one place where an upload is measured, limited and verified (SPEC §2,
 * "Upload bodies"). Every way of reading a body (a small one in a single
 * buffer, a stream into the blob store, a spill to disk, a check of content
 * that is already stored) feeds its bytes through one of these, so they all
 * accept and refuse exactly the same input with the same errors:
 *
 * - what the headers already show to be wrong or too large is refused when
 *   the check is made, before a byte is read;
 * - the stored (gzip) bytes and the content bytes are counted as they come,
 *   and the first byte past MAX_UPLOAD_SIZE or past the declared Logical-Size
 *   fails the upload at once, so a gzip bomb is cut off, not inflated;
 * - at the end, the content's size and SHA-256 must equal the hints.
 *
 * Nothing here changes any state: callers store or reference content only
 * after finish() has returned.
 */
export class UploadCheck {
  private hash: Hash = createHash('sha256');
  private logical = 0;
  private stored = 0;
  private readonly maxStored: number;
  /** Logical-Size when it is to be verified: a body growing past it fails at once. */
  private readonly declaredContent: number | undefined;

  constructor(private readonly rules: UploadRules) {
    const { hints, maxLogicalSize: max } = rules;
    if (hints.sha256 !== undefined && !SHA256_HEX.test(hints.sha256)) {
      throw invalidHeader('SHA256-Checksum', 'expected 64 hexadecimal digits');
    }
    if (hints.logicalSize !== undefined && hints.logicalSize > max) throw tooLarge(max);
    if (rules.encoding === 'identity' && (rules.declaredLength ?? 0) > max) throw tooLarge(max);
    this.maxStored = maxStoredSize(max);
    this.declaredContent = rules.verify ? hints.logicalSize : undefined;
  }

  get encoding(): BodyEncoding {
    return this.rules.encoding;
  }

  /**
   * True when the content is known from the hints alone (TRUST_CLIENT_CHECKSUMS
   * with a gzip body and both hints): the body is stored as sent, never inflated.
   */
  get trusted(): boolean {
    const { verify, encoding, hints } = this.rules;
    return (
      !verify &&
      encoding === 'gzip' &&
      hints.sha256 !== undefined &&
      hints.logicalSize !== undefined
    );
  }

  /**
   * The content's hash before a byte is read: the client's SHA256-Checksum
   * when the body will be verified against it (or is trusted as gzip). A raw
   * body is always hashed, so without verification its hint means nothing.
   */
  get knownHash(): string | undefined {
    return this.rules.verify || this.trusted ? this.rules.hints.sha256 : undefined;
  }

  /** Counts bytes as they are stored (gzip); throws TOO_LARGE past what any allowed content compresses to. */
  storedBytes(count: number): void {
    this.stored += count;
    if (this.stored > this.maxStored) throw tooLarge(this.rules.maxLogicalSize);
  }

  /** Hashes and counts content (uncompressed) bytes; throws as soon as a limit is crossed. */
  content(chunk: Buffer): void {
    this.logical += chunk.length;
    if (this.logical > this.rules.maxLogicalSize) throw tooLarge(this.rules.maxLogicalSize);
    if (this.declaredContent !== undefined && this.logical > this.declaredContent) {
      throw sizeMismatch(this.declaredContent, `more than ${this.declaredContent}`);
    }
    this.hash.update(chunk);
  }

  /**
   * Forgets the content counted so far, for a reader that gave up on one way
   * of inflating the body and starts over on another (checkBuffer).
   */
  restartContent(): void {
    this.logical = 0;
    this.hash = createHash('sha256');
  }

  /** Logical-Size when the body is verified against it: the content may be no larger. */
  get declaredSize(): number | undefined {
    return this.declaredContent;
  }

  /** Stored (gzip) bytes counted so far. */
  get storedSize(): number {
    return this.stored;
  }

  /** After the last byte: what the content is, verified against the hints. */
  finish(): ContentId {
    const { hints, verify } = this.rules;
    if (this.trusted) {
      return { sha256: hints.sha256 as string, logicalSize: hints.logicalSize as number };
    }
    const found = { sha256: this.hash.digest('hex'), logicalSize: this.logical };
    if (verify) {
      if (hints.logicalSize !== undefined && hints.logicalSize !== found.logicalSize) {
        throw sizeMismatch(hints.logicalSize, String(found.logicalSize));
      }
      if (hints.sha256 !== undefined && hints.sha256 !== found.sha256) {
        throw checksumMismatch(hints.sha256, found.sha256);
      }
    }
    return found;
  }
}
