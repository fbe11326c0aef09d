//! mailaddr.c: mail addresses (OpenSMTPD mailaddr.c 1.5): `struct
//! mailaddr` of smtpd.h and its C-layout encoding, which
//! m_add_mailaddr/m_get_mailaddr and `struct deliver` carry raw, and the
//! parsing of address lists (the values of K_MAILADDRMAP tables).
//! `struct maddrmap` is a `Vec<Mailaddr>`: maddrmap_init, maddrmap_insert
//! and maddrmap_free are Vec's new, push and drop.
//!
//! Also here: the helpers for the fixed-size, NUL-padded `char[N]` arrays
//! of the structs that OpenSMTPD passes between processes as plain bytes.

use std::fmt;

use crate::defines::{LINE_MAX, SMTPD_MAXDOMAINPARTSIZE, SMTPD_MAXLOCALPARTSIZE};
use crate::util::to::text_to_mailaddr;
use crate::util::util::strip;

/// struct mailaddr: a local part and a domain, either possibly empty (the
/// null sender `<>` is both empty). The order is C's memcmp of the
/// struct: user first, then domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mailaddr {
    pub user: String,
    pub domain: String,
}

/// sizeof(struct mailaddr): `char user[256]; char domain[256];`, no padding.
pub const MAILADDR_SIZE: usize = SMTPD_MAXLOCALPARTSIZE + SMTPD_MAXDOMAINPARTSIZE;

/// Why a struct does not fit its C layout, or a blob is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A string needs `len` bytes plus its NUL in a `char[size]`.
    TooLong {
        field: String,
        len: usize,
        size: usize,
    },
    /// A string holds a NUL byte, which C would read as its end.
    Nul { field: String },
    /// A blob of `len` bytes where `struct what` takes `size`.
    Size {
        what: &'static str,
        len: usize,
        size: usize,
    },
    /// A `char[]` of the blob has no terminating NUL.
    Unterminated { field: String },
    /// A `char[]` of the blob is not UTF-8.
    NotUtf8 { field: String },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::TooLong { field, len, size } => write!(
                f,
                "{field}: {len} bytes do not fit in char[{size}] (at most {})",
                size - 1
            ),
            LayoutError::Nul { field } => write!(f, "{field}: contains a NUL byte"),
            LayoutError::Size { what, len, size } => {
                write!(f, "struct {what}: {len} bytes, expected {size}")
            }
            LayoutError::Unterminated { field } => write!(f, "{field}: not NUL-terminated"),
            LayoutError::NotUtf8 { field } => write!(f, "{field}: not valid UTF-8"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Writes `s` and its NUL at the start of `array` (a zeroed `char[N]`),
/// as strlcpy would, but refusing what strlcpy would silently cut.
pub(crate) fn cstr_put(array: &mut [u8], s: &str, field: &str) -> Result<(), LayoutError> {
    if s.as_bytes().contains(&0) {
        return Err(LayoutError::Nul {
            field: field.to_string(),
        });
    }
    if s.len() >= array.len() {
        return Err(LayoutError::TooLong {
            field: field.to_string(),
            len: s.len(),
            size: array.len(),
        });
    }
    array[..s.len()].copy_from_slice(s.as_bytes());
    array[s.len()] = 0;
    Ok(())
}

/// Reads the string of a `char[N]`: the bytes before its first NUL. What
/// follows the NUL is ignored, as C ignores it.
pub(crate) fn cstr_get(array: &[u8], field: &str) -> Result<String, LayoutError> {
    let Some(end) = array.iter().position(|&b| b == 0) else {
        return Err(LayoutError::Unterminated {
            field: field.to_string(),
        });
    };
    match std::str::from_utf8(&array[..end]) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(LayoutError::NotUtf8 {
            field: field.to_string(),
        }),
    }
}

impl Mailaddr {
    pub fn new(user: &str, domain: &str) -> Mailaddr {
        Mailaddr {
            user: user.to_string(),
            domain: domain.to_string(),
        }
    }

    /// The bytes of the C struct, as m_add_mailaddr sends them.
    pub fn to_bytes(&self) -> Result<[u8; MAILADDR_SIZE], LayoutError> {
        let mut buf = [0u8; MAILADDR_SIZE];
        self.encode_into(&mut buf, "mailaddr")?;
        Ok(buf)
    }

    /// The struct from its C bytes, as m_get_mailaddr reads them.
    pub fn from_bytes(buf: &[u8]) -> Result<Mailaddr, LayoutError> {
        if buf.len() != MAILADDR_SIZE {
            return Err(LayoutError::Size {
                what: "mailaddr",
                len: buf.len(),
                size: MAILADDR_SIZE,
            });
        }
        Mailaddr::decode_from(buf, "mailaddr")
    }

