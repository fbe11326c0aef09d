//! makemap.c: makemap(8) and newaliases(8), which turn table(5) and
//! aliases(5) text files into the dbopen(3) databases the `db` table
//! backend reads (OpenSMTPD makemap.c 1.77).
//!
//! The on-disk entries are OpenSMTPD's: each key lowercased and each
//! value as written, both as C strings with their NUL; a set stores
//! `<set>` as every value. The database is built in a temporary file
//! next to its destination, made durable, then renamed over it, so that
//! smtpd never sees a half-built map.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::config::config::config_default;
use crate::config::parse::parse_config;
use crate::defines::PATH_MAX;
use crate::pathnames::CONF_FILE;
use crate::sys::db::{Db, DbOpen, DbSeq, DbType};
use crate::sys::fsync::fsync_dir;
use crate::sys::mailbox::flock_shared_nonblock;
use crate::sys::process::{mkstemp, setresgid};
use crate::sys::unistd::{geteuid, getgid};
use crate::table::table::table_find;
use crate::util::getopt::{Getopt, Opt};
use crate::util::log::{log_init, strerror, LOG_MAIL};
use crate::util::to::text_to_expandnode;
use crate::util::util::{lowercase, parse_table_line, strip, TableFileType, TableLine};

/// The personality makemap() runs as (P_* of smtpd.h): sendmail's `-bi`
/// is newaliases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgMode {
    Sendmail,
    Newaliases,
    Makemap,
}

/// enum output_type: what the values of the map are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputType {
    /// Keys with values, stored as written.
    Plain,
    /// Keys with aliases(5) right-hand sides, checked before they are
    /// stored.
    Aliases,
    /// Keys alone.
    Set,
}

/// makemap.c's globals: who we are, what we build and from what.
struct Makemap {
    progname: String,
    mode: ProgMode,
    type_: OutputType,
    source: String,
}

impl Makemap {
    /// warnx(3).
    fn warnx(&self, msg: std::fmt::Arguments) {
        eprintln!("{}: {msg}", self.progname);
    }

    /// warn(3): the message and the error.
    fn warn(&self, msg: std::fmt::Arguments, e: &io::Error) {
        eprintln!("{}: {msg}: {}", self.progname, strerror(e));
    }

    /// usage(), whose status the caller exits with.
    fn usage(&self) -> i32 {
        if self.mode == ProgMode::Newaliases {
            eprintln!("usage: newaliases [-f file]");
        } else {
            eprintln!("usage: makemap [-U] [-d dbtype] [-o dbfile] [-t type] file");
        }
        1
    }
}

/// PATH_ALIASES: the aliases file newaliases reads when smtpd.conf has
/// no `aliases` table, in the directory of smtpd.conf (SMTPD_CONFDIR).
fn path_aliases() -> String {
    let dir = Path::new(CONF_FILE)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("/etc/mail");
    format!("{dir}/aliases")
}

/// The part of `path` before a `.db` suffix, if it has one. As in C, only
/// the first `.db` in the name counts: `a.db.db` has none.
fn makemap_strip_db(path: &str) -> Option<&str> {
    let p = path.find(".db")?;
    (&path[p..] == ".db").then(|| &path[..p])
}

/// makemap and newaliases by the name they were run as.
pub fn makemap_main(args: Vec<String>) -> i32 {
    let argv0 = args.first().map_or("makemap", String::as_str);
    let mode = match argv0.rsplit('/').next() {
        Some("newaliases") => ProgMode::Newaliases,
        _ => ProgMode::Makemap,
    };
    let r = makemap(mode, &args);
    if mode == ProgMode::Newaliases {
        super::smtpctl::newaliases_notify();
    }
    r
}

