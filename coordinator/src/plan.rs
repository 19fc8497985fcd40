//! Planning helpers around DataFusion: the per-statement session context over cluster state,
//! document ids and routing of rows, and views.

pub mod context;
pub mod decorrelate;
pub mod naming;
pub mod routing;
pub mod views;
