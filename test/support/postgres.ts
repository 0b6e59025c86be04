import pg from 'pg';
import { inject } from 'vitest';

let databases = 0;

/** A fresh, empty database on the test PostgreSQL server; returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const base = inject('postgres').url;
  const name = `t_${process.pid}_${Date.now().toString(36)}_${databases++}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Environment that puts a server's metadata and locks in a fresh database. */
export async function postgresEnv(): Promise<Record<string, string>> {
  return {
    KVSTORAGE_TYPE: 'postgres',
    LOCKS_TYPE: 'postgres',
    DATABASE_URL: await createTestDatabase(),
  };
}
