//! `smtpctl encrypt` and its helper: the hashes it prints are checked by
//! Python's crypt module (the system's crypt(3), as a credentials table's
//! reader would check them) and by sys::crypt::crypt_checkpass, which
//! AUTH uses; smtpctl runs the helper from SMTPD_LIBEXEC, without its
//! set-group-ID group, and as the smtpd user when run as root.
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{group, skip_unless_root, user, TestDir};
use smtpd::pathnames::{PATH_LIBEXEC, SMTPD_QUEUE_USER, SMTPD_USER};
use smtpd::sys::crypt::crypt_checkpass;

const SMTPCTL: &str = env!("CARGO_BIN_EXE_smtpctl");
const ENCRYPT: &str = env!("CARGO_BIN_EXE_encrypt");

/// The prefixes of the schemes the helper may choose, strongest first.
const STRONG: [&str; 8] = ["$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$", "$5$"];

/// Reads `password TAB hash` lines and prints, for each, whether crypt(3)
/// of the password with the hash as setting gives the hash back.
const VERIFIER: &str = r#"
import crypt, sys
for line in sys.stdin.read().split("\n")[:-1]:
    password, hash = line.split("\t")
    print(int(crypt.crypt(password, hash) == hash))
"#;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// `dir/NAME` holding a copy of the built helper, or `script` when given,
/// open to every user (smtpctl run by root drops to the smtpd user).
fn libexec(dir: &TestDir, name: &str, script: Option<&str>) -> PathBuf {
    let lib = dir.path.join(name);
    fs::create_dir_all(&lib).unwrap();
    chmod(&lib, 0o755);
    let helper = lib.join("encrypt");
    match script {
        Some(s) => fs::write(&helper, s).unwrap(),
        None => {
            fs::copy(ENCRYPT, &helper).unwrap();
        }
    }
    chmod(&helper, 0o755);
    lib
}

/// smtpctl `args` with the helpers of `lib`, `stdin` as its input.
fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run smtpctl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn smtpctl(lib: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(SMTPCTL);
    cmd.args(args).env("SMTPD_LIBEXEC", lib);
    run(cmd, stdin)
}

#[track_caller]
fn assert_ok(o: &Output) -> Vec<String> {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(out.ends_with('\n'), "{out:?}");
    out.lines().map(str::to_string).collect()
}