/// makemap(): `args` with the program name first.
pub fn makemap(prog_mode: ProgMode, args: &[String]) -> i32 {
    let argv0 = args.first().map_or("makemap", String::as_str);
    let progname = argv0.rsplit('/').next().unwrap_or(argv0).to_string();

    // smtpctl may be set-group-id: the map is built as the caller.
    if let Err(e) = setresgid(getgid()) {
        eprintln!("{progname}: setresgid: {}", strerror(&e));
        return 1;
    }
    log_init(1, LOG_MAIL, &progname);

    let mut m = Makemap {
        progname,
        mode: prog_mode,
        type_: OutputType::Plain,
        source: String::new(),
    };
    let mut conf = CONF_FILE.to_string();
    let mut source = None;
    let mut oflag: Option<String> = None;
    let mut uflag = false;
    let mut dbtype = DbType::Hash;
    let opts = if m.mode == ProgMode::Newaliases {
        "f:h"
    } else {
        "b:C:d:ho:O:t:U"
    };
    let mut g = Getopt::new(args, opts);
    for opt in g.by_ref() {
        let (c, arg) = match opt {
            Opt::Flag(c, arg) => (c, arg.unwrap_or_default()),
            // getopt(3)'s own words, before the usage.
            Opt::Unknown(c) => {
                m.warnx(format_args!("unknown option -- {c}"));
                return m.usage();
            }
            Opt::MissingArg(c) => {
                m.warnx(format_args!("option requires an argument -- {c}"));
                return m.usage();
            }
        };
        match c {
            'b' if arg == "i" => m.mode = ProgMode::Newaliases,
            'b' | 'C' => {}
            'd' => {
                dbtype = match arg.as_str() {
                    "hash" => DbType::Hash,
                    "btree" => DbType::Btree,
                    _ => {
                        m.warnx(format_args!("unsupported DB type '{arg}'"));
                        return 1;
                    }
                }
            }
            'f' => conf = arg,
            'o' => oflag = Some(arg),
            'O' => {
                if let Some(p) = arg.strip_prefix("AliasFile=") {
                    m.type_ = OutputType::Aliases;
                    source = Some(p.to_string());
                }
            }
            't' => {
                m.type_ = match arg.as_str() {
                    "aliases" => OutputType::Aliases,
                    "set" => OutputType::Set,
                    _ => {
                        m.warnx(format_args!("unsupported type '{arg}'"));
                        return 1;
                    }
                }
            }
            'U' => uflag = true,
            _ => return m.usage(),
        }
    }
    let argv = g.operands();

    // sendmail's `makemap TYPE NAME < SOURCE`: C re-executes itself as
    // `makemap -d TYPE -o NAME.db -`; we call ourselves, which needs no
    // installed makemap.
    if argv.len() == 2 {
        if oflag.is_some() {
            return m.usage();
        }
        let dbname = match makemap_strip_db(&argv[1]) {
            Some(_) => argv[1].clone(),
            None => format!("{}.db", argv[1]),
        };
        if dbname.len() >= PATH_MAX {
            m.warnx(format_args!("database name too long"));
            return 1;
        }
        let args = ["makemap", "-d", &argv[0], "-o", &dbname, "-"].map(String::from);
        return makemap(ProgMode::Makemap, &args);
    }

    if m.mode == ProgMode::Newaliases {
        if geteuid() != 0 {
            m.warnx(format_args!("need root privileges"));
            return 1;
        }
        if !argv.is_empty() {
            return m.usage();
        }
        m.type_ = OutputType::Aliases;
        m.source = match source {
            Some(s) => s,
            None => match conf_aliases(&m, &conf) {
                Some(s) => s,
                None => return 1,
            },
        };
    } else {
        if argv.len() != 1 {
            return m.usage();
        }
        m.source = argv[0].clone();
    }

    if uflag {
        return dump_db(&m, &m.source, dbtype);
    }

    let oflag = oflag.unwrap_or_else(|| format!("{}.db", m.source));

    let sb = if m.source != "-" {
        match std::fs::metadata(&m.source) {
            Ok(sb) => Some(sb),
            Err(e) => {
                m.warn(format_args!("stat: {}", m.source), &e);
                return 1;
            }
        }
    } else {
        None
    };

    let template = format!("{oflag}.XXXXXXXXXXX");
    if template.len() >= PATH_MAX {
        m.warnx(format_args!("path too long"));
        return 1;
    }
    let (fd, dbname) = match mkstemp(&template) {
        Ok(r) => r,
        Err(e) => {
            m.warn(format_args!("mkstemp"), &e);
            return 1;
        }
    };

    let Some(dbputs) = makemap_write(&m, &fd, &dbname, &oflag, dbtype, sb.as_ref()) else {
        drop(fd);
        let _ = std::fs::remove_file(&dbname);
        return 1;
    };

    if m.mode == ProgMode::Newaliases {
        println!("{}: {dbputs} aliases", m.source);
    } else if dbputs == 0 {
        m.warnx(format_args!("warning: empty map created: {oflag}"));
    }
    0
}

