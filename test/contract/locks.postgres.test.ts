import pino from 'pino';
import { PostgresLockManager } from '../../src/locks/postgres.js';
import { createPool } from '../../src/postgres/pool.js';
import { createTestDatabase } from '../support/postgres.js';
import { lockContract } from './locks.contract.js';

const logger = pino({ level: 'silent' });

/**
 * Two managers with their own (small) pools stand for two instances; small
 * pools also prove that many concurrent sessions queue for connections
 * instead of deadlocking.
 */
lockContract('postgres advisory locks', async () => {
  const url = await createTestDatabase();
  const pool = (max: number, name: string) =>
    createPool(
      {
        connectionString: url,
        max,
        queryTimeoutMs: 0,
        connectTimeoutMs: 10_000,
        applicationName: name,
      },
      logger,
    );
  const pools = [
    pool(4, 'locks-a'),
    pool(2, 'query-a'),
    pool(4, 'locks-b'),
    pool(2, 'query-b'),
  ] as const;
  return {
    a: new PostgresLockManager(pools[0], pools[1], logger),
    b: new PostgresLockManager(pools[2], pools[3], logger),
    close: async () => {
      await Promise.all(pools.map((p) => p.end()));
    },
  };
});
