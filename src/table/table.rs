//! table.c: tables, the lookup abstraction behind every list and mapping
//! of smtpd.conf (OpenSMTPD table.c 1.54). This part holds the model and
//! what the configuration needs: creating, configuring, filling and type
//! checking tables. Lookups arrive with lka.

use bitflags::bitflags;

use crate::pathnames::path_libexec;

use super::{table_db, table_getpwnam, table_proc, table_static};

bitflags! {
    /// enum table_type: where a table's content comes from and its shape.
    /// An empty set is T_NONE (a static table with nothing in it yet).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TableType: u32 {
        /// Backed by something outside the configuration.
        const T_DYNAMIC = 0x01;
        /// A list of keys.
        const T_LIST = 0x02;
        /// Keys with values.
        const T_HASH = 0x04;
    }
}

bitflags! {
    /// enum table_service: what a lookup asks for (smtpd-api.h).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TableService: u32 {
        const K_ALIAS = 0x001;
        const K_DOMAIN = 0x002;
        const K_CREDENTIALS = 0x004;
        const K_NETADDR = 0x008;
        const K_USERINFO = 0x010;
        const K_SOURCE = 0x020;
        const K_MAILADDR = 0x040;
        const K_ADDRNAME = 0x080;
        const K_MAILADDRMAP = 0x100;
        const K_RELAYHOST = 0x200;
        const K_STRING = 0x400;
        const K_REGEX = 0x800;
        const K_AUTH = 0x1000;
        const K_ANY = 0xffff;
    }
}

/// A backend's check of a table's source.
pub type TableConfigFn = fn(&mut Table) -> Result<(), String>;
/// A backend's insertion of one inline entry.
pub type TableAddFn = fn(&mut Table, &str, Option<&str>) -> bool;

/// struct table_backend, reduced to the hooks configuration uses.
#[derive(Debug)]
pub struct TableBackend {
    pub name: &'static str,
    pub services: TableService,
    /// Checks and loads the table's source; the error says why not.
    pub config: Option<TableConfigFn>,
    /// Adds one entry to a table declared inline.
    pub add: Option<TableAddFn>,
}

/// Backend-private state (C's `t_handle`).
#[derive(Clone, Debug, Default)]
pub enum TableHandle {
    #[default]
    None,
    Static(table_static::TableStaticPriv),
}

/// struct table.
#[derive(Clone, Debug)]
pub struct Table {
    pub t_name: String,
    pub t_type: TableType,
    pub t_config: String,
    pub t_services: TableService,
    pub t_backend: &'static TableBackend,
    pub t_handle: TableHandle,
}

static BACKENDS: [&TableBackend; 4] = [
    &table_static::TABLE_BACKEND_STATIC,
    &table_db::TABLE_BACKEND_DB,
    &table_getpwnam::TABLE_BACKEND_GETPWNAM,
    &table_proc::TABLE_BACKEND_PROC,
];

/// The backend names a configuration may use, for suggestions.
pub const BACKEND_NAMES: [&str; 5] = ["static", "file", "db", "getpwnam", "proc"];

/// table_backend_lookup(): `file` is another name for `static`.
pub fn table_backend_lookup(backend: &str) -> Option<&'static TableBackend> {
    let backend = if backend == "file" { "static" } else { backend };
    BACKENDS.iter().copied().find(|b| b.name == backend)
}

/// table_service_name().
pub fn table_service_name(s: TableService) -> &'static str {
    const NAMES: [(TableService, &str); 13] = [
        (TableService::K_ALIAS, "alias"),
        (TableService::K_DOMAIN, "domain"),
        (TableService::K_CREDENTIALS, "credentials"),
        (TableService::K_NETADDR, "netaddr"),
        (TableService::K_USERINFO, "userinfo"),
        (TableService::K_SOURCE, "source"),
        (TableService::K_MAILADDR, "mailaddr"),
        (TableService::K_ADDRNAME, "addrname"),
        (TableService::K_MAILADDRMAP, "mailaddrmap"),
        (TableService::K_RELAYHOST, "relayhost"),
        (TableService::K_STRING, "string"),
        (TableService::K_REGEX, "regex"),
        (TableService::K_AUTH, "auth"),
    ];
    if s.is_empty() {
        return "none";
    }
    NAMES
        .iter()
        .find(|(k, _)| *k == s)
        .map_or("???", |(_, n)| n)
}

