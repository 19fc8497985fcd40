//! Planning helpers around DataFusion: the per-statement session context over cluster state,
//! document ids and routing of rows, and views.

pub mod array_literal;
pub mod context;
pub mod cooperative;
pub mod decorrelate;
pub mod fragments;
pub mod fulltext;
pub mod identifiers;
pub mod integer_casts;
pub mod naming;
pub mod numeric_literals;
pub mod objects;
pub mod output_names;
pub mod params;
pub mod partitions;
pub mod pg_compat;
pub mod pg_functions;
pub mod pk_lookup;
pub mod projected_subqueries;
pub mod routing;
pub mod single_row;
pub mod views;
