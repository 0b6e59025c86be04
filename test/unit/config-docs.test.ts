import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { VARIABLE_NAMES } from '../../src/config/schema.js';
import {
  configurationTable,
  envExample,
  TABLE_END,
  TABLE_START,
  withTable,
} from '../support/config-reference.js';

const DOC = new URL('../../docs/configuration.md', import.meta.url);
const ENV = new URL('../../.env.example', import.meta.url);

/** The documents an operator reads list exactly what the server reads (issue #13 part 5). */
describe('configuration reference', () => {
  if (process.env.UPDATE_DOCS === '1') {
    writeFileSync(DOC, withTable(readFileSync(DOC, 'utf8'), configurationTable()));
    writeFileSync(ENV, envExample());
  }

  it('docs/configuration.md holds the table rendered from the schema, every variable once', () => {
    const doc = readFileSync(DOC, 'utf8');
    const table = doc.slice(doc.indexOf(TABLE_START) + TABLE_START.length, doc.indexOf(TABLE_END));
    // Compared cell by cell, so the formatter's column padding does not matter.
    const rows = (text: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith('| `'))
        .map((l) =>
          l
            .split(/(?<!\\)\|/)
            .slice(1, -1)
            .map((c) => c.trim()),
        );
    expect(rows(table)).toEqual(rows(configurationTable()));
    expect(rows(table).map((r) => r[0])).toEqual(VARIABLE_NAMES.map((n) => `\`${n}\``));
  });

  it('.env.example lists every variable with its default, as the schema has them', () => {
    expect(readFileSync(ENV, 'utf8')).toBe(envExample());
    const names = [...readFileSync(ENV, 'utf8').matchAll(/^# ([A-Z0-9_]+)=/gm)].map((m) => m[1]);
    expect(names).toEqual(VARIABLE_NAMES);
  });
});
