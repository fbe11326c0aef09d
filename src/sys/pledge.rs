//! pledge(2) and unveil(2): OpenBSD's restrictions, called with
//! OpenSMTPD's promise strings at the same points. Elsewhere they do
//! nothing and succeed (a Linux sandbox as strict comes later).

use std::io;

/// pledge(2).
pub fn pledge(promises: &str, execpromises: Option<&str>) -> io::Result<()> {
    match ::pledge::pledge(promises, execpromises) {
        Ok(()) | Err(::pledge::Error::UnsupportedPlatform) => Ok(()),
        Err(::pledge::Error::Other(errno)) => Err(io::Error::from_raw_os_error(errno)),
        Err(_) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// unveil(2); an empty `path` locks the view.
pub fn unveil(path: &str, permissions: &str) -> io::Result<()> {
    match ::unveil::unveil(path, permissions) {
        Ok(()) | Err(::unveil::Error::NotSupported) => Ok(()),
        Err(::unveil::Error::Os(errno)) => Err(io::Error::from_raw_os_error(errno)),
        Err(_) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}
