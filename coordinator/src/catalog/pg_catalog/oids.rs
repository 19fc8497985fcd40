//! Object identifiers and type names as PostgreSQL clients expect them in `pg_catalog`.
//!
//! Creek has no oid counter: every oid is derived from cluster state, so the same object has
//! the same oid on every coordinator and across restarts. Tables use their stable table id,
//! namespaces and views a hash of their name. This module owns that scheme and the catalog of
//! built-in types; it must not read cluster state itself.

use creek_common::routing::fnv1a64;
use creek_common::types::ColumnType;

/// Oid of the `pg_catalog` namespace, as in PostgreSQL.
pub const PG_CATALOG_NAMESPACE: i64 = 11;
/// Oid of the `public` namespace, as in PostgreSQL.
pub const PUBLIC_NAMESPACE: i64 = 2200;
/// Oid of the superuser role `crate`.
pub const SUPERUSER_OID: i64 = 10;
/// Oid of the one database every connection sees.
pub const DATABASE_OID: i64 = 5;
/// Oid of the access method of tables (`tantivy`).
pub const TABLE_AM_OID: i64 = 2;
/// Oid of the access method of primary-key indexes (`tantivy`, an index method).
pub const INDEX_AM_OID: i64 = 403;
/// Oid of `pg_class` itself, used by `pg_description.classoid`.
pub const PG_CLASS_OID: i64 = 1259;
/// Oid of `pg_constraint`.
pub const PG_CONSTRAINT_OID: i64 = 2606;

/// First oid given to user tables (PostgreSQL's `FirstNormalObjectId`).
const FIRST_TABLE_OID: i64 = 16384;
/// Hashed oids (namespaces, views) live in `[HASHED_BASE, 2^31)`, above any table oid.
const HASHED_BASE: i64 = 0x4000_0000;

fn hashed_oid(kind: &str, name: &str) -> i64 {
    let hash = fnv1a64(format!("{kind}:{name}").as_bytes());
    HASHED_BASE | (hash & 0x3fff_ffff) as i64
}

/// Returns the oid of a namespace (schema).
pub fn namespace_oid(name: &str) -> i64 {
    match name {
        "pg_catalog" => PG_CATALOG_NAMESPACE,
        "public" => PUBLIC_NAMESPACE,
        other => hashed_oid("namespace", other),
    }
}

/// Returns the oid of a table; its primary-key index is the next oid.
pub fn table_oid(table_id: u64) -> i64 {
    FIRST_TABLE_OID + 2 * table_id as i64
}

/// Returns the oid of a table's primary-key index and constraint.
pub fn primary_key_oid(table_id: u64) -> i64 {
    table_oid(table_id) + 1
}

/// Returns the oid of a view.
pub fn view_oid(schema: &str, name: &str) -> i64 {
    hashed_oid("view", &format!("{schema}.{name}"))
}

/// The oid of an index declared with `CREATE INDEX`.
pub fn index_oid(schema: &str, name: &str) -> i64 {
    hashed_oid("index", &format!("{schema}.{name}"))
}

/// A built-in type as `pg_type` lists it.
#[derive(Debug, Clone, Copy)]
pub struct PgType {
    /// The type oid.
    pub oid: i64,
    /// `pg_type.typname`.
    pub name: &'static str,
    /// `pg_type.typlen` (-1 for variable length).
    pub len: i64,
    /// `pg_type.typcategory`.
    pub category: &'static str,
    /// Oid of the array type whose elements are this type.
    pub array_oid: i64,
    /// The name `format_type` prints.
    pub sql_name: &'static str,
}

const fn base(
    oid: i64,
    name: &'static str,
    len: i64,
    category: &'static str,
    array_oid: i64,
    sql_name: &'static str,
) -> PgType {
    PgType {
        oid,
        name,
        len,
        category,
        array_oid,
        sql_name,
    }
}

/// The base types Creek's columns and functions produce, with PostgreSQL's oids.
pub const BASE_TYPES: &[PgType] = &[
    base(16, "bool", 1, "B", 1000, "boolean"),
    base(17, "bytea", -1, "U", 1001, "bytea"),
    base(18, "char", 1, "Z", 1002, "\"char\""),
    base(19, "name", 64, "S", 1003, "name"),
    base(20, "int8", 8, "N", 1016, "bigint"),
    base(21, "int2", 2, "N", 1005, "smallint"),
    base(23, "int4", 4, "N", 1007, "integer"),
    base(24, "regproc", 4, "N", 1008, "regproc"),
    base(25, "text", -1, "S", 1009, "text"),
    base(26, "oid", 4, "N", 1028, "oid"),
    base(114, "json", -1, "U", 199, "json"),
    base(600, "point", 16, "G", 1017, "point"),
    base(700, "float4", 4, "N", 1021, "real"),
    base(701, "float8", 8, "N", 1022, "double precision"),
    base(869, "inet", -1, "I", 1041, "inet"),
    base(1042, "bpchar", -1, "S", 1014, "character"),
    base(1043, "varchar", -1, "S", 1015, "character varying"),
    base(1082, "date", 4, "D", 1182, "date"),
    base(1083, "time", 8, "D", 1183, "time without time zone"),
    base(
        1114,
        "timestamp",
        8,
        "D",
        1115,
        "timestamp without time zone",
    ),
    base(
        1184,
        "timestamptz",
        8,
        "D",
        1185,
        "timestamp with time zone",
    ),
    base(1186, "interval", 16, "T", 1187, "interval"),
    base(1700, "numeric", -1, "N", 1231, "numeric"),
    base(2205, "regclass", 4, "N", 2210, "regclass"),
    base(2206, "regtype", 4, "N", 2211, "regtype"),
    base(2950, "uuid", 16, "U", 2951, "uuid"),
    base(3802, "jsonb", -1, "U", 3807, "jsonb"),
    base(4089, "regnamespace", 4, "N", 4090, "regnamespace"),
];