/// The body of makemap() from dbopen to rename: fills the database in
/// the temporary file `dbname` (open as `fd`) from the source, makes it
/// durable and renames it to `oflag`. The number of entries, or None
/// once the reason is printed; the caller removes the temporary file.
fn makemap_write(
    m: &Makemap,
    fd: &File,
    dbname: &str,
    oflag: &str,
    dbtype: DbType,
    sb: Option<&std::fs::Metadata>,
) -> Option<usize> {
    let mut db = match Db::open(dbname, DbOpen::Truncate { mode: 0o644 }, dbtype) {
        Ok(db) => db,
        Err(e) => {
            m.warn(format_args!("dbopen: {dbname}"), &e);
            return None;
        }
    };

    // The map gets its source's owner and mode: an aliases.db readable
    // by all when aliases is. C changes them on the database's own
    // descriptor; the library truncates the file mkstemp made in place,
    // so `fd` is the same file.
    if let Some(sb) = sb {
        let carried = fd
            .set_permissions(std::fs::Permissions::from_mode(sb.mode() & 0o7777))
            .and_then(|()| std::os::unix::fs::fchown(fd, Some(sb.uid()), Some(sb.gid())));
        if let Err(e) = carried {
            m.warn(
                format_args!("couldn't carry ownership and perms to {dbname}"),
                &e,
            );
            return None;
        }
    }

    let dbputs = parse_map(m, &mut db)?;

    if let Err(e) = db.close() {
        m.warn(format_args!("dbclose: {dbname}"), &e);
        return None;
    }
    // Force to disk before renaming over an existing file.
    if let Err(e) = fd.sync_all() {
        m.warn(format_args!("fsync: {dbname}"), &e);
        return None;
    }
    if let Err(e) = std::fs::rename(dbname, oflag) {
        m.warn(format_args!("rename"), &e);
        return None;
    }
    // C stops at the rename; the new name is only durable once its
    // directory is too.
    let dir = match Path::new(oflag).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Err(e) = fsync_dir(dir) {
        m.warn(format_args!("fsync: {}", dir.display()), &e);
        return None;
    }
    Some(dbputs)
}

