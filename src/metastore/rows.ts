import type { BlobDamage, BlobRecord, FileRecord } from './port.js';

/**
 * Rows as both SQL stores read them (same column names in SQLite and
 * PostgreSQL), and the one mapping from rows to the port's records.
 */
export interface FileRow {
  path: string;
  hash: string;
  version: number;
  logical_size: number;
  stored_size: number;
}

export interface BlobRow {
  hash: string;
  refcount: number;
  logical_size: number;
  stored_size: number;
  zero_since: number | null;
  damage: BlobDamage | null;
}

export function fileRecord(row: FileRow): FileRecord {
  return {
    path: row.path,
    hash: row.hash,
    version: row.version,
    logicalSize: row.logical_size,
    storedSize: row.stored_size,
  };
}

export function blobRecord(row: BlobRow): BlobRecord {
  return {
    hash: row.hash,
    refcount: row.refcount,
    logicalSize: row.logical_size,
    storedSize: row.stored_size,
    zeroSince: row.zero_since,
    damage: row.damage,
  };
}
