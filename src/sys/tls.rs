//! libtls (LibreSSL's TLS API, Debian's libtls on Linux), through the
//! libtls-sys bindings. For now only what configuration checks need: the
//! protocol and cipher strings that OpenSMTPD hands to libtls when its
//! processes start, and refuses then.

use std::ffi::CStr;

use super::cstring;

/// tls_config_parse_protocols(3): the protocol mask a string such as
/// "tlsv1.2:tlsv1.3" or "secure" selects.
pub fn parse_protocols(s: &str) -> Option<u32> {
    let c = cstring(s).ok()?;
    let mut protocols: u32 = 0;
    // SAFETY: c is NUL-terminated and protocols a valid out-pointer.
    let r = unsafe { libtls_sys::tls_config_parse_protocols(&mut protocols, c.as_ptr()) };
    (r != -1).then_some(protocols)
}

/// tls_config_set_ciphers(3) on a scratch configuration: whether libtls
/// takes the cipher string, and its reason when it does not.
pub fn check_ciphers(s: &str) -> Result<(), String> {
    let c = cstring(s).map_err(|_| "NUL byte in cipher string".to_string())?;
    // SAFETY: tls_config_new takes no arguments; null means no memory.
    let config = unsafe { libtls_sys::tls_config_new() };
    if config.is_null() {
        return Err("tls_config_new failed".into());
    }
    // SAFETY: config is a live configuration and c NUL-terminated.
    let r = unsafe { libtls_sys::tls_config_set_ciphers(config, c.as_ptr()) };
    let result = if r == -1 {
        // SAFETY: config is live; the error string is owned by it and
        // copied out before the free below.
        let e = unsafe { libtls_sys::tls_config_error(config) };
        Err(if e.is_null() {
            "invalid cipher string".to_string()
        } else {
            // SAFETY: e is a NUL-terminated string owned by config.
            unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
        })
    } else {
        Ok(())
    };
    // SAFETY: config came from tls_config_new and is freed once.
    unsafe { libtls_sys::tls_config_free(config) };
    result
}

/// tls_load_file(3): the file's content; an encrypted PEM private key is
/// decrypted with `password`. The copy libtls made is cleared and freed.
pub fn load_file(path: &str, password: Option<&str>) -> Result<Vec<u8>, String> {
    let cpath = cstring(path).map_err(|_| "NUL byte in path".to_string())?;
    let mut pw = match password {
        Some(p) => Some(
            cstring(p)
                .map_err(|_| "NUL byte in passphrase".to_string())?
                .into_bytes_with_nul(),
        ),
        None => None,
    };
    let pwptr = pw
        .as_mut()
        .map_or(std::ptr::null_mut(), |p| p.as_mut_ptr().cast());
    let mut len: libtls_sys::size_t = 0;
    // SAFETY: cpath is NUL-terminated, len a valid out-pointer, pwptr null
    // or a NUL-terminated writable buffer that outlives the call.
    let buf = unsafe { libtls_sys::tls_load_file(cpath.as_ptr(), &mut len, pwptr) };
    if let Some(p) = pw.as_mut() {
        p.iter_mut().for_each(|b| *b = 0);
    }
    if buf.is_null() {
        return Err(format!("{path}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: libtls returned a buffer of len bytes that we copy before
    // handing it back to tls_unload_file, which clears and frees it.
    let data = unsafe { std::slice::from_raw_parts(buf, len as usize) }.to_vec();
    // SAFETY: buf and len are exactly what tls_load_file returned.
    unsafe { libtls_sys::tls_unload_file(buf, len) };
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_ciphers_as_libtls_reads_them() {
        assert!(parse_protocols("tlsv1.2:tlsv1.3").is_some());
        assert!(parse_protocols("secure").is_some());
        assert!(parse_protocols("tlsv9").is_none());
        assert!(check_ciphers("HIGH:!aNULL:!MD5").is_ok());
        assert!(check_ciphers("secure").is_ok());
        assert!(check_ciphers("NOSUCHCIPHER").is_err());
    }
}
