//! crypt(3): password hashes for the credentials tables of AUTH, made by
//! the `encrypt` helper (`smtpctl encrypt`) and checked by the daemon.
//!
//! OpenBSD has `crypt_newhash(3)` and `crypt_checkpass(3)` in libc, and
//! OpenSMTPD's encrypt asks for bcrypt with automatic rounds there. Linux
//! has libxcrypt (`-lcrypt`), where the portable encrypt.c takes the first
//! scheme of its list that the library implements: yescrypt (`$y$`) on
//! Debian. Both platforms are behind the same two functions.

use std::io;

/// A new hash of `password`, with a random salt, in the strongest scheme
/// the system offers as OpenSMTPD's encrypt chooses it: bcrypt with
/// automatic rounds (`$2b$`) on OpenBSD; elsewhere the first that
/// libxcrypt implements of yescrypt (`$y$`), gost-yescrypt, scrypt,
/// bcrypt, sha512crypt (`$6$`) and sha256crypt, with encrypt.c's costs.
///
/// A password holding a NUL byte is refused with `EINVAL`: C would hash
/// what comes before it. Unlike encrypt.c, no weak scheme (md5crypt,
/// DES) is tried when all of these fail: the last error is returned.
pub fn crypt_newhash(password: &[u8]) -> io::Result<String> {
    imp::crypt_newhash(password)
}

/// Whether `password` hashes to `hash` (`crypt_checkpass(3)`). An empty
/// or malformed hash, a scheme the system does not know and a password
/// holding a NUL byte all say no; OpenBSD's crypt_checkpass would accept
/// an empty password for an empty hash, this one never does.
///
/// On Linux the hash is computed with `crypt_rn(3)` and compared without
/// an early exit, so the time taken does not tell how much matched.
pub fn crypt_checkpass(password: &[u8], hash: &str) -> bool {
    if hash.is_empty() {
        return false;
    }
    imp::crypt_checkpass(password, hash)
}

/// Whether `a` and `b` are equal, looking at every byte whatever the
/// first difference (OpenBSD's timingsafe_bcmp(3)). Lengths are not
/// secret: a difference there returns at once.
#[cfg_attr(target_os = "openbsd", allow(dead_code))]
fn timingsafe_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(target_os = "openbsd")]
mod imp {
    use std::ffi::{CStr, CString};
    use std::io;

    use libc::{c_char, c_int, size_t};

    /// _PASSWORD_LEN of <pwd.h>: room for any hash crypt_newhash makes.
    const PASSWORD_LEN: usize = 128;

    // In libc; renamed here, where the safe wrappers take their names.
    extern "C" {
        #[link_name = "crypt_newhash"]
        fn c_crypt_newhash(
            pass: *const c_char,
            pref: *const c_char,
            hash: *mut c_char,
            hashsize: size_t,
        ) -> c_int;
        #[link_name = "crypt_checkpass"]
        fn c_crypt_checkpass(pass: *const c_char, goodhash: *const c_char) -> c_int;
    }