/// A type by oid: `Some((base, is_array))`.
pub fn type_by_oid(oid: i64) -> Option<(PgType, bool)> {
    BASE_TYPES.iter().find_map(|t| {
        if t.oid == oid {
            Some((*t, false))
        } else if t.array_oid == oid {
            Some((*t, true))
        } else {
            None
        }
    })
}

/// A type by name as `to_regtype` and `::regtype` accept it: `int4`, `integer`, `text[]`,
/// `_int4`, `pg_catalog.int4`.
pub fn type_by_name(name: &str) -> Option<i64> {
    let name = name.trim().trim_start_matches("pg_catalog.").to_lowercase();
    let (name, array) = match name.strip_suffix("[]") {
        Some(element) => (element.trim().to_string(), true),
        None => match name.strip_prefix('_') {
            Some(element) => (element.to_string(), true),
            None => (name, false),
        },
    };
    let alias = match name.as_str() {
        "int" | "integer" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "boolean" => "bool",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" | "char(1)" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "\"char\"" => "char",
        other => other,
    };
    let found = BASE_TYPES
        .iter()
        .find(|t| t.name == alias || t.sql_name == alias)?;
    Some(if array { found.array_oid } else { found.oid })
}

/// `format_type(oid, typmod)`: the SQL name of a type with its modifier.
pub fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let (ty, array) = type_by_oid(oid)?;
    let modifier = typmod.filter(|m| *m >= 0);
    let mut name = match (ty.name, modifier) {
        ("varchar", Some(m)) => format!("character varying({})", m - 4),
        ("bpchar", Some(m)) => format!("character({})", m - 4),
        ("numeric", Some(m)) => {
            let m = m - 4;
            format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
        }
        _ => ty.sql_name.to_string(),
    };
    if array {
        name.push_str("[]");
    }
    Some(name)
}

/// The type oid and type modifier of a column, as `pg_attribute` reports them.
pub fn column_type_oid(column_type: &ColumnType) -> (i64, i64) {
    match column_type {
        ColumnType::Boolean => (16, -1),
        ColumnType::SmallInt => (21, -1),
        ColumnType::Integer => (23, -1),
        ColumnType::BigInt => (20, -1),
        ColumnType::Real => (700, -1),
        ColumnType::Double => (701, -1),
        ColumnType::Numeric { precision, scale } => (
            1700,
            ((i64::from(*precision) << 16) | i64::from(*scale as u8)) + 4,
        ),
        ColumnType::Text { max_len: None } => (25, -1),
        ColumnType::Text { max_len: Some(n) } => (1043, i64::from(*n) + 4),
        ColumnType::Timestamp => (1114, -1),
        ColumnType::TimestampTz => (1184, -1),
        ColumnType::Date => (1082, -1),
        ColumnType::Ip => (869, -1),
        ColumnType::GeoPoint => (600, -1),
        // GeoJSON text, as CrateDB gives it to PostgreSQL clients.
        ColumnType::GeoShape => (114, -1),
        // Objects are JSON to PostgreSQL clients, as in CrateDB.
        ColumnType::Object { .. } => (114, -1),
        ColumnType::Array(inner) => {
            let (element, typmod) = column_type_oid(inner);
            let array = type_by_oid(element).map_or(1009, |(t, _)| t.array_oid);
            (array, typmod)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_type_prints_modifiers_and_arrays() {
        let (oid, typmod) = column_type_oid(&ColumnType::Text { max_len: Some(20) });
        assert_eq!(
            format_type(oid, Some(typmod)).as_deref(),
            Some("character varying(20)")
        );
        let (oid, typmod) = column_type_oid(&ColumnType::Numeric {
            precision: 10,
            scale: 2,
        });
        assert_eq!(
            format_type(oid, Some(typmod)).as_deref(),
            Some("numeric(10,2)")
        );
        let (oid, typmod) = column_type_oid(&ColumnType::Array(Box::new(ColumnType::Integer)));
        assert_eq!(format_type(oid, Some(typmod)).as_deref(), Some("integer[]"));
        assert_eq!(format_type(999_999, None), None);
    }

    #[test]
    fn type_names_resolve_like_regtype() {
        assert_eq!(type_by_name("int4"), Some(23));
        assert_eq!(type_by_name("integer"), Some(23));
        assert_eq!(type_by_name("pg_catalog.text[]"), Some(1009));
        assert_eq!(type_by_name("_int8"), Some(1016));
        assert_eq!(type_by_name("hstore"), None);
    }

    #[test]
    fn oids_are_stable_and_disjoint() {
        assert_eq!(namespace_oid("doc"), namespace_oid("doc"));
        assert_ne!(namespace_oid("doc"), namespace_oid("sys"));
        assert!(view_oid("doc", "v") >= HASHED_BASE);
        assert_eq!(primary_key_oid(3), table_oid(3) + 1);
        assert!(table_oid(1_000_000) < HASHED_BASE);
    }
}
