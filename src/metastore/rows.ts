import type { BlobDamage, BlobRecord, FileRecord, StoreTotals } from './port.js';

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

/** The store's totals as both stores' queries name them (added up or kept). */
export interface TotalsRow {
  files: number | string;
  logical: number | string;
  blobs: number | string;
  unique_logical: number | string;
  stored: number | string;
}

/** An empty store has no row to add up; PostgreSQL may hand bigints over as strings. */
export function storeTotals(row: TotalsRow | undefined): StoreTotals {
  return {
    files: Number(row?.files ?? 0),
    logicalBytes: Number(row?.logical ?? 0),
    blobs: Number(row?.blobs ?? 0),
    uniqueLogicalBytes: Number(row?.unique_logical ?? 0),
    storedBytes: Number(row?.stored ?? 0),
  };
}
