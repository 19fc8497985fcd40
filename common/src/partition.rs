//! Partitions of a `PARTITIONED BY` table, as kept in its definition.
//!
//! A partition is the rows with one combination of partition-column values. It owns a range
//! of the table's shard numbers (`first_shard .. first_shard + num_shards`), so a partition's
//! shards are ordinary shards of the table to the data nodes, the allocator and every scan:
//! pruning a partition is scanning fewer shard numbers, dropping one retires its range (the
//! routing entries stay as tombstones so that numbers are never reused). This module owns the
//! definition and its invariants; it must not know how partitions are created or pruned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CodedError, ErrorCode};
use crate::schema::TableSchema;
use crate::types::ColumnType;

/// One partition of a partitioned table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionDef {
    /// A stable identifier derived from the values (`partition_ident` in the system tables).
    pub ident: String,
    /// The value of every `PARTITIONED BY` column, in order, as canonical key text
    /// (`creek_common::routing::key_texts`); `None` for NULL.
    pub values: Vec<Option<String>>,
    /// The first of the table's shard numbers this partition owns.
    pub first_shard: u32,
    /// How many shards it owns (the table's shard count when the partition was created).
    pub num_shards: u32,
    /// Settings of this partition alone (`ALTER TABLE t PARTITION (...) SET (...)`); they
    /// override the table's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

impl PartitionDef {
    /// The shard numbers this partition owns.
    pub fn shards(&self) -> std::ops::Range<u32> {
        self.first_shard..self.first_shard + self.num_shards
    }
}

/// The identifier of the partition holding `values`: the hex digits of their JSON text, so
/// that equal values always name the same partition and different ones never collide.
pub fn partition_ident(values: &[Option<String>]) -> String {
    let json = serde_json::to_string(values).expect("strings serialise");
    json.bytes().map(|b| format!("{b:02x}")).collect()
}

impl TableSchema {
    /// Whether the table is `PARTITIONED BY` some columns.
    pub fn is_partitioned(&self) -> bool {
        !self.partitioned_by.is_empty()
    }

    /// The partition with these values, if it exists.
    pub fn partition_of_values(&self, values: &[Option<String>]) -> Option<&PartitionDef> {
        self.partitions.iter().find(|p| p.values == values)
    }

    /// The partition owning shard number `shard`, if any.
    pub fn partition_of_shard(&self, shard: u32) -> Option<&PartitionDef> {
        self.partitions.iter().find(|p| p.shards().contains(&shard))
    }

    /// The shard numbers that hold rows: every partition's range, or `0..num_shards` for a
    /// table without partitions.
    pub fn live_shards(&self) -> Vec<u32> {
        if self.is_partitioned() {
            self.partitions
                .iter()
                .flat_map(PartitionDef::shards)
                .collect()
        } else {
            (0..self.num_shards).collect()
        }
    }

    /// The settings that govern shard `shard`: its partition's over the table's.
    pub fn settings_of_shard(&self, shard: u32) -> BTreeMap<String, String> {
        let mut settings = self.settings.clone();
        if let Some(partition) = self.partition_of_shard(shard) {
            settings.extend(partition.settings.clone());
        }
        settings
    }

    /// `PARTITIONED BY` names distinct, existing, key-able columns that are part of the
    /// primary key if there is one (a key's rows must all live in one partition, or an
    /// upsert could write a second row with the same key into another partition) and are
    /// not the `CLUSTERED BY` column (every row of a partition would share one shard).
    pub(crate) fn validate_partitioning(&self) -> Result<(), CodedError> {
        let invalid = |message: String| CodedError::new(ErrorCode::InvalidParameterValue, message);
        let mut seen = std::collections::HashSet::new();
        for name in &self.partitioned_by {
            let Some(column) = self.column(name) else {
                return Err(CodedError::new(
                    ErrorCode::UndefinedColumn,
                    format!("partition column {name} does not exist"),
                ));
            };
            if !seen.insert(name.as_str()) {
                return Err(invalid(format!(
                    "partition column {name} is named more than once"
                )));
            }
            // Floats are out: -0 and 0 (and every NaN) are one partition value but compare
            // differently, so a partition's value would not decide its rows' predicates.
            if !column.column_type.is_routable()
                || matches!(column.column_type, ColumnType::Real | ColumnType::Double)
            {
                return Err(invalid(format!(
                    "cannot use column {name} of type {} in PARTITIONED BY",
                    column.column_type
                )));
            }
            if !self.primary_key.is_empty() && !self.primary_key.contains(name) {
                return Err(invalid(format!(
                    "partition column {name} must be part of the primary key"
                )));
            }
            if self.clustered_by.as_deref() == Some(name.as_str()) {
                return Err(invalid(format!(
                    "cannot use CLUSTERED BY column {name} in PARTITIONED BY"
                )));
            }
        }
        if self.partitioned_by.len() == self.columns.len() {
            return Err(invalid(
                "cannot partition by every column: a partition would hold no values".to_string(),
            ));
        }
        for partition in &self.partitions {
            if partition.values.len() != self.partitioned_by.len() {
                return Err(invalid(format!(
                    "partition {} has {} values for {} partition columns",
                    partition.ident,
                    partition.values.len(),
                    self.partitioned_by.len()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_are_distinct_and_stable() {
        let a = partition_ident(&[Some("2024-01-01T00:00:00".into())]);
        let b = partition_ident(&[Some("2024-01-02T00:00:00".into())]);
        let null = partition_ident(&[None]);
        assert_ne!(a, b);
        assert_ne!(a, null);
        assert_eq!(a, partition_ident(&[Some("2024-01-01T00:00:00".into())]));
        // Pinned: idents name partitions in the system tables and in ALTER TABLE.
        assert_eq!(partition_ident(&[Some("a".into())]), "5b2261225d");
        assert_eq!(partition_ident(&[Some("a,b".into())]), "5b22612c62225d");
        assert_ne!(
            partition_ident(&[Some("a".into()), Some("b".into())]),
            partition_ident(&[Some("a,b".into())])
        );
    }
}
