//! forward.c: users' ~/.forward files (OpenSMTPD forward.c 1.39).
//!
//! `struct forward_req`, the request lka sends the parent to open a
//! .forward (parent_forward_open in smtpd.rs) and the parent's answer, and
//! forwards_get(), which reads the file the parent opened.

use crate::defines::{PATH_MAX, SMTPD_VUSERNAME_SIZE};

/// struct forward_req, exchanged raw as in OpenSMTPD: its C layout is
/// id u64, status u8, user[SMTPD_VUSERNAME_SIZE], uid, gid,
/// directory[PATH_MAX], with C's alignment padding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardReq {
    pub id: u64,
    /// The parent's answer: 1 opened (or no file), 0 refused, -1 (as
    /// 255) try again later.
    pub status: u8,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub directory: String,
}

const OFF_USER: usize = 9;
const OFF_UID: usize = (OFF_USER + SMTPD_VUSERNAME_SIZE).div_ceil(4) * 4;
const OFF_DIR: usize = OFF_UID + 8;
/// sizeof(struct forward_req).
pub const FORWARD_REQ_SIZE: usize = (OFF_DIR + PATH_MAX).div_ceil(8) * 8;

/// A NUL-terminated string in a fixed array.
fn cstr_field(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0)?;
    String::from_utf8(b[..end].to_vec()).ok()
}

fn put_field(buf: &mut [u8], s: &str) -> bool {
    if s.len() >= buf.len() || s.as_bytes().contains(&0) {
        return false;
    }
    buf[..s.len()].copy_from_slice(s.as_bytes());
    true
}

impl ForwardReq {
    /// The C struct's bytes; None when a string does not fit its array.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let mut b = vec![0u8; FORWARD_REQ_SIZE];
        b[..8].copy_from_slice(&self.id.to_ne_bytes());
        b[8] = self.status;
        if !put_field(
            &mut b[OFF_USER..OFF_USER + SMTPD_VUSERNAME_SIZE],
            &self.user,
        ) || !put_field(&mut b[OFF_DIR..OFF_DIR + PATH_MAX], &self.directory)
        {
            return None;
        }
        b[OFF_UID..OFF_UID + 4].copy_from_slice(&self.uid.to_ne_bytes());
        b[OFF_UID + 4..OFF_UID + 8].copy_from_slice(&self.gid.to_ne_bytes());
        Some(b)
    }

    /// From the C struct's bytes. The strings are taken up to their NUL,
    /// or the whole array when there is none (the parent terminates them
    /// itself, as OpenSMTPD does).
    pub fn from_bytes(b: &[u8]) -> Option<ForwardReq> {
        if b.len() != FORWARD_REQ_SIZE {
            return None;
        }
        let field = |r: std::ops::Range<usize>| {
            let mut a = b[r].to_vec();
            *a.last_mut()? = 0;
            cstr_field(&a)
        };
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(ForwardReq {
            id: u64::from_ne_bytes(b[..8].try_into().ok()?),
            status: b[8],
            user: field(OFF_USER..OFF_USER + SMTPD_VUSERNAME_SIZE)?,
            uid: u32_at(OFF_UID),
            gid: u32_at(OFF_UID + 4),
            directory: field(OFF_DIR..OFF_DIR + PATH_MAX)?,
        })
    }
}

/// MAX_FORWARD_SIZE: a larger .forward is a temporary failure.
const MAX_FORWARD_SIZE: u64 = 4 * 1024;
/// MAX_EXPAND_NODES: the most destinations one .forward may add.
const MAX_EXPAND_NODES: usize = 100;

/// What a .forward gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwards {
    /// Destinations were added to the expansion.
    Expanded,
    /// An empty file, or one that names nothing new.
    Empty,
    /// Too large, unreadable or unparsable: a temporary failure.
    Tempfail,
}

/// forwards_get(): the destinations of the .forward open on `fd`, added
/// to `expand`.
pub fn forwards_get(fd: std::os::fd::OwnedFd, expand: &mut super::expand::Expand) -> Forwards {
    let f = std::fs::File::from(fd);
    let Ok(meta) = f.metadata() else {
        return Forwards::Tempfail;
    };
    if meta.len() == 0 {
        log_info!("info: forward file is empty");
        return Forwards::Empty;
    }
    if meta.len() >= MAX_FORWARD_SIZE {
        log_info!("info: forward file exceeds max size");
        return Forwards::Tempfail;
    }
    let save = expand.nb_nodes;
    for line in super::aliases::fparseln(std::io::BufReader::new(f)) {
        if !super::expand::expand_line(expand, &line, false) {
            log_info!("info: parse error in forward file");
            return Forwards::Tempfail;
        }
        if expand.nb_nodes > MAX_EXPAND_NODES {
            log_info!("info: forward file expanded too many nodes");
            return Forwards::Tempfail;
        }
    }
    if expand.nb_nodes > save {
        Forwards::Expanded
    } else {
        Forwards::Empty
    }
}

