//! mda.c: the dispatcher's local delivery driver (OpenSMTPD mda.c 1.147).
//! For now only `struct deliver` of smtpd.h: what the dispatcher sends
//! the parent with IMSG_MDA_FORK, as one m_add_data blob in the C
//! struct's layout, which the parent checks with `sz == sizeof(deliver)`.

use std::mem::{align_of, size_of};

use crate::defines::{
    EXPAND_BUFFER, LINE_MAX, PATH_MAX, SMTPD_SUBADDRESS_SIZE, SMTPD_VUSERNAME_SIZE,
};
use crate::table::table::Userinfo;
use crate::util::mailaddr::{cstr_get, cstr_put, LayoutError, Mailaddr, MAILADDR_SIZE};

/// struct deliver: one local delivery, as the parent forks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deliver {
    /// The name of the action.
    pub dispatcher: String,
    pub sender: Mailaddr,
    pub rcpt: Mailaddr,
    pub dest: Mailaddr,
    pub mda_subaddress: String,
    /// A `|command` from a .forward file or an alias, run instead of the
    /// action's own command.
    pub mda_exec: String,
    pub userinfo: Userinfo,
}

const fn align_up(off: usize, align: usize) -> usize {
    off.div_ceil(align) * align
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

// struct userinfo { char username[256]; char directory[PATH_MAX];
// uid_t uid; gid_t gid; }: uid_t and gid_t are 4-byte integers on Linux
// and OpenBSD, and PATH_MAX (a multiple of 4) is 4096 on Linux, 1024 on
// OpenBSD:
//                 Linux           OpenBSD
//   username      0 ..  256       0 ..  256
//   directory   256 .. 4352     256 .. 1280
//   uid        4352 .. 4356    1280 .. 1284
//   gid        4356 .. 4360    1284 .. 1288
// sizeof 4360 (OpenBSD 1288), a multiple of the alignment 4: no padding.
const UI_USERNAME: usize = 0;
const UI_DIRECTORY: usize = UI_USERNAME + SMTPD_VUSERNAME_SIZE;
const UI_UID: usize = align_up(UI_DIRECTORY + PATH_MAX, align_of::<libc::uid_t>());
const UI_GID: usize = align_up(UI_UID + size_of::<libc::uid_t>(), align_of::<libc::gid_t>());
const USERINFO_ALIGN: usize = max(align_of::<libc::uid_t>(), align_of::<libc::gid_t>());
/// sizeof(struct userinfo).
pub const USERINFO_SIZE: usize = align_up(UI_GID + size_of::<libc::gid_t>(), USERINFO_ALIGN);

// struct deliver { char dispatcher[EXPAND_BUFFER]; struct mailaddr sender,
// rcpt, dest; char mda_subaddress[256]; char mda_exec[LINE_MAX];
// struct userinfo userinfo; }, every member but userinfo byte-aligned:
//   dispatcher        0 .. 1024
//   sender         1024 .. 1536   (struct mailaddr: 256 + 256)
//   rcpt           1536 .. 2048
//   dest           2048 .. 2560
//   mda_subaddress 2560 .. 2816
//   mda_exec       2816 .. 4864   (LINE_MAX 2048)
//   userinfo       4864 .. 9224   (OpenBSD 4864 .. 6152; 4864 is a
//                                  multiple of 4: no padding before it)
// sizeof(struct deliver) = 9224 on Linux, 6152 on OpenBSD, a multiple of
// its alignment 4: no padding at the end either.
const D_DISPATCHER: usize = 0;
const D_SENDER: usize = D_DISPATCHER + EXPAND_BUFFER;
const D_RCPT: usize = D_SENDER + MAILADDR_SIZE;
const D_DEST: usize = D_RCPT + MAILADDR_SIZE;
const D_SUBADDRESS: usize = D_DEST + MAILADDR_SIZE;
const D_EXEC: usize = D_SUBADDRESS + SMTPD_SUBADDRESS_SIZE;
const D_USERINFO: usize = align_up(D_EXEC + LINE_MAX, USERINFO_ALIGN);
/// sizeof(struct deliver): 9224 bytes on Linux, 6152 on OpenBSD.
pub const DELIVER_SIZE: usize = align_up(D_USERINFO + USERINFO_SIZE, USERINFO_ALIGN);

impl Deliver {
    /// The bytes of the C struct, NUL-padded, for m_add_data. A string
    /// longer than its array is refused, never cut.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LayoutError> {
        let mut b = vec![0u8; DELIVER_SIZE];
        cstr_put(
            &mut b[D_DISPATCHER..D_SENDER],
            &self.dispatcher,
            "dispatcher",
        )?;
        self.sender
            .encode_into(&mut b[D_SENDER..D_RCPT], "sender")?;
        self.rcpt.encode_into(&mut b[D_RCPT..D_DEST], "rcpt")?;
        self.dest
            .encode_into(&mut b[D_DEST..D_SUBADDRESS], "dest")?;
        cstr_put(
            &mut b[D_SUBADDRESS..D_EXEC],
            &self.mda_subaddress,
            "mda_subaddress",
        )?;
        cstr_put(
            &mut b[D_EXEC..D_EXEC + LINE_MAX],
            &self.mda_exec,
            "mda_exec",
        )?;
        let ui = &mut b[D_USERINFO..D_USERINFO + USERINFO_SIZE];
        cstr_put(
            &mut ui[UI_USERNAME..UI_DIRECTORY],
            &self.userinfo.username,
            "userinfo.username",
        )?;
        cstr_put(
            &mut ui[UI_DIRECTORY..UI_DIRECTORY + PATH_MAX],
            &self.userinfo.directory,
            "userinfo.directory",
        )?;
        let uid: libc::uid_t = self.userinfo.uid;
        let gid: libc::gid_t = self.userinfo.gid;
        ui[UI_UID..UI_UID + size_of::<libc::uid_t>()].copy_from_slice(&uid.to_ne_bytes());
        ui[UI_GID..UI_GID + size_of::<libc::gid_t>()].copy_from_slice(&gid.to_ne_bytes());
        Ok(b)
    }

    /// The struct from the blob of IMSG_MDA_FORK, which must be exactly
    /// sizeof(struct deliver) with every array NUL-terminated and UTF-8.
    pub fn from_bytes(b: &[u8]) -> Result<Deliver, LayoutError> {
        if b.len() != DELIVER_SIZE {
            return Err(LayoutError::Size {
                what: "deliver",
                len: b.len(),
                size: DELIVER_SIZE,
            });
        }
        let ui = &b[D_USERINFO..D_USERINFO + USERINFO_SIZE];
        let mut uid = [0u8; size_of::<libc::uid_t>()];
        uid.copy_from_slice(&ui[UI_UID..UI_UID + size_of::<libc::uid_t>()]);
        let mut gid = [0u8; size_of::<libc::gid_t>()];
        gid.copy_from_slice(&ui[UI_GID..UI_GID + size_of::<libc::gid_t>()]);
        Ok(Deliver {
            dispatcher: cstr_get(&b[D_DISPATCHER..D_SENDER], "dispatcher")?,
            sender: Mailaddr::decode_from(&b[D_SENDER..D_RCPT], "sender")?,
            rcpt: Mailaddr::decode_from(&b[D_RCPT..D_DEST], "rcpt")?,
            dest: Mailaddr::decode_from(&b[D_DEST..D_SUBADDRESS], "dest")?,
            mda_subaddress: cstr_get(&b[D_SUBADDRESS..D_EXEC], "mda_subaddress")?,
            mda_exec: cstr_get(&b[D_EXEC..D_EXEC + LINE_MAX], "mda_exec")?,
            userinfo: Userinfo {
                username: cstr_get(&ui[UI_USERNAME..UI_DIRECTORY], "userinfo.username")?,
                directory: cstr_get(
                    &ui[UI_DIRECTORY..UI_DIRECTORY + PATH_MAX],
                    "userinfo.directory",
                )?,
                uid: libc::uid_t::from_ne_bytes(uid),
                gid: libc::gid_t::from_ne_bytes(gid),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defines::{SMTPD_MAXDOMAINPARTSIZE, SMTPD_MAXLOCALPARTSIZE};
    use std::ptr::addr_of;

    // The structs of smtpd.h as a C compiler lays them out.
    #[repr(C)]
    struct CMailaddr {
        user: [libc::c_char; SMTPD_MAXLOCALPARTSIZE],
        domain: [libc::c_char; SMTPD_MAXDOMAINPARTSIZE],
    }

    #[repr(C)]
    struct CUserinfo {
        username: [libc::c_char; SMTPD_VUSERNAME_SIZE],
        directory: [libc::c_char; PATH_MAX],
        uid: libc::uid_t,
        gid: libc::gid_t,
    }

    #[repr(C)]
    struct CDeliver {
        dispatcher: [libc::c_char; EXPAND_BUFFER],
        sender: CMailaddr,
        rcpt: CMailaddr,
        dest: CMailaddr,
        mda_subaddress: [libc::c_char; SMTPD_SUBADDRESS_SIZE],
        mda_exec: [libc::c_char; LINE_MAX],
        userinfo: CUserinfo,
    }

    fn c_mailaddr() -> CMailaddr {
        CMailaddr {
            user: [0; SMTPD_MAXLOCALPARTSIZE],
            domain: [0; SMTPD_MAXDOMAINPARTSIZE],
        }
    }

    fn sample() -> Deliver {
        Deliver {
            dispatcher: "local_mail".into(),
            sender: Mailaddr::new("alice", "example.com"),
            rcpt: Mailaddr::new("bob+lists", "example.org"),
            dest: Mailaddr::new("bob", "example.org"),
            mda_subaddress: "lists".into(),
            mda_exec: "/usr/bin/procmail -d bob".into(),
            userinfo: Userinfo {
                username: "bob".into(),
                directory: "/home/bob".into(),
                uid: 1001,
                gid: 0x0102_0304,
            },
        }
    }

    #[test]
    fn size_and_offsets_are_those_of_the_c_struct() {
        assert_eq!(USERINFO_SIZE, 256 + PATH_MAX + 8);
        assert_eq!(DELIVER_SIZE, 4864 + USERINFO_SIZE);
        #[cfg(target_os = "linux")]
        assert_eq!(DELIVER_SIZE, 9224);
        #[cfg(target_os = "openbsd")]
        assert_eq!(DELIVER_SIZE, 6152);
        assert_eq!(USERINFO_SIZE, size_of::<CUserinfo>());
        assert_eq!(DELIVER_SIZE, size_of::<CDeliver>());
        let c = CDeliver {
            dispatcher: [0; EXPAND_BUFFER],
            sender: c_mailaddr(),
            rcpt: c_mailaddr(),
            dest: c_mailaddr(),
            mda_subaddress: [0; SMTPD_SUBADDRESS_SIZE],
            mda_exec: [0; LINE_MAX],
            userinfo: CUserinfo {
                username: [0; SMTPD_VUSERNAME_SIZE],
                directory: [0; PATH_MAX],
                uid: 0,
                gid: 0,
            },
        };
        let base = addr_of!(c) as usize;
        let off = |p: usize| p - base;
        assert_eq!(off(addr_of!(c.sender) as usize), D_SENDER);
        assert_eq!(off(addr_of!(c.rcpt) as usize), D_RCPT);
        assert_eq!(off(addr_of!(c.dest) as usize), D_DEST);
        assert_eq!(off(addr_of!(c.mda_subaddress) as usize), D_SUBADDRESS);
        assert_eq!(off(addr_of!(c.mda_exec) as usize), D_EXEC);
        assert_eq!(off(addr_of!(c.userinfo) as usize), D_USERINFO);
        assert_eq!(
            off(addr_of!(c.userinfo.directory) as usize),
            D_USERINFO + UI_DIRECTORY
        );
        assert_eq!(off(addr_of!(c.userinfo.uid) as usize), D_USERINFO + UI_UID);
        assert_eq!(off(addr_of!(c.userinfo.gid) as usize), D_USERINFO + UI_GID);
    }

    #[test]
    fn round_trips_through_bytes() {
        let d = sample();
        let b = d.to_bytes().unwrap();
        assert_eq!(b.len(), DELIVER_SIZE);
        assert_eq!(Deliver::from_bytes(&b).unwrap(), d);
        assert_eq!(
            Deliver::from_bytes(&Deliver::default().to_bytes().unwrap()).unwrap(),
            Deliver::default()
        );
    }

    #[test]
    fn fields_sit_at_their_c_offsets_nul_padded_and_ids_native() {
        let b = sample().to_bytes().unwrap();
        assert_eq!(&b[..11], b"local_mail\0");
        assert!(b[11..1024].iter().all(|&x| x == 0));
        assert_eq!(&b[1024..1030], b"alice\0");
        assert_eq!(&b[1280..1292], b"example.com\0");
        assert_eq!(&b[1536..1546], b"bob+lists\0");
        assert_eq!(&b[2048..2052], b"bob\0");
        assert_eq!(&b[2560..2566], b"lists\0");
        assert_eq!(&b[2816..2841], b"/usr/bin/procmail -d bob\0");
        assert_eq!(&b[4864..4868], b"bob\0");
        assert_eq!(&b[5120..5130], b"/home/bob\0");
        assert!(b[5130..5120 + PATH_MAX].iter().all(|&x| x == 0));
        let uid = 5120 + PATH_MAX;
        assert_eq!(&b[uid..uid + 4], &1001u32.to_ne_bytes());
        assert_eq!(&b[uid + 4..uid + 8], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(uid + 8, DELIVER_SIZE);
    }

    #[test]
    fn too_long_strings_are_refused_not_cut() {
        let mut d = sample();
        d.mda_exec = "x".repeat(LINE_MAX - 1);
        assert!(d.to_bytes().is_ok());
        d.mda_exec.push('x');
        assert_eq!(
            d.to_bytes().unwrap_err(),
            LayoutError::TooLong {
                field: "mda_exec".into(),
                len: LINE_MAX,
                size: LINE_MAX
            }
        );
        let mut d = sample();
        d.userinfo.directory = "/".repeat(PATH_MAX);
        assert_eq!(
            d.to_bytes().unwrap_err().to_string(),
            format!(
                "userinfo.directory: {PATH_MAX} bytes do not fit in char[{PATH_MAX}] (at most {})",
                PATH_MAX - 1
            )
        );
        let mut d = sample();
        d.dest.domain = "d".repeat(256);
        assert!(matches!(
            d.to_bytes(),
            Err(LayoutError::TooLong { field, .. }) if field == "dest.domain"
        ));
        let mut d = sample();
        d.dispatcher = "a\0b".into();
        assert!(matches!(d.to_bytes(), Err(LayoutError::Nul { .. })));
    }

    #[test]
    fn blobs_of_the_wrong_size_are_refused() {
        for len in [0, DELIVER_SIZE - 1, DELIVER_SIZE + 1] {
            assert_eq!(
                Deliver::from_bytes(&vec![0; len]).unwrap_err().to_string(),
                format!("struct deliver: {len} bytes, expected {DELIVER_SIZE}")
            );
        }
    }

    #[test]
    fn unterminated_or_non_utf8_arrays_are_refused() {
        let mut b = sample().to_bytes().unwrap();
        b[2560..2816].fill(b'a');
        assert_eq!(
            Deliver::from_bytes(&b).unwrap_err(),
            LayoutError::Unterminated {
                field: "mda_subaddress".into()
            }
        );
        let mut b = sample().to_bytes().unwrap();
        b[4864] = 0xc3; // a lone UTF-8 lead byte
        assert_eq!(
            Deliver::from_bytes(&b).unwrap_err(),
            LayoutError::NotUtf8 {
                field: "userinfo.username".into()
            }
        );
        let mut b = sample().to_bytes().unwrap();
        b[1536..1792].fill(b'r');
        assert_eq!(
            Deliver::from_bytes(&b).unwrap_err().to_string(),
            "rcpt.user: not NUL-terminated"
        );
    }
}
