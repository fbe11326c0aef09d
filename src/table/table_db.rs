//! table_db.c: tables in dbopen(3) files built by makemap(8) (OpenSMTPD
//! table_db.c 1.26). The configuration side only: the database is read
//! by the db backend that comes with makemap.

use super::table::{Table, TableBackend};

pub static TABLE_BACKEND_DB: TableBackend = TableBackend {
    name: "db",
    services: super::table_static::TABLE_BACKEND_STATIC.services,
    config: Some(table_db_config),
    add: None,
    lookup: None,
    fetch: None,
};

/// table_db_config(): OpenSMTPD opens the database here and fails the
/// configuration when it cannot. Until the dbopen(3) reader exists we
/// check that the file can be opened for reading, so that a missing or
/// unreadable file is still caught by `smtpd -n`.
fn table_db_config(t: &mut Table) -> Result<(), String> {
    if t.t_config.is_empty() {
        return Err("db tables need the path of a database".into());
    }
    std::fs::File::open(&t.t_config)
        .map(|_| ())
        .map_err(|e| format!("{}: {}", t.t_config, crate::util::log::strerror(&e)))
}
