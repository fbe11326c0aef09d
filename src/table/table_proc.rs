//! table_proc.c: tables served by an external program speaking the
//! smtpd-tables(7) protocol (OpenSMTPD table_proc.c 1.23). The program is
//! started when lka opens its tables; the configuration only names it.

use super::table::{TableBackend, TableService};

pub static TABLE_BACKEND_PROC: TableBackend = TableBackend {
    name: "proc",
    // The program registers what it serves when it starts.
    services: TableService::K_ANY,
    config: None,
    add: None,
    update: None,
    lookup: None,
    fetch: None,
};