    /// Encodes into `buf`, exactly MAILADDR_SIZE zeroed bytes; `name` says
    /// which member of an enclosing struct this is, for errors.
    pub(crate) fn encode_into(&self, buf: &mut [u8], name: &str) -> Result<(), LayoutError> {
        let (user, domain) = buf.split_at_mut(SMTPD_MAXLOCALPARTSIZE);
        cstr_put(user, &self.user, &format!("{name}.user"))?;
        cstr_put(domain, &self.domain, &format!("{name}.domain"))
    }

    /// Decodes from exactly MAILADDR_SIZE bytes.
    pub(crate) fn decode_from(buf: &[u8], name: &str) -> Result<Mailaddr, LayoutError> {
        let (user, domain) = buf.split_at(SMTPD_MAXLOCALPARTSIZE);
        Ok(Mailaddr {
            user: cstr_get(user, &format!("{name}.user"))?,
            domain: cstr_get(domain, &format!("{name}.domain"))?,
        })
    }
}

/// mailaddr_line_split(): takes the next comma-separated item off `line`.
/// A backslash makes the next character literal (and is dropped), commas
/// inside double or single quotes do not split (the quotes are kept).
/// `Ok(None)` when nothing is left; an error for an escape or a quote
/// left open, or an item of LINE_MAX bytes or more (C's static buffer).
pub(crate) fn mailaddr_line_split(line: &mut &str) -> Result<Option<String>, ()> {
    let b = line.as_bytes();
    let mut buffer = Vec::new();
    let (mut esc, mut dq, mut sq) = (false, false, false);
    let mut s = 0;
    while s < b.len() && buffer.len() < LINE_MAX {
        let c = b[s];
        s += 1;
        if esc {
            buffer.push(c);
            esc = false;
            continue;
        }
        if c == b'\\' {
            esc = true;
            continue;
        }
        if c == b',' && !dq && !sq {
            *line = &line[s..];
            return Ok(Some(mailaddr_split_text(buffer)));
        }
        buffer.push(c);
        if c == b'"' && !sq {
            dq = !dq;
        }
        if c == b'\'' && !dq {
            sq = !sq;
        }
    }
    if esc || dq || sq || buffer.len() == LINE_MAX {
        return Err(());
    }
    *line = &line[s..];
    Ok(if buffer.is_empty() {
        None
    } else {
        Some(mailaddr_split_text(buffer))
    })
}

