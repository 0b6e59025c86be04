import { VARIABLE_NAMES, VARIABLES, type VariableName } from '../../src/config/schema.js';

/**
 * The configuration reference as it must read in docs/configuration.md and
 * .env.example, rendered from src/config/schema.ts: the test compares the
 * files with this, so the documents cannot drift from what the server reads.
 * `UPDATE_DOCS=1 npx vitest run --project unit test/unit/config-docs.test.ts`
 * writes them.
 */

/** Where the generated table sits in docs/configuration.md. */
export const TABLE_START = '<!-- generated from src/config/schema.ts: begin -->';
export const TABLE_END = '<!-- generated from src/config/schema.ts: end -->';

const spec = (name: VariableName): { default?: string | number | boolean; doc: string } =>
  VARIABLES[name];

function defaultOf(name: VariableName): string | undefined {
  const d = spec(name).default;
  return d === undefined ? undefined : String(d);
}

/** A markdown table cell: pipes escaped, code-looking words left as they are. */
const cell = (text: string) => text.replace(/\|/g, '\\|');

export function configurationTable(): string {
  const rows = VARIABLE_NAMES.map((name) => {
    const d = defaultOf(name);
    const shown = d === undefined ? '(unset)' : d === '' ? '(empty)' : `\`${cell(d)}\``;
    return `| \`${name}\` | ${shown} | ${cell(spec(name).doc)} |`;
  });
  return ['| Variable | Default | Meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

export function envExample(): string {
  const lines = [
    '# Every variable s3dedup reads, with its default (src/config/schema.ts;',
    '# docs/configuration.md explains them). A line left commented out keeps the',
    '# default; unset ones have none. A test checks this file against the schema.',
    '',
  ];
  for (const name of VARIABLE_NAMES) {
    const d = defaultOf(name);
    lines.push(`# ${spec(name).doc}`);
    lines.push(d === undefined ? `# ${name}=` : `# ${name}=${d}`);
    lines.push('');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

/** The generated table put between the markers of the handwritten document. */
export function withTable(document: string, table: string): string {
  const start = document.indexOf(TABLE_START);
  const end = document.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error('docs/configuration.md lost its table markers');
  return `${document.slice(0, start + TABLE_START.length)}\n\n${table}\n\n${document.slice(end)}`;
}
