//! makemap(8) and newaliases(8) as installed: the smtpctl binary run
//! through symbolic links of those names in a scratch directory, on real
//! text files. What they build is read back through the `db` table
//! backend (table_lookup on a parsed configuration) and by `smtpd -n`.
//!
//! Compatibility with OpenSMTPD: Debian's OpenSMTPD 6.8 (unpacked under
//! run/ref/ by mk/opensmtpd-ref.sh, which mk/deps.sh runs as root on
//! Debian) builds a map that ours reads, and accepts in `smtpd -n` a map
//! that ours builds. Both link Berkeley DB 5.3. Those tests skip with a
//! note when the reference is missing or the test is not root (its
//! smtpctl refuses to run unless set-group-id opensmtpq, which only
//! root can fake). 6.8's table lines differ from 7.8's in two ways: a
//! key in brackets (`[::1] value`) is not read as one word, and colons
//! are skipped with the blanks after a key (`list: :include:x` has the
//! value `include:x`), so the shared sources have neither.
#![allow(clippy::disallowed_methods)]

// tests/common re-exports things only the daemon tests use.
#[allow(unused_imports)]
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{assert_exit, TestDir};
use smtpd::config::config::{config_default_with, Smtpd};
use smtpd::config::parse::parse_config_diags;
use smtpd::lka::expand::expand_to_text;
use smtpd::table::table::{
    table_fetch, table_lookup, table_match, Lookup, TableService as K, TableState,
};