    pub(super) fn crypt_newhash(password: &[u8]) -> io::Result<String> {
        let pw = CString::new(password).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut buf = [0 as c_char; PASSWORD_LEN];
        // SAFETY: pw and the preference are NUL-terminated; buf is valid
        // for writes of its whole length, which is the size given.
        let r = unsafe {
            c_crypt_newhash(
                pw.as_ptr(),
                c"bcrypt,a".as_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success crypt_newhash left a NUL-terminated string
        // in buf.
        let hash = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Ok(hash.to_string_lossy().into_owned())
    }

    pub(super) fn crypt_checkpass(password: &[u8], hash: &str) -> bool {
        let (Ok(pw), Ok(h)) = (CString::new(password), CString::new(hash)) else {
            return false;
        };
        // SAFETY: both strings are NUL-terminated and outlive the call.
        unsafe { c_crypt_checkpass(pw.as_ptr(), h.as_ptr()) == 0 }
    }
}

#[cfg(not(target_os = "openbsd"))]
mod imp {
    use std::ffi::{CStr, CString};
    use std::io;

    use libc::{c_char, c_int, c_ulong, c_void};

    /// sizeof(struct crypt_data) of <crypt.h>, the scratch area crypt_rn
    /// works in; its first field is the output.
    const CRYPT_DATA_SIZE: usize = 32768;
    /// CRYPT_GENSALT_OUTPUT_SIZE: room for any setting.
    const CRYPT_GENSALT_OUTPUT_SIZE: usize = 192;
    /// CRYPT_MAX_PASSPHRASE_SIZE: a passphrase must be shorter.
    const CRYPT_MAX_PASSPHRASE_SIZE: usize = 512;

    /// encrypt.c's `ids[]`, the schemes tried in turn and their costs,
    /// down to sha256crypt; bcrypt's `$2b$`, the current spelling, comes
    /// before `$2a$` (libxcrypt takes yescrypt first anyway).
    const METHODS: &[(&CStr, c_ulong)] = &[
        (c"$y$", 8),
        (c"$gy$", 8),
        (c"$7$", 8),
        (c"$2b$", 10),
        (c"$2y$", 10),
        (c"$2a$", 10),
        (c"$6$", 5000),
        (c"$5$", 5000),
    ];

    #[link(name = "crypt")]
    extern "C" {
        fn crypt_gensalt_rn(
            prefix: *const c_char,
            count: c_ulong,
            rbytes: *const c_char,
            nrbytes: c_int,
            output: *mut c_char,
            output_size: c_int,
        ) -> *mut c_char;
        fn crypt_rn(
            phrase: *const c_char,
            setting: *const c_char,
            data: *mut c_void,
            size: c_int,
        ) -> *mut c_char;
    }

    /// crypt_gensalt_rn(3) with the library's own randomness (a null
    /// `rbytes`): the setting for a new hash of scheme `prefix`.
    fn gensalt(prefix: &CStr, count: c_ulong) -> io::Result<CString> {
        let mut out = vec![0u8; CRYPT_GENSALT_OUTPUT_SIZE];
        // SAFETY: prefix is NUL-terminated; a null rbytes with nrbytes 0
        // asks libxcrypt for its own random bytes; out is valid for
        // writes of the size given.
        let p = unsafe {
            crypt_gensalt_rn(
                prefix.as_ptr(),
                count,
                std::ptr::null(),
                0,
                out.as_mut_ptr().cast(),
                out.len() as c_int,
            )
        };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success the setting is a NUL-terminated string in
        // out, which p points to.
        Ok(unsafe { CStr::from_ptr(p) }.to_owned())
    }

    /// crypt_rn(3) of `phrase` with `setting` (a new setting or a whole
    /// hash), in a scratch area of our own.
    fn crypt(phrase: &CStr, setting: &CStr) -> io::Result<Vec<u8>> {
        let mut data = vec![0u8; CRYPT_DATA_SIZE];
        // SAFETY: both strings are NUL-terminated; data is a zeroed area
        // of sizeof(struct crypt_data) bytes, as crypt_rn asks, whose
        // alignment (chars only) a Vec<u8> meets.
        let p = unsafe {
            crypt_rn(
                phrase.as_ptr(),
                setting.as_ptr(),
                data.as_mut_ptr().cast(),
                CRYPT_DATA_SIZE as c_int,
            )
        };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success p points to the NUL-terminated hash at the
        // start of data, which is still alive.
        Ok(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
    }

    fn phrase(password: &[u8]) -> io::Result<CString> {
        if password.len() >= CRYPT_MAX_PASSPHRASE_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "password too long ({} bytes at most)",
                    CRYPT_MAX_PASSPHRASE_SIZE - 1
                ),
            ));
        }
        CString::new(password).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// encrypt.c's print_passwd loop: the first scheme whose hash starts
    /// with the setting asked for.
    pub(super) fn crypt_newhash(password: &[u8]) -> io::Result<String> {
        let pw = phrase(password)?;
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        for &(prefix, count) in METHODS {
            let setting = match gensalt(prefix, count) {
                Ok(s) => s,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match crypt(&pw, &setting) {
                Ok(hash) if hash.starts_with(setting.to_bytes()) => {
                    // crypt's alphabet is ASCII.
                    return Ok(String::from_utf8_lossy(&hash).into_owned());
                }
                Ok(_) => {}
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(super) fn crypt_checkpass(password: &[u8], hash: &str) -> bool {
        let (Ok(pw), Ok(h)) = (phrase(password), CString::new(hash)) else {
            return false;
        };
        match crypt(&pw, &h) {
            Ok(out) => super::timingsafe_eq(&out, hash.as_bytes()),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Openwall's crypt_blowfish test vector, which OpenBSD's bcrypt and
    /// libxcrypt both pass.
    const BCRYPT_U_STAR_U: &str = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

    #[test]
    fn newhash_verifies_with_its_password_only() {
        let hash = crypt_newhash(b"secret").unwrap();
        assert!(crypt_checkpass(b"secret", &hash), "{hash}");
        assert!(!crypt_checkpass(b"Secret", &hash));
        assert!(!crypt_checkpass(b"secret ", &hash));
        assert!(!crypt_checkpass(b"", &hash));
    }

    #[test]
    fn newhash_is_a_strong_scheme_with_a_new_salt_each_time() {
        let a = crypt_newhash(b"secret").unwrap();
        let b = crypt_newhash(b"secret").unwrap();
        assert_ne!(a, b);
        let strong = ["$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$", "$5$"];
        assert!(strong.iter().any(|p| a.starts_with(p)), "{a}");
        #[cfg(target_os = "openbsd")]
        assert!(a.starts_with("$2b$"), "{a}");
    }

    #[test]
    fn known_bcrypt_vector() {
        assert!(crypt_checkpass(b"U*U", BCRYPT_U_STAR_U));
        assert!(!crypt_checkpass(b"U*V", BCRYPT_U_STAR_U));
    }

    #[cfg(not(target_os = "openbsd"))]
    #[test]
    fn known_libxcrypt_vectors() {
        let sha512 = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        assert!(crypt_checkpass(b"secret", sha512));
        assert!(!crypt_checkpass(b"secreT", sha512));
        let yescrypt = "$y$j9T$abcdefghijklmnop$3dL1LkYnZM.OVXuVdnnaKVDlLYT92dRwOzDZ5XiVCe.";
        assert!(crypt_checkpass(b"secret", yescrypt));
        assert!(!crypt_checkpass(b"secrets", yescrypt));
    }

    #[cfg(not(target_os = "openbsd"))]
    #[test]
    fn an_overlong_password_is_refused_by_name() {
        let long = vec![b'a'; 512];
        let e = crypt_newhash(&long).unwrap_err();
        assert_eq!(e.to_string(), "password too long (511 bytes at most)");
        assert!(crypt_newhash(&long[1..]).is_ok());
    }

    #[test]
    fn empty_or_malformed_hashes_match_nothing() {
        assert!(!crypt_checkpass(b"", ""));
        assert!(!crypt_checkpass(b"x", ""));
        assert!(!crypt_checkpass(b"", "*"));
        assert!(!crypt_checkpass(b"", "!"));
        assert!(!crypt_checkpass(b"secret", "$2b$10$short"));
        assert!(!crypt_checkpass(b"secret", "$y$"));
        // A hash with its last character changed.
        let mut bad = BCRYPT_U_STAR_U.to_string();
        bad.pop();
        bad.push('X');
        assert!(!crypt_checkpass(b"U*U", &bad));
    }

    #[test]
    fn a_nul_in_the_password_is_refused() {
        let e = crypt_newhash(b"sec\0ret").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let hash = crypt_newhash(b"sec").unwrap();
        assert!(!crypt_checkpass(b"sec\0ret", &hash));
    }

    #[test]
    fn timingsafe_eq_compares_whole_slices() {
        assert!(timingsafe_eq(b"", b""));
        assert!(timingsafe_eq(b"abc", b"abc"));
        assert!(!timingsafe_eq(b"abc", b"abd"));
        assert!(!timingsafe_eq(b"abc", b"ab"));
        assert!(!timingsafe_eq(b"xbc", b"abc"));
    }
}