#[cfg(test)]
mod tests {
    use super::super::expand::ExpandType;
    use super::*;

    fn forward_file(text: &str) -> std::os::fd::OwnedFd {
        let p = std::env::temp_dir().join(format!(
            "smtpd-forward-{}-{}",
            std::process::id(),
            crate::util::util::generate_uid()
        ));
        std::fs::write(&p, text).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        f.into()
    }

    #[test]
    fn forward_files_expand_or_say_why_not() {
        let mut x = super::super::expand::Expand::default();
        assert_eq!(forwards_get(forward_file(""), &mut x), Forwards::Empty);
        assert_eq!(
            forwards_get(forward_file("bob@example.org, |/bin/true\n# c\n"), &mut x),
            Forwards::Expanded
        );
        assert_eq!(x.nb_nodes, 2);
        assert_eq!(
            forwards_get(forward_file(&"a".repeat(5000)), &mut x),
            Forwards::Tempfail
        );
        assert_eq!(
            forwards_get(forward_file("\"unterminated\n"), &mut x),
            Forwards::Tempfail
        );
    }

    /// The nodes one .forward gives, as (type, value); None when it is
    /// a temporary failure.
    fn forward_nodes(text: &str) -> Option<Vec<(ExpandType, String)>> {
        let mut x = super::super::expand::Expand::default();
        if forwards_get(forward_file(text), &mut x) == Forwards::Tempfail {
            return None;
        }
        Some(
            (0..x.nb_nodes)
                .filter_map(|i| x.node(i))
                .map(|n| (n.type_, n.user().to_string()))
                .collect(),
        )
    }

    // What forward.5 says of the format.
    #[test]
    fn forward_5_format() {
        use ExpandType::*;
        let v = |t, s: &str| (t, s.to_string());
        // Includes are skipped; a file of nothing else names nothing.
        assert_eq!(forward_nodes(":include:/etc/passwd\n"), Some(vec![]));
        // A backslash before a user name is dropped; duplicates go.
        assert_eq!(
            forward_nodes("\\alice\nalice, alice\n"),
            Some(vec![v(Username, "alice")])
        );
        // `#` starts a comment even inside quotes, unless escaped.
        assert_eq!(forward_nodes("\"|/bin/cmd #x\"\n"), None);
        assert_eq!(
            forward_nodes("\"|/bin/cmd \\#x, y\"\n"),
            Some(vec![v(Filter, "/bin/cmd #x, y")])
        );
        // Continued lines, blanks around items, empty lines.
        assert_eq!(
            forward_nodes("\n  /var/mail/a ,\\\n\terror:550 gone away\n"),
            Some(vec![v(Filename, "/var/mail/a"), v(Error, "550 gone away")])
        );
        // `~` is not expanded: not a destination.
        assert_eq!(forward_nodes("~/mbox\n"), None);
    }

    #[test]
    fn forward_5_limits() {
        let sized = |n: usize| format!("bob\n{}\n", "#".repeat(n - 5));
        assert!(forward_nodes(&sized(4095)).is_some());
        assert!(forward_nodes(&sized(4096)).is_none());
        let users = |n: usize| (0..n).map(|i| format!("u{i}\n")).collect::<String>();
        assert_eq!(forward_nodes(&users(100)).map(|v| v.len()), Some(100));
        assert_eq!(forward_nodes(&users(101)), None);
        let long = format!("{}@example.org\n", "a".repeat(2048));
        assert_eq!(forward_nodes(&long), None);
    }

    #[test]
    fn layout_is_c_s() {
        // 8 + 1 + 256 = 265, uid aligned at 268, gid at 272, directory at
        // 276, and the total rounded to u64 alignment.
        assert_eq!((OFF_UID, OFF_DIR), (268, 276));
        assert_eq!(FORWARD_REQ_SIZE, (276 + PATH_MAX).div_ceil(8) * 8);
    }

    #[test]
    fn round_trip_and_refusals() {
        let r = ForwardReq {
            id: 0x1122_3344_5566_7788,
            status: 1,
            user: "alice".into(),
            uid: 1000,
            gid: 1000,
            directory: "/home/alice".into(),
        };
        let b = r.to_bytes().unwrap();
        assert_eq!(ForwardReq::from_bytes(&b), Some(r.clone()));
        assert!(ForwardReq::from_bytes(&b[1..]).is_none());
        let long = ForwardReq {
            user: "x".repeat(SMTPD_VUSERNAME_SIZE),
            ..r
        };
        assert!(long.to_bytes().is_none());
    }
}
