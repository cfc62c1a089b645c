// A readable, stable description of the schema, read from the catalog, that the store tests
// compare with the committed node/store/schema.sql, so a schema change shows in review.
//
// Why not pg_dump: the embedded server is PostgreSQL 18 and pg_dump refuses to dump a server
// newer than itself (this machine's is 15; the embedded package ships no pg_dump), and its
// output also varies with the pg_dump version. The catalog functions used here
// (format_type, pg_get_constraintdef, pg_get_indexdef, pg_get_partkeydef) give the same text
// on 15 and 18. Daily partitions are left out: the store creates them at run time.

import type pg from 'pg';

export const SCHEMA_DUMP_HEADER = `-- The schema that node/store/migrations produce, read back from a migrated database by
-- test/support/schema-dump.ts. Generated, do not edit; after adding a migration, regenerate:
--   UPDATE_SCHEMA_DUMP=1 npx vitest run test/conformance/pg-store.test.ts
-- (Daily partitions jobs_pYYYYMMDD are created at run time by the retention pass.)
`;

const TABLES_SQL = `
SELECT c.oid, c.relname, c.relispartition,
  CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
  CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
  (SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid) AS parent
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname !~ '^jobs_p[0-9]{8}$'
ORDER BY c.relname`;

const COLUMNS_SQL = `
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
  CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS collation,
  pg_get_expr(d.adbin, d.adrelid) AS default
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`;

// NOT NULL shows on the column; PostgreSQL 18 also lists it as a constraint ('n'), 15 does not.
const CONSTRAINTS_SQL = `
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = $1 AND contype IN ('p', 'u', 'c', 'f', 'x') ORDER BY conname`;

const INDEXES_SQL = `
SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
ORDER BY c.relname`;

export async function dumpSchema(client: pg.ClientBase): Promise<string> {
  const out = [SCHEMA_DUMP_HEADER];
  const tables = await client.query<{ oid: number; relname: string; relispartition: boolean; partkey: string | null; bound: string | null; parent: string | null }>(TABLES_SQL);
  for (const table of tables.rows) {
    if (table.relispartition) {
      // Columns, constraints and indexes of a partition are its parent's.
      out.push(`CREATE TABLE ${table.relname} PARTITION OF ${table.parent} ${table.bound};\n`);
      continue;
    }
    const columns = await client.query<{ attname: string; type: string; attnotnull: boolean; collation: string | null; default: string | null }>(
      COLUMNS_SQL,
      [table.oid],
    );
    const lines = columns.rows.map((c) =>
      [`  ${c.attname} ${c.type}`, c.collation && `COLLATE "${c.collation}"`, c.attnotnull && 'NOT NULL', c.default && `DEFAULT ${c.default}`]
        .filter(Boolean)
        .join(' '),
    );
    const constraints = await client.query<{ conname: string; def: string }>(CONSTRAINTS_SQL, [table.oid]);
    lines.push(...constraints.rows.map((k) => `  CONSTRAINT ${k.conname} ${k.def}`));
    const partitioning = table.partkey === null ? '' : ` PARTITION BY ${table.partkey}`;
    out.push(`CREATE TABLE ${table.relname} (\n${lines.join(',\n')}\n)${partitioning};`);
    const indexes = await client.query<{ def: string }>(INDEXES_SQL, [table.oid]);
    out.push(...indexes.rows.map((i) => `${i.def};`), '');
  }
  return out.join('\n');
}
