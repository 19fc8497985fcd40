//! The catalog tables `pg_catalog` offers and their columns, and which of them never have rows.

/// Every catalog table with its columns as `name type` pairs. Types: `oid` (UInt32, which
/// pgwire reports as PostgreSQL's oid), `int` (int8), `text`, `bool`, `float4`, `text[]`,
/// `int[]`.
pub(super) const TABLES: &[(&str, &str)] = &[
    (
        "pg_namespace",
        "oid oid, nspname text, nspowner oid, nspacl text[]",
    ),
    (
        "pg_class",
        "oid oid, relname text, relnamespace oid, reltype oid, reloftype oid, relowner oid, \
         relam oid, relfilenode oid, reltablespace oid, relpages int, reltuples float4, \
         relallvisible int, reltoastrelid oid, relhasindex bool, relisshared bool, \
         relpersistence text, relkind text, relnatts int, relchecks int, relhasrules bool, \
         relhastriggers bool, relhassubclass bool, relrowsecurity bool, \
         relforcerowsecurity bool, relispopulated bool, relreplident text, relispartition bool, \
         relrewrite oid, relfrozenxid int, relminmxid int, relacl text[], reloptions text[], \
         relpartbound text",
    ),
    (
        "pg_attribute",
        "attrelid oid, attname text, atttypid oid, attstattarget int, attlen int, attnum int, \
         attndims int, attcacheoff int, atttypmod int, attbyval bool, attalign text, \
         attstorage text, attcompression text, attnotnull bool, atthasdef bool, \
         atthasmissing bool, attidentity text, attgenerated text, attisdropped bool, \
         attislocal bool, attinhcount int, attcollation oid, attacl text[], attoptions text[], \
         attfdwoptions text[]",
    ),
    (
        "pg_type",
        "oid oid, typname text, typnamespace oid, typowner oid, typlen int, typbyval bool, \
         typtype text, typcategory text, typispreferred bool, typisdefined bool, typdelim text, \
         typrelid oid, typsubscript text, typelem oid, typarray oid, typinput text, \
         typoutput text, typreceive text, typsend text, typmodin text, typmodout text, \
         typanalyze text, typalign text, typstorage text, typnotnull bool, typbasetype oid, \
         typtypmod int, typndims int, typcollation oid, typdefaultbin text, typdefault text, \
         typacl text[]",
    ),
    (
        "pg_database",
        "oid oid, datname text, datdba oid, encoding int, datlocprovider text, \
         datistemplate bool, datallowconn bool, datconnlimit int, datfrozenxid int, \
         datminmxid int, dattablespace oid, datcollate text, datctype text, daticulocale text, \
         datcollversion text, datacl text[]",
    ),
    (
        "pg_index",
        "indexrelid oid, indrelid oid, indnatts int, indnkeyatts int, indisunique bool, \
         indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, \
         indisclustered bool, indisvalid bool, indcheckxmin bool, indisready bool, \
         indislive bool, indisreplident bool, indkey int[], indcollation int[], indclass int[], \
         indoption int[], indexprs text, indpred text",
    ),
    (
        "pg_constraint",
        "oid oid, conname text, connamespace oid, contype text, condeferrable bool, \
         condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, \
         conparentid oid, confrelid oid, confupdtype text, confdeltype text, \
         confmatchtype text, conislocal bool, coninhcount int, connoinherit bool, conkey int[], \
         confkey int[], conbin text",
    ),
    ("pg_attrdef", "oid oid, adrelid oid, adnum int, adbin text"),
    ("pg_am", "oid oid, amname text, amhandler text, amtype text"),
    (
        "pg_roles",
        "oid oid, rolname text, rolsuper bool, rolinherit bool, rolcreaterole bool, \
         rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolconnlimit int, \
         rolpassword text, rolvaliduntil text, rolbypassrls bool, rolconfig text[]",
    ),
    (
        "pg_user",
        "usename text, usesysid oid, usecreatedb bool, usesuper bool, userepl bool, \
         usebypassrls bool, passwd text, valuntil text, useconfig text[]",
    ),
    (
        "pg_tablespace",
        "oid oid, spcname text, spcowner oid, spcacl text[], spcoptions text[]",
    ),
    (
        "pg_tables",
        "schemaname text, tablename text, tableowner text, tablespace text, hasindexes bool, \
         hasrules bool, hastriggers bool, rowsecurity bool",
    ),
    (
        "pg_views",
        "schemaname text, viewname text, viewowner text, definition text",
    ),
    (
        "pg_indexes",
        "schemaname text, tablename text, indexname text, tablespace text, indexdef text",
    ),
    (
        "pg_settings",
        "name text, setting text, unit text, category text, short_desc text, vartype text, \
         source text",
    ),
    (
        "pg_description",
        "objoid oid, classoid oid, objsubid int, description text",
    ),
    (
        "pg_shdescription",
        "objoid oid, classoid oid, description text",
    ),
    (
        "pg_inherits",
        "inhrelid oid, inhparent oid, inhseqno int, inhdetachpending bool",
    ),
    (
        "pg_policy",
        "oid oid, polname text, polrelid oid, polcmd text, polpermissive bool, polroles int[], \
         polqual text, polwithcheck text",
    ),
    (
        "pg_statistic_ext",
        "oid oid, stxrelid oid, stxname text, stxnamespace oid, stxowner oid, \
         stxstattarget int, stxkeys int[], stxkind text[], stxexprs text",
    ),
    (
        "pg_publication",
        "oid oid, pubname text, pubowner oid, puballtables bool, pubinsert bool, \
         pubupdate bool, pubdelete bool, pubtruncate bool, pubviaroot bool",
    ),
    (
        "pg_publication_namespace",
        "oid oid, pnpubid oid, pnnspid oid",
    ),
    (
        "pg_publication_rel",
        "oid oid, prpubid oid, prrelid oid, prqual text, prattrs int[]",
    ),
    (
        "pg_sequence",
        "seqrelid oid, seqtypid oid, seqstart int, seqincrement int, seqmax int, seqmin int, \
         seqcache int, seqcycle bool",
    ),
    (
        "pg_collation",
        "oid oid, collname text, collnamespace oid, collowner oid, collprovider text, \
         collisdeterministic bool, collencoding int, collcollate text, collctype text",
    ),
    (
        "pg_opclass",
        "oid oid, opcmethod oid, opcname text, opcnamespace oid, opcowner oid, opcfamily oid, \
         opcintype oid, opcdefault bool, opckeytype oid",
    ),
    (
        "pg_trigger",
        "oid oid, tgrelid oid, tgparentid oid, tgname text, tgfoid oid, tgtype int, \
         tgenabled text, tgisinternal bool, tgconstrrelid oid, tgconstrindid oid, \
         tgconstraint oid, tgdeferrable bool, tginitdeferred bool, tgnargs int, tgattr int[], \
         tgqual text, tgoldtable text, tgnewtable text",
    ),
    (
        "pg_rewrite",
        "oid oid, rulename text, ev_class oid, ev_type text, ev_enabled text, is_instead bool, \
         ev_qual text, ev_action text",
    ),
    (
        "pg_proc",
        "oid oid, proname text, pronamespace oid, proowner oid, prolang oid, prokind text, \
         prorettype oid, proargtypes int[], proretset bool, prosrc text",
    ),
    (
        "pg_enum",
        "oid oid, enumtypid oid, enumsortorder float4, enumlabel text",
    ),
    (
        "pg_range",
        "rngtypid oid, rngsubtype oid, rngmultitypid oid, rngcollation oid, rngsubopc oid",
    ),
    (
        "pg_extension",
        "oid oid, extname text, extowner oid, extnamespace oid, extrelocatable bool, \
         extversion text",
    ),
    (
        "pg_depend",
        "classid oid, objid oid, objsubid int, refclassid oid, refobjid oid, \
         refobjsubid int, deptype text",
    ),
    (
        "pg_foreign_table",
        "ftrelid oid, ftserver oid, ftoptions text[]",
    ),
    (
        "pg_partitioned_table",
        "partrelid oid, partstrat text, partnatts int, partdefid oid, partattrs int[]",
    ),
    (
        "pg_matviews",
        "schemaname text, matviewname text, matviewowner text, definition text",
    ),
];

/// Catalog tables that never have rows in Creek. A query that inner-joins one of them is empty
/// whatever else it computes, which `plan::pg_compat` uses to answer it without planning.
pub const EMPTY_TABLES: &[&str] = &[
    "pg_description",
    "pg_shdescription",
    "pg_inherits",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_sequence",
    "pg_collation",
    "pg_opclass",
    "pg_trigger",
    "pg_rewrite",
    "pg_proc",
    "pg_enum",
    "pg_range",
    "pg_extension",
    "pg_depend",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_matviews",
];

/// Returns whether `name` is a `pg_catalog` table.
pub fn is_catalog_table(name: &str) -> bool {
    TABLES.iter().any(|(table, _)| *table == name)
}
