import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type Database from 'better-sqlite3';
import type { BlobStore } from '../../src/blobstore/port.js';
import { blobKey } from '../../src/dedup/keys.js';
import type { MetaStore } from '../../src/metastore/port.js';
import { PostgresMetaStore } from '../../src/metastore/postgres.js';
import { SqliteMetaStore } from '../../src/metastore/sqlite.js';

export interface MetadataDump {
  files: { path: string; hash: string; version: number }[];
  blobs: {
    hash: string;
    refcount: number;
    logicalSize: number;
    storedSize: number;
    zeroSince: number | null;
  }[];
}

/** Runs one statement straight on the database (the same SQL text in both dialects). */
export async function execSql(meta: MetaStore, statement: string): Promise<void> {
  if (meta instanceof SqliteMetaStore) meta.database.exec(statement);
  else if (meta instanceof PostgresMetaStore) await meta.raw(statement);
  else throw new Error(`no SQL for ${meta.constructor.name}`);
}

/** Reads every metadata row straight from the database, bypassing the code under test. */
export async function dumpMetadata(meta: MetaStore): Promise<MetadataDump> {
  if (meta instanceof SqliteMetaStore) return dumpSqlite(meta.database);
  if (meta instanceof PostgresMetaStore) {
    const files = await meta.raw<MetadataDump['files'][number]>(
      'SELECT path, hash, version FROM files ORDER BY path',
    );
    const blobs = await meta.raw<MetadataDump['blobs'][number]>(
      `SELECT hash, refcount, logical_size AS "logicalSize", stored_size AS "storedSize", zero_since AS "zeroSince"
         FROM blobs ORDER BY hash`,
    );
    return { files, blobs };
  }
  throw new Error(`no metadata dump for ${meta.constructor.name}`);
}

function dumpSqlite(db: Database.Database): MetadataDump {
  const files = db
    .prepare('SELECT path, hash, version FROM files ORDER BY path')
    .all() as MetadataDump['files'];
  const blobs = db
    .prepare(
      `SELECT hash, refcount, logical_size AS logicalSize, stored_size AS storedSize, zero_since AS zeroSince
         FROM blobs ORDER BY hash`,
    )
    .all() as MetadataDump['blobs'];
  return { files, blobs };
}

/**
 * SPEC §3 invariants 1 and 2, checked directly against the stores:
 * every path points at a blob row and an object whose gunzipped content hashes
 * to its key, with the recorded sizes; every count equals the paths pointing at it.
 * Returns the list of violations (empty when all hold).
 */
export async function checkInvariants(
  meta: MetaStore,
  blobs: BlobStore,
  keyDepth: number,
): Promise<string[]> {
  const dump = await dumpMetadata(meta);
  const problems: string[] = [];
  const pointing = new Map<string, number>();
  for (const f of dump.files) pointing.set(f.hash, (pointing.get(f.hash) ?? 0) + 1);
  const rows = new Map(dump.blobs.map((b) => [b.hash, b]));

  for (const [hash, count] of pointing) {
    if (!rows.has(hash)) problems.push(`paths point at ${hash} which has no blob row`);
    else if (rows.get(hash)?.refcount !== count) {
      problems.push(
        `blob ${hash} refcount ${rows.get(hash)?.refcount} but ${count} paths point at it`,
      );
    }
  }
  for (const row of dump.blobs) {
    if (!pointing.has(row.hash) && row.refcount !== 0) {
      problems.push(`blob ${row.hash} refcount ${row.refcount} but no path points at it`);
    }
    if (row.refcount === 0 && row.zeroSince === null)
      problems.push(`blob ${row.hash} unreferenced without zeroSince`);
    if (row.refcount > 0 && row.zeroSince !== null)
      problems.push(`blob ${row.hash} referenced but has zeroSince`);
    if (!pointing.has(row.hash)) continue;
    const reader = await blobs.get(blobKey(row.hash, keyDepth));
    if (!reader) {
      problems.push(`blob ${row.hash} is referenced but has no object`);
      continue;
    }
    if (reader.size !== row.storedSize)
      problems.push(`blob ${row.hash} object size ${reader.size} != ${row.storedSize}`);
    const hash = createHash('sha256');
    let logical = 0;
    try {
      const stored = Buffer.isBuffer(reader.body) ? Readable.from([reader.body]) : reader.body;
      for await (const chunk of stored.pipe(createGunzip())) {
        hash.update(chunk as Buffer);
        logical += (chunk as Buffer).length;
      }
    } catch (err) {
      problems.push(`blob ${row.hash} object is not valid gzip: ${(err as Error).message}`);
      continue;
    }
    if (hash.digest('hex') !== row.hash)
      problems.push(`blob ${row.hash} object content hashes differently`);
    if (logical !== row.logicalSize)
      problems.push(`blob ${row.hash} logical size ${logical} != ${row.logicalSize}`);
  }
  return problems;
}