/// table_create(): a table of `backend` configured by `config`. A backend
/// name that is not built in selects the proc backend when the program
/// `table-NAME` exists in the libexec directory, with `NAME:config` as its
/// configuration. The caller names the table and registers it.
pub fn table_create(backend: &str, name: &str, config: Option<&str>) -> Result<Table, String> {
    let (tb, config) = match table_backend_lookup(backend) {
        Some(tb) => (tb, config.map(str::to_string)),
        None => {
            let path = format!("{}/table-{backend}", path_libexec());
            if std::fs::metadata(&path).is_err() {
                return Err(format!("table backend \"{backend}\" does not exist (no built-in backend and no {path})"));
            }
            let conf = match config {
                Some(c) => format!("{backend}:{c}"),
                None => backend.to_string(),
            };
            (&table_proc::TABLE_BACKEND_PROC, Some(conf))
        }
    };
    let config = config.unwrap_or_default();
    if config.len() >= crate::defines::PATH_MAX {
        return Err(format!("table config \"{config}\" too large"));
    }
    if name.len() >= crate::defines::LINE_MAX {
        return Err("table name too long".into());
    }
    let t_type = if tb.name == "static" {
        TableType::empty()
    } else {
        TableType::T_DYNAMIC
    };
    Ok(Table {
        t_name: name.to_string(),
        t_type,
        t_config: config,
        t_services: tb.services,
        t_backend: tb,
        t_handle: TableHandle::None,
    })
}

/// table_config(): lets the backend check (and for static files, load) the
/// table's source.
pub fn table_config(t: &mut Table) -> Result<(), String> {
    match t.t_backend.config {
        Some(config) => config(t),
        None => Ok(()),
    }
}

/// table_add(): adds one entry to a table declared inline; false when the
/// backend takes no entries or the entry does not fit the table's shape.
pub fn table_add(t: &mut Table, key: &str, val: Option<&str>) -> bool {
    match t.t_backend.add {
        Some(add) => add(t, key, val),
        None => false,
    }
}

/// table_check_type().
pub fn table_check_type(t: &Table, mask: TableType) -> bool {
    t.t_type.intersects(mask)
}

/// table_check_service().
pub fn table_check_service(t: &Table, mask: TableService) -> bool {
    t.t_services.intersects(mask)
}

/// table_check_use(): whether `t` has one of the shapes in `tmask` and
/// offers one of the services in `smask`.
pub fn table_check_use(t: &Table, tmask: TableType, smask: TableService) -> bool {
    table_check_type(t, tmask) && table_check_service(t, smask)
}

impl Table {
    /// The entries of a static table, in key order (empty for others).
    pub fn static_entries(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        let dict = match &self.t_handle {
            TableHandle::Static(priv_) => Some(&priv_.dict),
            TableHandle::None => None,
        };
        dict.into_iter()
            .flat_map(|d| d.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
    }

    /// Whether the table was declared inline (a `{ ... }` list or a lone
    /// string) rather than by a `table` statement.
    pub fn is_anonymous(&self) -> bool {
        self.t_name.starts_with("<dynamic:")
    }
}

/// struct userinfo, the K_USERINFO lookup result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Userinfo {
    pub username: String,
    pub directory: String,
    pub uid: u32,
    pub gid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_list_then_check_use() {
        let mut t = table_create("static", "t", None).unwrap();
        assert!(table_add(&mut t, "Example.ORG", None));
        assert_eq!(t.t_type, TableType::T_LIST);
        // A list cannot take a value afterwards.
        assert!(!table_add(&mut t, "k", Some("v")));
        assert!(table_check_use(
            &t,
            TableType::T_DYNAMIC | TableType::T_LIST,
            TableService::K_DOMAIN
        ));
        assert!(!table_check_use(
            &t,
            TableType::T_DYNAMIC | TableType::T_HASH,
            TableService::K_ALIAS
        ));
        // Keys are stored lowercased, as lookups lowercase theirs.
        assert_eq!(t.static_entries().next(), Some(("example.org", None)));
    }

    #[test]
    fn file_is_static_and_unknown_backends_are_refused() {
        assert_eq!(table_backend_lookup("file").unwrap().name, "static");
        assert!(table_create("nosuchbackend", "t", None).is_err());
        let t = table_create("getpwnam", "t", None).unwrap();
        assert_eq!(t.t_type, TableType::T_DYNAMIC);
        assert_eq!(t.t_services, TableService::K_USERINFO);
    }

    #[test]
    fn service_names() {
        assert_eq!(
            table_service_name(TableService::K_MAILADDRMAP),
            "mailaddrmap"
        );
        assert_eq!(table_service_name(TableService::empty()), "none");
    }
}