/// parse_map(): every entry of the source into `db`; the number stored,
/// or None once the reason is printed (the first bad line stops it).
fn parse_map(m: &Makemap, db: &mut Db) -> Option<usize> {
    let filename = m.source.as_str();
    let stdin;
    let file;
    let fp: Box<dyn BufRead + '_> = if filename == "-" {
        stdin = io::stdin();
        if !stdin.is_terminal() {
            makemap_flock(m, stdin.as_fd())?;
        }
        Box::new(stdin.lock())
    } else {
        file = match File::open(filename) {
            Ok(f) => f,
            Err(e) => {
                m.warn(format_args!("{filename}"), &e);
                return None;
            }
        };
        if !file.is_terminal() {
            makemap_flock(m, file.as_fd())?;
        }
        Box::new(BufReader::new(&file))
    };

    let mut table_type = if m.type_ == OutputType::Set {
        TableFileType::List
    } else {
        TableFileType::Hash
    };
    let mut dbputs = 0;
    for (n, line) in fp.split(b'\n').enumerate() {
        let lineno = n + 1;
        // C's getline() stops the same way at an error as at the end,
        // and builds a truncated map; we say so and build nothing.
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                m.warn(format_args!("{filename}"), &e);
                return None;
            }
        };
        // The bytes would not survive as text: refused rather than
        // stored altered (C stores them as they are).
        let Ok(line) = std::str::from_utf8(&line) else {
            m.warnx(format_args!(
                "{}:{lineno}: invalid entry (not UTF-8)",
                m.source
            ));
            return None;
        };
        match (parse_table_line(line, &mut table_type), m.type_) {
            (TableLine::Skip, _) => {}
            (TableLine::Entry(key, _), OutputType::Set) => {
                add_setentry(m, db, &mut dbputs, key, lineno)?;
            }
            (TableLine::Entry(key, Some(val)), _) => {
                add_mapentry(m, db, &mut dbputs, key, val, lineno)?;
            }
            (TableLine::Malformed | TableLine::Entry(_, None), _) => {
                m.warnx(format_args!("{}:{lineno}: invalid entry", m.source));
                return None;
            }
        }
    }
    Some(dbputs)
}

/// The shared lock parse_map() takes on a source that is not a
/// terminal, so that a map is not built from a file being written.
fn makemap_flock(m: &Makemap, fd: std::os::fd::BorrowedFd<'_>) -> Option<()> {
    match flock_shared_nonblock(fd) {
        Ok(()) => Some(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            m.warnx(format_args!("{} is locked", m.source));
            None
        }
        Err(e) => {
            m.warn(format_args!("{}: flock", m.source), &e);
            None
        }
    }
}

/// add_mapentry(): `keyp` with the value `valp`, checked as the type
/// asks.
fn add_mapentry(
    m: &Makemap,
    db: &mut Db,
    dbputs: &mut usize,
    keyp: &str,
    valp: &str,
    lineno: usize,
) -> Option<()> {
    let key = makemap_key(m, db, keyp, lineno)?;
    let val = match m.type_ {
        OutputType::Aliases => make_aliases(valp),
        _ => make_plain(valp),
    };
    let Some(val) = val else {
        m.warnx(format_args!("{}:{lineno}: invalid entry", m.source));
        return None;
    };
    makemap_put(m, db, dbputs, &key, &val)
}

/// add_setentry(): `keyp` alone, with `<set>` for its value.
fn add_setentry(
    m: &Makemap,
    db: &mut Db,
    dbputs: &mut usize,
    keyp: &str,
    lineno: usize,
) -> Option<()> {
    let key = makemap_key(m, db, keyp, lineno)?;
    makemap_put(m, db, dbputs, &key, b"<set>\0")
}

/// The key of an entry as stored, lowercased with its NUL; None, once
/// said, when the map has it already: a duplicate stops makemap.
fn makemap_key(m: &Makemap, db: &Db, keyp: &str, lineno: usize) -> Option<Vec<u8>> {
    let lkey = lowercase(keyp);
    let mut key = Vec::with_capacity(lkey.len() + 1);
    key.extend_from_slice(lkey.as_bytes());
    key.push(0);
    match db.get(&key) {
        Ok(None) => Some(key),
        Ok(Some(_)) => {
            m.warnx(format_args!(
                "{}:{lineno}: duplicate entry for {lkey}",
                m.source
            ));
            None
        }
        // C takes a failed get for a missing key and goes on to put.
        Err(e) => {
            m.warn(format_args!("dbget"), &e);
            None
        }
    }
}

/// The db->put() and count that end add_mapentry() and add_setentry().
fn makemap_put(m: &Makemap, db: &mut Db, dbputs: &mut usize, key: &[u8], val: &[u8]) -> Option<()> {
    if let Err(e) = db.put(key, val) {
        m.warn(format_args!("dbput"), &e);
        return None;
    }
    *dbputs += 1;
    Some(())
}

/// The stored form of `text`: a C string.
fn makemap_cstring(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 1);
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

