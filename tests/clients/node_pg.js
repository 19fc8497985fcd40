// node-postgres against creek dev: parameters (extended protocol), errors with SQLSTATE.
const { Client } = require('pg');

async function main() {
  const client = new Client({ host: '127.0.0.1', port: Number(process.argv[2]), user: 'crate', database: 'doc' });
  await client.connect();
  await client.query('CREATE TABLE IF NOT EXISTS node_t (id INTEGER PRIMARY KEY, v TEXT, n DOUBLE PRECISION)');
  await client.query('INSERT INTO node_t VALUES ($1, $2, $3), ($4, $5, $6)', [1, 'one', 1.5, 2, 'two', null]);
  const row = (await client.query('SELECT v, n FROM node_t WHERE id = $1', [1])).rows[0];
  if (row.v !== 'one' || row.n !== 1.5) throw new Error('unexpected row ' + JSON.stringify(row));
  let code = null;
  try { await client.query('SELECT * FROM node_missing'); } catch (e) { code = e.code; }
  if (code !== '42P01') throw new Error('expected 42P01, got ' + code);
  // Integer literals are bigint in Creek (int4 in PostgreSQL); node-postgres reads int8 as a string.
  const again = (await client.query('SELECT CAST(1 AS INTEGER) AS one')).rows[0];
  if (again.one !== 1) throw new Error('connection unusable after error');
  await client.end();
  console.log('ok');
}

main().catch((e) => { console.error(e); process.exit(1); });
