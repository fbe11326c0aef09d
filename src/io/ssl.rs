//! ssl.c: loading certificates and keys (OpenSMTPD ssl.c 1.104).
//!
//! So far the loading side: files owned by root with modes no wider than
//! allowed, keys decrypted with a passphrase asked on the terminal. The
//! TLS sessions themselves arrive with STARTTLS and SMTPS.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use crate::sys::tls;
use crate::sys::unistd::getpass;

/// Bytes that must not show in logs or debug output: private keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret, {} bytes>", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: clear the key before the allocator reuses it.
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

/// What a load refused, as ssl.c logs it.
#[derive(Debug)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The owner and mode checks of ssl_load_file() and ssl_load_key():
/// root's, and no permission beyond `perm`.
fn ssl_check_file(name: &str, file: &std::fs::File, perm: u32) -> Result<(), LoadError> {
    let st = file
        .metadata()
        .map_err(|e| LoadError(format!("{name}: {e}")))?;
    if st.uid() != 0 {
        return Err(LoadError(format!("warn:  {name}: not owned by uid 0")));
    }
    if st.mode() & 0o777 & !perm != 0 {
        return Err(LoadError(format!(
            "warn:  {name}: insecure permissions: must be at most {}",
            crate::util::util::strmode(perm)
        )));
    }
    Ok(())
}

/// ssl_load_file(): a file owned by root, with no permission beyond
/// `perm`.
pub fn ssl_load_file(name: &str, perm: u32) -> Result<Vec<u8>, LoadError> {
    let mut f = std::fs::File::open(name).map_err(|e| LoadError(format!("{name}: {e}")))?;
    ssl_check_file(name, &f, perm)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| LoadError(format!("{name}: {e}")))?;
    Ok(buf)
}

/// ssl_load_key(): a private key, checked as ssl_load_file() checks, and
/// decrypted when it is encrypted, with a passphrase asked on the
/// terminal ("passphrase for PKINAME: ").
fn ssl_load_key(name: &str, perm: u32, pkiname: &str) -> Result<Secret, LoadError> {
    let f = std::fs::File::open(name).map_err(|e| LoadError(format!("{name}: {e}")))?;
    ssl_check_file(name, &f, perm)?;
    let raw = Secret(ssl_load_file(name, perm)?);
    if !raw.0.windows(9).any(|w| w == b"ENCRYPTED") {
        return Ok(raw);
    }
    let pass = getpass(&format!("passphrase for {pkiname}: "))
        .map_err(|e| LoadError(format!("getpass: {e}")))?;
    tls::load_file(name, Some(&pass))
        .map(Secret)
        .map_err(LoadError)
}

/// ssl_load_certificate(): a certificate chain, mode at most 0755.
pub fn ssl_load_certificate(pathname: &str) -> Result<Vec<u8>, LoadError> {
    ssl_load_file(pathname, 0o755)
}

/// ssl_load_keyfile(): a private key, mode at most 0740.
pub fn ssl_load_keyfile(pathname: &str, pkiname: &str) -> Result<Secret, LoadError> {
    ssl_load_key(pathname, 0o740, pkiname)
}

/// ssl_load_cafile(): a CA bundle, mode at most 0755.
pub fn ssl_load_cafile(pathname: &str) -> Result<Vec<u8>, LoadError> {
    ssl_load_file(pathname, 0o755)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("smtpd-ssl-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        p
    }

    fn file(dir: &std::path::Path, name: &str, mode: u32, content: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.to_str().unwrap().to_string()
    }

    #[test]
    fn owner_and_modes_are_checked() {
        if crate::sys::unistd::geteuid() != 0 {
            eprintln!("note: ssl owner checks need root; skipped");
            return;
        }
        let dir = scratch("modes");
        let cert = file(&dir, "cert", 0o644, "-----BEGIN CERTIFICATE-----\n");
        assert_eq!(
            ssl_load_certificate(&cert).unwrap(),
            b"-----BEGIN CERTIFICATE-----\n"
        );
        let wide = file(&dir, "wide", 0o666, "x");
        let e = ssl_load_certificate(&wide).unwrap_err();
        assert!(
            e.0.ends_with("insecure permissions: must be at most rwxr-xr-x"),
            "{e}"
        );
        let key = file(&dir, "key", 0o640, "-----BEGIN PRIVATE KEY-----\n");
        assert_eq!(
            ssl_load_keyfile(&key, "mx").unwrap().0,
            b"-----BEGIN PRIVATE KEY-----\n"
        );
        let readable = file(&dir, "rkey", 0o644, "k");
        assert!(ssl_load_keyfile(&readable, "mx")
            .unwrap_err()
            .0
            .contains("must be at most rwxr-----"));
        std::os::unix::fs::chown(&cert, Some(65534), None).unwrap();
        assert!(ssl_load_certificate(&cert)
            .unwrap_err()
            .0
            .ends_with("not owned by uid 0"));
        assert!(ssl_load_cafile(&dir.join("none").to_string_lossy()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(
            format!("{:?}", Secret(b"key".to_vec())),
            "<secret, 3 bytes>"
        );
    }
}
