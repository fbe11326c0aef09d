//! forward.c: users' ~/.forward files (OpenSMTPD forward.c 1.39).
//!
//! So far `struct forward_req`, the request lka sends the parent to open
//! a .forward (parent_forward_open in smtpd.rs) and the parent's answer.
//! Reading the file and expanding it arrive with local delivery.

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

#[cfg(test)]
mod tests {
    use super::*;

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