/// Only ASCII backslashes were left out of the item's bytes, which
/// leaves UTF-8 whole.
fn mailaddr_split_text(buffer: Vec<u8>) -> String {
    String::from_utf8(buffer).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// mailaddr_line(): appends the addresses of the comma-separated list `s`
/// to `maddrmap`. False on a malformed list or address, with the
/// addresses before it already appended, as in C.
pub fn mailaddr_line(maddrmap: &mut Vec<Mailaddr>, s: &str) -> bool {
    let mut p = s;
    loop {
        match mailaddr_line_split(&mut p) {
            Err(()) => return false,
            Ok(None) => return true,
            Ok(Some(item)) => {
                let subrcpt = strip(&item);
                if subrcpt.is_empty() {
                    continue;
                }
                let Some(m) = text_to_mailaddr(subrcpt) else {
                    return false;
                };
                log_debug!("subrcpt: [{subrcpt}]");
                maddrmap.push(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// struct mailaddr as a C compiler lays it out.
    #[repr(C)]
    struct CMailaddr {
        user: [libc::c_char; SMTPD_MAXLOCALPARTSIZE],
        domain: [libc::c_char; SMTPD_MAXDOMAINPARTSIZE],
    }

    fn line(s: &str) -> Option<Vec<Mailaddr>> {
        let mut v = Vec::new();
        mailaddr_line(&mut v, s).then_some(v)
    }

    #[test]
    fn mailaddr_lines_split_on_commas_outside_quotes() {
        assert_eq!(
            line(" alice@example.org ,bob, @example.net").unwrap(),
            [
                Mailaddr::new("alice", "example.org"),
                Mailaddr::new("bob", ""),
                Mailaddr::new("", "example.net"),
            ]
        );
        assert_eq!(
            line("\"a,b\"@example.org").unwrap(),
            [Mailaddr::new("\"a,b\"", "example.org")]
        );
        assert_eq!(line("a\\,b@x").unwrap(), [Mailaddr::new("a,b", "x")]);
        assert_eq!(line("a@x,, ,b@y,").unwrap().len(), 2);
        assert_eq!(line("").unwrap(), []);
    }

    #[test]
    fn mailaddr_lines_refuse_open_quotes_escapes_and_long_items() {
        assert_eq!(line("\"a@x"), None);
        assert_eq!(line("'a@x"), None);
        assert_eq!(line("a@x\\"), None);
        assert_eq!(line(&format!("{}@x", "u".repeat(300))), None);
        assert_eq!(line(&"d".repeat(LINE_MAX)), None);
        let mut v = Vec::new();
        assert!(!mailaddr_line(&mut v, "a@x, \"b"));
        assert_eq!(v, [Mailaddr::new("a", "x")], "what came before stays");
    }

    #[test]
    fn size_is_that_of_the_c_struct() {
        assert_eq!(MAILADDR_SIZE, 512);
        assert_eq!(MAILADDR_SIZE, std::mem::size_of::<CMailaddr>());
        let c = CMailaddr {
            user: [0; SMTPD_MAXLOCALPARTSIZE],
            domain: [0; SMTPD_MAXDOMAINPARTSIZE],
        };
        let base = std::ptr::addr_of!(c) as usize;
        assert_eq!(std::ptr::addr_of!(c.domain) as usize - base, 256);
    }

    #[test]
    fn round_trips_through_bytes_at_c_offsets() {
        let m = Mailaddr::new("gilles+hackers", "poolp.org");
        let b = m.to_bytes().unwrap();
        assert_eq!(&b[..15], b"gilles+hackers\0");
        assert_eq!(&b[256..266], b"poolp.org\0");
        assert!(b[15..256].iter().all(|&x| x == 0));
        assert!(b[266..].iter().all(|&x| x == 0));
        assert_eq!(Mailaddr::from_bytes(&b).unwrap(), m);
    }

    #[test]
    fn null_sender_round_trips_as_two_empty_strings() {
        let m = Mailaddr::default();
        let b = m.to_bytes().unwrap();
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(Mailaddr::from_bytes(&b).unwrap(), m);
    }

    #[test]
    fn longest_parts_fit_and_one_more_byte_is_refused() {
        let m = Mailaddr::new(&"u".repeat(255), &"d".repeat(255));
        assert_eq!(Mailaddr::from_bytes(&m.to_bytes().unwrap()).unwrap(), m);
        let e = Mailaddr::new(&"u".repeat(256), "d").to_bytes().unwrap_err();
        assert_eq!(
            e,
            LayoutError::TooLong {
                field: "mailaddr.user".into(),
                len: 256,
                size: 256
            }
        );
        assert_eq!(
            e.to_string(),
            "mailaddr.user: 256 bytes do not fit in char[256] (at most 255)"
        );
        assert!(matches!(
            Mailaddr::new("u", &"d".repeat(300)).to_bytes(),
            Err(LayoutError::TooLong { .. })
        ));
    }

    #[test]
    fn interior_nul_is_refused_not_cut() {
        assert_eq!(
            Mailaddr::new("a\0b", "d").to_bytes().unwrap_err(),
            LayoutError::Nul {
                field: "mailaddr.user".into()
            }
        );
    }

    #[test]
    fn blobs_of_the_wrong_size_are_refused() {
        for len in [0, 511, 513] {
            assert_eq!(
                Mailaddr::from_bytes(&vec![0; len]).unwrap_err(),
                LayoutError::Size {
                    what: "mailaddr",
                    len,
                    size: 512
                }
            );
        }
    }

    #[test]
    fn arrays_without_nul_or_utf8_are_refused() {
        let mut b = [0u8; MAILADDR_SIZE];
        b[256..].fill(b'd');
        assert_eq!(
            Mailaddr::from_bytes(&b).unwrap_err().to_string(),
            "mailaddr.domain: not NUL-terminated"
        );
        let mut b = [0u8; MAILADDR_SIZE];
        b[0] = 0xff;
        assert_eq!(
            Mailaddr::from_bytes(&b).unwrap_err(),
            LayoutError::NotUtf8 {
                field: "mailaddr.user".into()
            }
        );
    }

    #[test]
    fn bytes_after_the_nul_are_ignored_as_c_does() {
        let mut b = [0u8; MAILADDR_SIZE];
        b[..6].copy_from_slice(b"ab\0xyz");
        assert_eq!(Mailaddr::from_bytes(&b).unwrap(), Mailaddr::new("ab", ""));
    }
}