/// A scratch directory with `makemap` and `newaliases` linked to the
/// smtpctl binary under test.
struct Dir(TestDir);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = TestDir::new(tag);
        for name in ["makemap", "newaliases"] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_smtpctl"), d.path.join(name))
                .expect("symlink");
        }
        Dir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path.join(name)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write");
        p
    }

    /// `prog args...` (makemap or newaliases), stdin empty.
    fn run(&self, prog: &str, args: &[&str]) -> Output {
        self.run_with_stdin(prog, args, b"")
    }

    fn run_with_stdin(&self, prog: &str, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(self.path(prog))
            .args(args)
            .current_dir(&self.0.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().expect("wait")
    }

    /// The names in the directory, sorted.
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `-U`'s dump as sorted lines (a hash has its own order).
fn dump(d: &Dir, db: &Path) -> Vec<String> {
    let out = d.run("makemap", &["-U", db.to_str().unwrap()]);
    assert_exit(&out, 0);
    let mut lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    lines.sort();
    lines
}

/// A configuration declaring `tables`, parsed as smtpd parses it.
fn config(d: &Dir, tables: &str) -> Smtpd {
    let conf = d.write(
        "tables.conf",
        &format!("{tables}action a mbox\nmatch for local action a\n"),
    );
    let mut c = config_default_with("mx.example.org", &[]);
    let (r, diags) = parse_config_diags(&mut c, conf.to_str().unwrap(), Default::default());
    assert!(r.is_ok(), "{diags:?}");
    c
}

fn value(c: &Smtpd, table: &str, kind: K, key: &str) -> Option<String> {
    let t = c.table_find(table).expect("table");
    match table_lookup(c, t, kind, key).expect("lookup") {
        None => None,
        Some(Lookup::Relayhost(s)) => Some(s),
        Some(Lookup::Expand(e)) => Some(expand_to_text(&e, 4096).expect("text")),
        Some(other) => panic!("{other:?}"),
    }
}

fn matches(c: &Smtpd, table: &str, kind: K, key: &str) -> bool {
    table_match(c, c.table_find(table).expect("table"), kind, key).expect("match")
}

/// Asserts that a program said `text` on its standard error.
#[track_caller]
fn assert_said(out: &Output, text: &str) {
    let err = stderr(out);
    assert!(err.contains(text), "{err}");
}

/// `smtpd -n -f CONF` of ours, where CONF declares `table`.
fn our_smtpd_n(d: &Dir, table: &str) -> Output {
    smtpd_n(&common::smtpd_bin(), d, table)
}

/// `smtpd -n -f CONF` of the daemon `smtpd`, where CONF declares `table`.
fn smtpd_n(smtpd: &Path, d: &Dir, table: &str) -> Output {
    let conf = d.write(
        "n.conf",
        &format!("{table}\naction a mbox\nmatch for local action a\n"),
    );
    Command::new(smtpd)
        .args(["-n", "-f", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("run smtpd -n")
}

const MAP: &str = "# relays, one a line\n\
                   \n\
                   Example.ORG   smtp://mx1.example.org\n\
                   \texample.net:smtp+tls://mx2.example.net:587  \n\
                   # the end\n\
                   other.test\tsmtp://[192.0.2.1]\n";

#[test]
fn a_key_value_map_reads_back_through_the_db_backend() {
    let d = Dir::new("makemap-plain");
    let src = d.write("relays", MAP);
    let out = d.run("makemap", &[src.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "");
    let db = d.path("relays.db");
    assert_eq!(
        dump(&d, &db),
        [
            "example.net\tsmtp+tls://mx2.example.net:587",
            "example.org\tsmtp://mx1.example.org",
            "other.test\tsmtp://[192.0.2.1]",
        ]
    );

    let c = config(&d, &format!("table relays db:{}\n", db.display()));
    assert_eq!(
        value(&c, "relays", K::K_RELAYHOST, "EXAMPLE.org").as_deref(),
        Some("smtp://mx1.example.org")
    );
    assert_eq!(
        value(&c, "relays", K::K_RELAYHOST, "example.net").as_deref(),
        Some("smtp+tls://mx2.example.net:587")
    );
    assert_eq!(value(&c, "relays", K::K_RELAYHOST, "example.com"), None);
    // Comments are not keys.
    assert!(!matches(&c, "relays", K::K_STRING, "#"));
    assert!(!matches(&c, "relays", K::K_STRING, "# relays, one a line"));

    let out = our_smtpd_n(&d, &format!("table relays db:{}", db.display()));
    assert_exit(&out, 0);
    assert_said(&out, "configuration OK");

    // The map takes its source's mode (and owner).
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = d.run("makemap", &["-o", "copy.db", src.to_str().unwrap()]);
    assert_exit(&out, 0);
    let meta = std::fs::metadata(d.path("copy.db")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), std::fs::metadata(&src).unwrap().uid());
}

#[test]
fn a_set_reads_back_as_keys_that_match_and_fetch() {
    let d = Dir::new("makemap-set");
    let src = d.write(
        "senders",
        "# who may relay\n192.0.2.1\n\n192.0.2.2\n*.Example.ORG\n",
    );
    let out = d.run("makemap", &["-t", "set", src.to_str().unwrap()]);
    assert_exit(&out, 0);
    let db = d.path("senders.db");
    assert_eq!(
        dump(&d, &db),
        [
            "*.example.org\t<set>",
            "192.0.2.1\t<set>",
            "192.0.2.2\t<set>"
        ]
    );

    let c = config(&d, &format!("table s db:{}\n", db.display()));
    assert!(matches(&c, "s", K::K_STRING, "192.0.2.1"));
    assert!(matches(&c, "s", K::K_NETADDR, "192.0.2.2"));
    assert!(!matches(&c, "s", K::K_NETADDR, "192.0.2.3"));
    assert!(matches(&c, "s", K::K_DOMAIN, "mx.example.org"));
    assert!(!matches(&c, "s", K::K_DOMAIN, "example.org"));
    // Round robin over every key, as `relay src <table>` uses it: each
    // key twice in six fetches (the pattern is no address).
    let t = c.table_find("s").unwrap();
    let mut st = TableState::default();
    let mut seen = Vec::new();
    for _ in 0..6 {
        match table_fetch(&mut st, t, K::K_SOURCE) {
            Ok(Some(Lookup::Source(s))) => seen.push(s.addr.ip().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => seen.push("-".into()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen[..3], seen[3..]);
    seen.sort();
    assert_eq!(
        seen,
        ["-", "-", "192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"]
    );
}

#[test]
fn an_aliases_map_expands_and_newaliases_finds_it_in_smtpd_conf() {
    let d = Dir::new("makemap-aliases");
    let src = d.write(
        "aliases",
        "# aliases(5)\n\
         root: alice, bob@example.org\n\
         MAILER-DAEMON: root\n\
         \n\
         list: |/usr/local/bin/archive, :include:/etc/mail/list\n",
    );
    let out = d.run("makemap", &["-t", "aliases", src.to_str().unwrap()]);
    assert_exit(&out, 0);
    let db = d.path("aliases.db");
    let c = config(&d, &format!("table aliases db:{}\n", db.display()));
    assert_eq!(
        value(&c, "aliases", K::K_ALIAS, "root").as_deref(),
        Some("alice, bob@example.org")
    );
    assert_eq!(
        value(&c, "aliases", K::K_ALIAS, "mailer-daemon").as_deref(),
        Some("root")
    );
    assert_eq!(
        value(&c, "aliases", K::K_ALIAS, "list").as_deref(),
        Some("/usr/local/bin/archive, /etc/mail/list")
    );
    let before = dump(&d, &db);

    // newaliases: the aliases table of smtpd.conf, its .db taken off.
    // Root's only, as in OpenSMTPD.
    if !common::is_root() {
        let out = d.run("newaliases", &[]);
        assert_exit(&out, 1);
        assert_eq!(stderr(&out), "newaliases: need root privileges\n");
        eprintln!("note: newaliases: the rest is skipped, it must run as root");
        return;
    }
    std::fs::remove_file(&db).unwrap();
    // newaliases -f on a configuration whose aliases table is `spec`.
    let newaliases = |spec: String| {
        let conf = d.write(
            "smtpd.conf",
            &format!(
                "table aliases {spec}\naction a mbox alias <aliases>\nmatch for local action a\n"
            ),
        );
        d.run("newaliases", &["-f", conf.to_str().unwrap()])
    };
    // A file table first: newaliases builds FILE.db next to it.
    let out = newaliases(format!("file:{}", src.display()));
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("{}: 3 aliases\n", src.display()));
    assert_eq!(dump(&d, &db), before);
    // Then the db table itself, rebuilt from the text beside it.
    d.write("aliases", "root: carol\nMAILER-DAEMON: root\n");
    let out = newaliases(format!("db:{}", db.display()));
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("{}: 2 aliases\n", src.display()));
    assert_eq!(
        value(&c, "aliases", K::K_ALIAS, "root").as_deref(),
        Some("carol")
    );
    assert_eq!(value(&c, "aliases", K::K_ALIAS, "list"), None);

    // A right-hand side that does not expand is refused where it is.
    let bad = d.write("bad", "root: alice\npostmaster: alice,,bob\n");
    let out = d.run("makemap", &["-t", "aliases", bad.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert_eq!(
        stderr(&out),
        format!("makemap: {}:2: invalid entry\n", bad.display())
    );
    assert!(!d.path("bad.db").exists());

    // newaliases takes no operands and no makemap options.
    assert_exit(&d.run("newaliases", &["-t", "set"]), 1);
    assert_exit(&d.run("newaliases", &["extra"]), 1);
}

#[test]
fn duplicate_keys_and_lines_without_values_build_nothing() {
    let d = Dir::new("makemap-bad");
    // A good map first: a failed rebuild must leave it as it was.
    let src = d.write("map", "alice a@example.org\n");
    assert_exit(&d.run("makemap", &[src.to_str().unwrap()]), 0);
    let db = d.path("map.db");
    let good = std::fs::read(&db).unwrap();
    let files = d.listing();

    d.write(
        "map",
        "alice a@example.org\n# Alice again\nALICE b@example.org\n",
    );
    let out = d.run("makemap", &[src.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert_eq!(
        stderr(&out),
        format!("makemap: {}:3: duplicate entry for alice\n", src.display())
    );
    assert_eq!(std::fs::read(&db).unwrap(), good);
    assert_eq!(d.listing(), files, "a temporary file was left");

    d.write("map", "alice a@example.org\n\nbob\ncarol c@example.org\n");
    let out = d.run("makemap", &[src.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert_eq!(
        stderr(&out),
        format!("makemap: {}:3: invalid entry\n", src.display())
    );
    assert_eq!(std::fs::read(&db).unwrap(), good);
    assert_eq!(d.listing(), files, "a temporary file was left");

    // Into a new file: none appears.
    let out = d.run("makemap", &["-o", "new.db", src.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert!(!d.path("new.db").exists());

    // In a set, a whole line is a key.
    assert_exit(&d.run("makemap", &["-t", "set", src.to_str().unwrap()]), 0);
    d.write("set", "bob\nbob c\n");
    let out = d.run("makemap", &["-t", "set", "set"]);
    assert_exit(&out, 0);
    assert_eq!(dump(&d, &d.path("set.db")), ["bob\t<set>", "bob c\t<set>"]);

    // An empty map is built, with a warning.
    d.write("empty", "# nothing yet\n");
    let out = d.run("makemap", &["empty"]);
    assert_exit(&out, 0);
    assert_eq!(
        stderr(&out),
        "makemap: warning: empty map created: empty.db\n"
    );
    assert_eq!(dump(&d, &d.path("empty.db")), Vec::<String>::new());

    // Options.
    let out = d.run("makemap", &["-d", "dbm", "map"]);
    assert_exit(&out, 1);
    assert_eq!(stderr(&out), "makemap: unsupported DB type 'dbm'\n");
    let out = d.run("makemap", &["-t", "list", "map"]);
    assert_eq!(stderr(&out), "makemap: unsupported type 'list'\n");
    let out = d.run("makemap", &["nosuchfile"]);
    assert_exit(&out, 1);
    assert_eq!(
        stderr(&out),
        "makemap: stat: nosuchfile: No such file or directory\n"
    );
    let out = d.run("makemap", &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).starts_with("usage: makemap [-U]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stdin_btree_and_the_sendmail_form() {
    let d = Dir::new("makemap-stdin");
    let out = d.run_with_stdin(
        "makemap",
        &["-d", "btree", "-o", "b.db", "-"],
        MAP.as_bytes(),
    );
    assert_exit(&out, 0);
    // A btree dumps in key order, and only as a btree.
    let out = d.run("makemap", &["-U", "-d", "btree", "b.db"]);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        "example.net\tsmtp+tls://mx2.example.net:587\n\
         example.org\tsmtp://mx1.example.org\n\
         other.test\tsmtp://[192.0.2.1]\n"
    );
    assert_exit(&d.run("makemap", &["-U", "b.db"]), 1);

    // sendmail's `makemap TYPE NAME < source` builds NAME.db.
    let out = d.run_with_stdin("makemap", &["hash", "relays"], MAP.as_bytes());
    assert_exit(&out, 0);
    assert_eq!(dump(&d, &d.path("relays.db")).len(), 3);
    let out = d.run_with_stdin("makemap", &["hash", "again.db"], MAP.as_bytes());
    assert_exit(&out, 0);
    assert!(d.path("again.db").exists() && !d.path("again.db.db").exists());
}

#[test]
fn a_corrupt_database_is_a_clear_error() {
    let d = Dir::new("makemap-corrupt");
    let mut junk = vec![0u8; 8192];
    smtpd::sys::unistd::arc4random_buf(&mut junk);
    let db = d.path("junk.db");
    std::fs::write(&db, &junk).unwrap();

    let out = our_smtpd_n(&d, &format!("table x db:{}", db.display()));
    assert_exit(&out, 1);
    assert_said(
        &out,
        &format!(
            "invalid configuration file {0} for table x: {0}: \
             not a db(3) hash database, or a damaged one",
            db.display()
        ),
    );
    let err = stderr(&out);
    // Only our message: nothing from the library.
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = d.run("makemap", &["-U", db.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert_eq!(
        stderr(&out),
        format!(
            "makemap: dbopen: {}: not a db(3) hash database, or a damaged one\n",
            db.display()
        )
    );

    let missing = d.path("missing.db");
    let out = our_smtpd_n(&d, &format!("table x db:{}", missing.display()));
    assert_exit(&out, 1);
    assert_said(&out, "No such file or directory");
}

// ---- OpenSMTPD 6.8 -----------------------------------------------------

/// Debian's OpenSMTPD programs (`smtpd`, `makemap`) where
/// mk/opensmtpd-ref.sh unpacks them, or next to `$OPENSMTPD_REF`; None
/// with a note when they cannot run here.
fn reference(test: &str) -> Option<PathBuf> {
    if common::skip_unless_root(test) {
        return None;
    }
    let smtpd = match std::env::var_os("OPENSMTPD_REF") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("run/ref/opensmtpd/usr/sbin/smtpd"),
    };
    let dir = smtpd.parent().map(Path::to_path_buf).unwrap_or_default();
    if !smtpd.exists() || !dir.join("makemap").exists() {
        eprintln!(
            "note: {test}: skipped, {} is missing (mk/opensmtpd-ref.sh fetches it, as root on Debian)",
            dir.display()
        );
        return None;
    }
    if smtpd::sys::process::getgrnam("opensmtpq")
        .ok()
        .flatten()
        .is_none()
    {
        eprintln!(
            "note: {test}: skipped, group opensmtpq is missing: run mk/opensmtpd-ref.sh as root"
        );
        return None;
    }
    Some(dir)
}

/// Their makemap, as if set-group-id opensmtpq as installed (it refuses
/// to run otherwise).
fn their_makemap(dir: &Path, d: &Dir, args: &[&str]) -> Output {
    let gid = common::group("opensmtpq");
    Command::new(dir.join("makemap"))
        .args(args)
        .current_dir(&d.0.path)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .expect("run their makemap")
}

/// Every entry of a hash database as stored, sorted.
fn raw(db: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    use smtpd::sys::db::{Db, DbOpen, DbSeq, DbType};
    let mut db = Db::open(db.to_str().unwrap(), DbOpen::ReadOnly, DbType::Hash).expect("open");
    let mut all = Vec::new();
    let mut how = DbSeq::First;
    while let Some(kv) = db.seq(how).expect("seq") {
        all.push(kv);
        how = DbSeq::Next;
    }
    all.sort();
    all
}

const SHARED_MAP: &str = "# shared between the two\n\
                          Root: alice, bob@example.org\n\
                          postmaster:root\n\
                          \n\
                          list: |/usr/local/bin/archive, :include:/etc/mail/list\n";

#[test]
fn a_map_built_by_opensmtpd_6_8_is_read_by_ours() {
    let Some(refdir) = reference("a_map_built_by_opensmtpd_6_8_is_read_by_ours") else {
        return;
    };
    let d = Dir::new("makemap-theirs");
    let src = d.write("aliases", SHARED_MAP);
    let set = d.write("set", "192.0.2.1\nexample.ORG\n");
    for args in [
        &["-t", "aliases", "-o", "theirs.db", "aliases"][..],
        &["-t", "set", "-o", "theirs-set.db", "set"][..],
    ] {
        let out = their_makemap(&refdir, &d, args);
        assert_exit(&out, 0);
    }
    let ours = d.run(
        "makemap",
        &["-t", "aliases", "-o", "ours.db", src.to_str().unwrap()],
    );
    assert_exit(&ours, 0);
    let ours_set = d.run(
        "makemap",
        &["-t", "set", "-o", "ours-set.db", set.to_str().unwrap()],
    );
    assert_exit(&ours_set, 0);

    // The same entries, byte for byte: keys and values with their NUL.
    assert_eq!(raw(&d.path("theirs.db")), raw(&d.path("ours.db")));
    assert_eq!(raw(&d.path("theirs-set.db")), raw(&d.path("ours-set.db")));
    let entry = (b"192.0.2.1\0".to_vec(), b"<set>\0".to_vec());
    assert!(raw(&d.path("theirs-set.db")).contains(&entry));
    assert_eq!(
        dump(&d, &d.path("theirs-set.db")),
        ["192.0.2.1\t<set>", "example.org\t<set>"]
    );

    let c = config(
        &d,
        &format!(
            "table aliases db:{}\ntable s db:{}\n",
            d.path("theirs.db").display(),
            d.path("theirs-set.db").display()
        ),
    );
    assert_eq!(
        value(&c, "aliases", K::K_ALIAS, "ROOT").as_deref(),
        Some("alice, bob@example.org")
    );
    assert_eq!(
        value(&c, "aliases", K::K_ALIAS, "list").as_deref(),
        Some("/usr/local/bin/archive, /etc/mail/list")
    );
    assert!(matches(&c, "s", K::K_NETADDR, "192.0.2.1"));
    assert!(matches(&c, "s", K::K_DOMAIN, "Example.org"));
    assert!(!matches(&c, "s", K::K_DOMAIN, "example.net"));
    let out = our_smtpd_n(
        &d,
        &format!("table aliases db:{}", d.path("theirs.db").display()),
    );
    assert_exit(&out, 0);
}

#[test]
fn a_map_built_by_ours_is_accepted_by_opensmtpd_6_8() {
    let Some(refdir) = reference("a_map_built_by_ours_is_accepted_by_opensmtpd_6_8") else {
        return;
    };
    let d = Dir::new("makemap-ours");
    let src = d.write("aliases", SHARED_MAP);
    assert_exit(
        &d.run("makemap", &["-t", "aliases", src.to_str().unwrap()]),
        0,
    );
    let db = d.path("aliases.db");

    // Their smtpd opens it at configuration time...
    let out = smtpd_n(
        &refdir.join("smtpd"),
        &d,
        &format!("table aliases db:{}", db.display()),
    );
    assert_exit(&out, 0);
    assert_said(&out, "configuration OK");
    // ...as it would not a file that is no database (so the check above
    // means something).
    let junk = d.write("junk.db", &"x".repeat(8192));
    let out = smtpd_n(
        &refdir.join("smtpd"),
        &d,
        &format!("table aliases db:{}", junk.display()),
    );
    assert_exit(&out, 1);

    // And their makemap reads back our entries.
    let out = their_makemap(&refdir, &d, &["-U", db.to_str().unwrap()]);
    assert_exit(&out, 0);
    let mut theirs: Vec<String> = stdout(&out).lines().map(String::from).collect();
    theirs.sort();
    assert_eq!(
        theirs,
        [
            "list\t|/usr/local/bin/archive, :include:/etc/mail/list",
            "postmaster\troot",
            "root\talice, bob@example.org",
        ]
    );
}