/// Python's verdict on each (password, hash).
fn python_verifies(pairs: &[(&str, &str)]) -> Vec<bool> {
    let input: String = pairs.iter().map(|(p, h)| format!("{p}\t{h}\n")).collect();
    let mut cmd = Command::new("python3");
    cmd.args(["-W", "ignore", "-c", VERIFIER]);
    let o = run(cmd, input.as_bytes());
    assert!(
        o.status.success(),
        "python3's crypt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l == "1")
        .collect()
}

#[track_caller]
fn assert_strong(hash: &str) {
    assert!(
        STRONG.iter().any(|p| hash.starts_with(p)),
        "not one of {STRONG:?}: {hash}"
    );
}

/// The salt: everything up to the last '$'.
fn salt(hash: &str) -> &str {
    &hash[..hash.rfind('$').unwrap()]
}

#[test]
fn encrypt_prints_one_hash_that_crypt_verifies() {
    let dir = TestDir::new("encrypt");
    let lib = libexec(&dir, "libexec", None);
    let lines = assert_ok(&smtpctl(&lib, &["encrypt", "secret"], b""));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let hash = &lines[0];
    assert_strong(hash);
    assert_eq!(
        python_verifies(&[("secret", hash), ("Secret", hash), ("", hash)]),
        [true, false, false]
    );
    assert!(crypt_checkpass(b"secret", hash));
    assert!(!crypt_checkpass(b"secret2", hash));
    assert!(!crypt_checkpass(b"", hash));
}

#[test]
fn encrypt_without_argument_hashes_each_line_of_stdin() {
    let dir = TestDir::new("encrypt-stdin");
    let lib = libexec(&dir, "libexec", None);
    // An empty line is a password too; the last needs no newline.
    let passwords = ["one", "two words", "", " spaced ", "l\u{e0}st"];
    let input = passwords.join("\n");
    let lines = assert_ok(&smtpctl(&lib, &["encrypt"], input.as_bytes()));
    assert_eq!(lines.len(), passwords.len(), "{lines:?}");
    let mut pairs = Vec::new();
    for (i, (password, hash)) in passwords.iter().zip(&lines).enumerate() {
        assert_strong(hash);
        assert!(crypt_checkpass(password.as_bytes(), hash), "{password:?}");
        let other = passwords[(i + 1) % passwords.len()];
        assert!(!crypt_checkpass(other.as_bytes(), hash), "{other:?}");
        pairs.push((*password, hash.as_str()));
        pairs.push((other, hash.as_str()));
    }
    let verdicts = python_verifies(&pairs);
    assert_eq!(verdicts, [true, false].repeat(passwords.len()), "{pairs:?}");
}

#[test]
fn each_hash_has_a_salt_of_its_own() {
    let dir = TestDir::new("encrypt-salt");
    let lib = libexec(&dir, "libexec", None);
    let a = assert_ok(&smtpctl(&lib, &["encrypt", "secret"], b""));
    let b = assert_ok(&smtpctl(&lib, &["encrypt", "secret"], b""));
    assert_ne!(salt(&a[0]), salt(&b[0]));
    // Within one run as well.
    let c = assert_ok(&smtpctl(&lib, &["encrypt"], b"secret\nsecret\n"));
    assert_ne!(salt(&c[0]), salt(&c[1]));
}

#[test]
fn a_missing_helper_is_an_error() {
    let dir = TestDir::new("encrypt-missing");
    let lib = dir.path.join("empty");
    fs::create_dir(&lib).unwrap();
    let o = smtpctl(&lib, &["encrypt", "secret"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err,
        format!(
            "smtpctl: {}: No such file or directory\n",
            lib.join("encrypt").display()
        )
    );
}

#[test]
fn the_helper_refuses_more_than_one_argument() {
    let o = run(
        {
            let mut c = Command::new(ENCRYPT);
            c.args(["a", "b"]);
            c
        },
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "usage: encrypt <string>\n"
    );
}

/// A stand-in helper that prints its ids and arguments.
const SHOW_IDS: &str = "#!/bin/sh\n\
    grep -E '^(Uid|Gid|Groups):' /proc/$$/status\n\
    echo \"$#\"\n\
    for a in \"$@\"; do echo \"$a\"; done\n";

/// SHOW_IDS's output: uids, gids, groups, then the arguments.
fn ids(lines: &[String]) -> (Vec<u32>, Vec<u32>, Vec<u32>, Vec<String>) {
    let nums = |l: &str| -> Vec<u32> {
        l.split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert!(lines.len() >= 4, "{lines:?}");
    let n: usize = lines[3].parse().unwrap();
    (
        nums(&lines[0]),
        nums(&lines[1]),
        nums(&lines[2]),
        lines[4..4 + n].to_vec(),
    )
}

#[test]
fn root_runs_the_helper_as_the_smtpd_user() {
    if skip_unless_root("root_runs_the_helper_as_the_smtpd_user") {
        return;
    }
    let dir = TestDir::new("encrypt-root");
    let lib = libexec(&dir, "libexec", Some(SHOW_IDS));
    let lines = assert_ok(&smtpctl(&lib, &["encrypt", "two words"], b""));
    let (uids, gids, groups, args) = ids(&lines);
    let (uid, gid) = user(SMTPD_USER);
    assert_eq!(uids, [uid; 4]);
    assert_eq!(gids, [gid; 4]);
    assert_eq!(groups, [gid]);
    assert_eq!(args, ["two words"]);

    let lines = assert_ok(&smtpctl(&lib, &["encrypt"], b""));
    assert_eq!(ids(&lines).3, Vec::<String>::new());
}

#[test]
fn any_user_may_encrypt() {
    if skip_unless_root("any_user_may_encrypt") {
        return;
    }
    let dir = TestDir::new("encrypt-user");
    let lib = libexec(&dir, "libexec", None);
    let smtpctl_copy = dir.path.join("smtpctl");
    fs::copy(SMTPCTL, &smtpctl_copy).unwrap();
    chmod(&smtpctl_copy, 0o755);
    let (uid, gid) = user("nobody");
    let mut cmd = Command::new(&smtpctl_copy);
    cmd.args(["encrypt", "secret"])
        .env("SMTPD_LIBEXEC", &lib)
        .current_dir("/")
        .uid(uid)
        .gid(gid);
    let lines = assert_ok(&run(cmd, b""));
    assert_eq!(lines.len(), 1);
    assert!(crypt_checkpass(b"secret", &lines[0]), "{}", lines[0]);
}

/// Installed as it is (set-group-ID to the queue's group), smtpctl runs
/// the helper with the caller's group only. The helper is then the
/// compiled-in one, SMTPD_LIBEXEC counting for nothing in a set-id
/// program: the test's directory is mounted over the nearest existing
/// directory above it, in a mount namespace of smtpctl's own.
#[test]
fn setgid_smtpctl_runs_the_helper_without_its_group() {
    if skip_unless_root("setgid_smtpctl_runs_the_helper_without_its_group") {
        return;
    }
    let target = Path::new(PATH_LIBEXEC);
    let Some(mount) = target.ancestors().find(|a| a.is_dir()) else {
        return;
    };
    if mount == Path::new("/") || mount == Path::new("/usr") {
        eprintln!(
            "note: setgid_smtpctl_runs_the_helper_without_its_group: skipped, \
             no directory to mount over near {PATH_LIBEXEC}"
        );
        return;
    }
    let dir = TestDir::new("encrypt-setgid");
    let mnt = dir.path.join("mnt");
    let rel = target.strip_prefix(mount).unwrap();
    let mut p = mnt.clone();
    fs::create_dir(&p).unwrap();
    chmod(&p, 0o755);
    for c in rel.components() {
        p.push(c);
        fs::create_dir(&p).unwrap();
        chmod(&p, 0o755);
    }
    let helper = p.join("encrypt");
    fs::write(&helper, SHOW_IDS).unwrap();
    chmod(&helper, 0o755);

    let smtpctl_copy = dir.path.join("smtpctl");
    fs::copy(SMTPCTL, &smtpctl_copy).unwrap();
    std::os::unix::fs::chown(&smtpctl_copy, Some(0), Some(group(SMTPD_QUEUE_USER))).unwrap();
    chmod(&smtpctl_copy, 0o2755);

    let (uid, gid) = user("nobody");
    let mut cmd = Command::new(&smtpctl_copy);
    cmd.args(["encrypt", "secret"])
        // Ignored: set-id.
        .env("SMTPD_LIBEXEC", "/nonexistent")
        .current_dir("/");
    let binds = [(mnt, mount.to_path_buf())];
    smtpd::sys::testing::mount_ns_pre_exec(&mut cmd, &binds, Some((uid, gid))).unwrap();
    let lines = assert_ok(&run(cmd, b""));
    let (uids, gids, groups, args) = ids(&lines);
    assert_eq!(uids, [uid; 4]);
    assert_eq!(gids, [gid; 4]);
    assert_eq!(groups, [gid]);
    assert_eq!(args, ["secret"]);
}
