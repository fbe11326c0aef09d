//! POSIX extended regular expressions (`regcomp(3)`), as OpenSMTPD uses
//! them for `regex` tables.

use std::ffi::CStr;

use super::cstring;

/// A compiled POSIX extended regular expression.
pub struct Regex {
    preg: Box<libc::regex_t>,
}

impl Regex {
    /// Compiles `pattern` with `REG_EXTENDED | REG_NOSUB`, and
    /// `REG_ICASE` when `icase` is set. The error is regerror(3)'s text.
    pub fn new(pattern: &str, icase: bool) -> Result<Regex, String> {
        let cpat = cstring(pattern).map_err(|_| "pattern contains a NUL byte".to_string())?;
        let mut cflags = libc::REG_EXTENDED | libc::REG_NOSUB;
        if icase {
            cflags |= libc::REG_ICASE;
        }
        // SAFETY: regex_t is plain data that regcomp initialises.
        let mut preg: Box<libc::regex_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: preg is valid for writing, cpat is NUL-terminated.
        let r = unsafe { libc::regcomp(&mut *preg, cpat.as_ptr(), cflags) };
        if r != 0 {
            let mut buf = [0 as libc::c_char; 256];
            // SAFETY: regerror writes at most buf.len() bytes, NUL included.
            unsafe { libc::regerror(r, &*preg, buf.as_mut_ptr(), buf.len()) };
            // SAFETY: regerror NUL-terminates what it wrote.
            let msg = unsafe { CStr::from_ptr(buf.as_ptr()) };
            return Err(msg.to_string_lossy().into_owned());
        }
        Ok(Regex { preg })
    }

    /// Whether `s` matches anywhere (regexec(3) without anchors).
    pub fn is_match(&self, s: &str) -> bool {
        let Ok(cs) = cstring(s) else { return false };
        // SAFETY: preg was compiled by regcomp; cs is NUL-terminated; no
        // match array is requested (REG_NOSUB).
        unsafe { libc::regexec(&*self.preg, cs.as_ptr(), 0, std::ptr::null_mut(), 0) == 0 }
    }
}

impl Drop for Regex {
    fn drop(&mut self) {
        // SAFETY: preg holds a successfully compiled expression, freed once.
        unsafe { libc::regfree(&mut *self.preg) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_syntax_and_case() {
        let re = Regex::new("^ab+c$", false).unwrap();
        assert!(re.is_match("abbbc"));
        assert!(!re.is_match("ABC"));
        assert!(Regex::new("^ab+c$", true).unwrap().is_match("ABC"));
    }

    #[test]
    fn bad_pattern_reports_regerror_text() {
        let e = Regex::new("(unclosed", false).err().unwrap();
        assert!(!e.is_empty());
    }
}
