//! Tables (table.c and its backends).

#[allow(clippy::module_inception)]
pub mod table;
pub mod table_db;
pub mod table_getpwnam;
pub mod table_proc;
pub mod table_static;
