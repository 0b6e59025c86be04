import { readFileSync } from 'node:fs';
import { withoutUserinfo } from '../observability/redact.js';
import { type Config, VARIABLE_NAMES, VARIABLES, type VariableName } from './schema.js';

/** A configuration that cannot start the server; the message names every bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  /** Path of a JSON file whose keys are variable names. */
  file?: string | undefined;
  /** Usually process.env. Only the known variable names are read. */
  env: Record<string, string | undefined>;
}

type RawValue = string | number | boolean;

function readFile(path: string): Record<string, RawValue> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError([`config file ${path}: ${(err as Error).message}`]);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError([`config file ${path}: must be a JSON object of VARIABLE: value`]);
  }
  const problems: string[] = [];
  const values: Record<string, RawValue> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (!(VARIABLE_NAMES as string[]).includes(key)) {
      // A typo in a config file must not silently fall back to a default.
      problems.push(`config file ${path}: unknown variable ${key}`);
    } else if (value === null) {
      // null means "unset", the same as leaving the key out.
    } else if (
      typeof value === 'string' ||
      typeof value === 'number' ||
      typeof value === 'boolean'
    ) {
      values[key] = value;
    } else {
      problems.push(`config file ${path}: ${key} must be a string, number or boolean`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return values;
}

/**
 * Builds the configuration: defaults, then the JSON file, then the environment
 * (which wins for every variable). An empty environment variable counts as
 * unset, as `.env` files often carry `NAME=` lines.
 */
export function loadConfig(sources: ConfigSources): Config {
  const merged: Record<string, RawValue> = sources.file ? readFile(sources.file) : {};
  for (const name of VARIABLE_NAMES) {
    const value = sources.env[name];
    if (value !== undefined && value !== '') merged[name] = value;
  }

  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const name of VARIABLE_NAMES) {
    const spec: { schema: (typeof VARIABLES)[VariableName]['schema']; default?: RawValue } =
      VARIABLES[name];
    const value = merged[name] ?? spec.default;
    if (value === undefined) continue;
    const result = spec.schema.safeParse(value);
    if (result.success) out[name] = result.data;
    else {
      const message = result.error.issues[0]?.message ?? 'invalid';
      problems.push(
        `${name} ${message} (got ${JSON.stringify(typeof value === 'string' ? withoutUserinfo(value) : value)})`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  out.STORAGE_TYPE ??= out.S3_ENDPOINT === undefined ? 'filesystem' : 's3';
  const config = out as Config;
  problems.push(...crossCheck(config));
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Rules that involve more than one variable. */
function crossCheck(c: Config): string[] {
  const problems: string[] = [];
  if (c.STORAGE_TYPE === 's3') {
    for (const name of ['S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY'] as const) {
      if (c[name] === undefined) problems.push(`${name} is required when STORAGE_TYPE=s3`);
    }
  }
  const needsPostgres = c.KVSTORAGE_TYPE === 'postgres' || c.LOCKS_TYPE === 'postgres';
  if (needsPostgres && c.DATABASE_URL === undefined) {
    for (const name of ['POSTGRES_HOST', 'POSTGRES_USER', 'POSTGRES_DB'] as const) {
      if (c[name] === undefined) {
        problems.push(
          `${name} (or DATABASE_URL) is required when KVSTORAGE_TYPE or LOCKS_TYPE is postgres`,
        );
      }
    }
  }
  if (c.LOCKS_TYPE === 'postgres' && c.KVSTORAGE_TYPE !== 'postgres') {
    problems.push(
      'LOCKS_TYPE=postgres needs KVSTORAGE_TYPE=postgres (several instances must share one database)',
    );
  }
  return problems;
}