/// make_plain(): the value as written.
fn make_plain(text: &str) -> Option<Vec<u8>> {
    Some(makemap_cstring(text))
}

/// make_aliases(): the value as written, once each comma-separated
/// recipient is known to expand (an address, a user, a file, a command,
/// an include or an error).
fn make_aliases(text: &str) -> Option<Vec<u8>> {
    for subrcpt in text.split(',') {
        let subrcpt = strip(subrcpt);
        if subrcpt.is_empty() {
            return None;
        }
        text_to_expandnode(subrcpt)?;
    }
    Some(makemap_cstring(text))
}

/// conf_aliases(): the source of the `aliases` table of the smtpd.conf at
/// `cfgpath`, without the `.db` of a db table's path; PATH_ALIASES when
/// there is no such table. None, once said, when the configuration does
/// not load.
fn conf_aliases(m: &Makemap, cfgpath: &str) -> Option<String> {
    let mut env = match config_default() {
        Ok(env) => env,
        Err(e) => {
            m.warnx(format_args!("{e}"));
            return None;
        }
    };
    if parse_config(&mut env, cfgpath, Default::default()).is_err() {
        return None;
    }
    let Some(table) = table_find(&env, "aliases") else {
        return Some(path_aliases());
    };
    let path = &table.t_config;
    Some(makemap_strip_db(path).unwrap_or(path).to_string())
}

/// dump_db(): every entry of the database as `key<TAB>value`, each as
/// the C string it holds.
fn dump_db(m: &Makemap, dbname: &str, dbtype: DbType) -> i32 {
    let mut db = match Db::open(dbname, DbOpen::ReadOnly, dbtype) {
        Ok(db) => db,
        Err(e) => {
            m.warn(format_args!("dbopen: {dbname}"), &e);
            return 1;
        }
    };
    let cstr = |b: &[u8]| -> Vec<u8> { b.iter().copied().take_while(|&c| c != 0).collect() };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut how = DbSeq::First;
    loop {
        match db.seq(how) {
            Ok(Some((k, v))) => {
                let line = [cstr(&k), b"\t".to_vec(), cstr(&v), b"\n".to_vec()].concat();
                if let Err(e) = out.write_all(&line) {
                    m.warn(format_args!("stdout"), &e);
                    return 1;
                }
            }
            Ok(None) => break,
            Err(e) => {
                m.warn(format_args!("db->seq: {dbname}"), &e);
                return 1;
            }
        }
        how = DbSeq::Next;
    }
    if let Err(e) = out.flush() {
        m.warn(format_args!("stdout"), &e);
        return 1;
    }
    if let Err(e) = db.close() {
        m.warn(format_args!("dbclose: {dbname}"), &e);
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_final_db_suffix_is_taken_off() {
        assert_eq!(
            makemap_strip_db("/etc/mail/aliases.db"),
            Some("/etc/mail/aliases")
        );
        assert_eq!(makemap_strip_db("/etc/mail/aliases"), None);
        assert_eq!(makemap_strip_db("/etc/mail/aliases.dbx"), None);
        // C's strstr finds the first ".db" only.
        assert_eq!(makemap_strip_db("/x.db/map.db"), None);
    }

    #[test]
    fn alias_values_must_expand_item_by_item() {
        assert_eq!(
            make_aliases("alice, bob@example.org, |/usr/bin/vacation").as_deref(),
            Some(&b"alice, bob@example.org, |/usr/bin/vacation\0"[..])
        );
        assert_eq!(make_aliases("alice,,bob"), None);
        assert_eq!(make_aliases("alice, "), None);
        assert_eq!(make_aliases("a b"), None);
        assert_eq!(make_plain("a b").as_deref(), Some(&b"a b\0"[..]));
    }

    #[test]
    fn the_default_aliases_file_sits_next_to_smtpd_conf() {
        let conf_dir = Path::new(CONF_FILE).parent().unwrap();
        assert_eq!(Path::new(&path_aliases()), conf_dir.join("aliases"));
    }
}
