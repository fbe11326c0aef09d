//! Password checks of system users for SMTP AUTH, done by the parent
//! (OpenSMTPD smtpd.c 1.357 `parent_auth_user`): bsd_auth(3)'s
//! `auth_userokay` on OpenBSD, PAM on Linux (`parent_auth_bsd`,
//! `parent_auth_pam` and `pam_conv_password`).
//!
//! The FFI to libpam is written by hand from Linux-PAM's
//! `<security/_pam_types.h>` and `<security/pam_appl.h>`; its constants are
//! Linux-PAM's (OpenPAM numbers some of them differently).

use std::ffi::CString;

/// The answer of a password check: OpenSMTPD's `LKA_OK`, `LKA_TEMPFAIL` and
/// `LKA_PERMFAIL`, with the same values, which is what the parent sends
/// back to lka in `IMSG_LKA_AUTHENTICATE` (`as i32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum AuthResult {
    /// `LKA_OK`: the password is right and the account may be used.
    Ok = 0,
    /// `LKA_TEMPFAIL`: the check could not be made (the authentication
    /// service is broken or unreachable); the client may try again later.
    TempFail = 1,
    /// `LKA_PERMFAIL`: wrong password, unknown user, refused account, or
    /// a user name or password this module refuses to pass on.
    PermFail = 2,
}

/// `LOGIN_NAME_MAX` from `<limits.h>`, NUL included: OpenSMTPD copies the
/// user name into a buffer of this size.
/// What smtpd authenticates against: the PAM service on Linux, the login
/// class style on OpenBSD (parent_auth_user's choice).
#[cfg(target_os = "openbsd")]
pub const AUTH_SERVICE: &str = "auth-smtp";
#[cfg(not(target_os = "openbsd"))]
pub const AUTH_SERVICE: &str = "smtpd";

#[cfg(target_os = "openbsd")]
const LOGIN_NAME_MAX: usize = 32;
#[cfg(not(target_os = "openbsd"))]
const LOGIN_NAME_MAX: usize = 256;

/// `LINE_MAX` from `<limits.h>`, NUL included: the password buffer's size.
const LINE_MAX: usize = 2048;

/// Checks `password` for the system user `user`, as OpenSMTPD's parent
/// does for `auth` listeners without a credentials table.
///
/// On Linux this runs the PAM service `service` (the parent passes
/// `"smtpd"`): `pam_start`, `pam_authenticate`, `pam_acct_mgmt`, `pam_end`,
/// with a conversation that answers the password prompt with `password`.
/// `PAM_SUCCESS` is [`AuthResult::Ok`]; `PAM_SYSTEM_ERR`, `PAM_ABORT` and
/// `PAM_AUTHINFO_UNAVAIL` are [`AuthResult::TempFail`]; any other answer is
/// [`AuthResult::PermFail`]. On OpenBSD `service` is the authentication
/// type of login.conf(5) given to `auth_userokay(3)` (the parent passes
/// `"auth-smtp"`), and the answer is `Ok` or `PermFail`.
///
/// A user name or password holding a NUL, a line feed or a carriage return,
/// an empty user name, and values that do not fit OpenSMTPD's buffers
/// (`LOGIN_NAME_MAX` and `LINE_MAX` bytes, NUL included) are refused with
/// `PermFail` before PAM or bsd_auth sees them. OpenSMTPD truncates
/// over-long values with strlcpy; refusing them is the safer reading.
///
/// The call blocks for as long as the modules take (pam_unix alone waits
/// about two seconds after a wrong password); the parent makes it
/// synchronously, as OpenSMTPD does. It needs root: run by another user,
/// pam_unix cannot read the shadow file and answers every check with
/// `PAM_AUTHINFO_UNAVAIL`, a `TempFail`.
pub fn auth_userokay(user: &str, password: &str, service: &str) -> AuthResult {
    if !auth_acceptable(user, LOGIN_NAME_MAX) || !auth_acceptable(password, LINE_MAX) {
        return AuthResult::PermFail;
    }
    if user.is_empty() {
        return AuthResult::PermFail;
    }
    #[cfg(target_os = "openbsd")]
    {
        parent_auth_bsd(user, password, service)
    }
    #[cfg(target_os = "linux")]
    {
        parent_auth_pam(user, password, service)
    }
    #[cfg(not(any(target_os = "openbsd", target_os = "linux")))]
    {
        let _ = service;
        AuthResult::TempFail
    }
}

/// Whether `s` may be handed to PAM or bsd_auth: no NUL (it would cut the
/// C string short), no CR or LF (OpenSMTPD's smtp_session.c refuses them
/// in AUTH LOGIN; some modules read line-based input), and short enough for
/// a `max`-byte C buffer.
fn auth_acceptable(s: &str, max: usize) -> bool {
    s.len() < max && !s.bytes().any(|b| matches!(b, b'\0' | b'\n' | b'\r'))
}

/// bsd_auth(3), in OpenBSD's libc.
#[cfg(target_os = "openbsd")]
mod bsd_auth {
    use std::ffi::{c_char, c_int};

    extern "C" {
        // <bsd_auth.h>. Not const: it clears the password it is given,
        // which is why OpenSMTPD hands it copies.
        pub fn auth_userokay(
            name: *mut c_char,
            style: *mut c_char,
            ty: *mut c_char,
            password: *mut c_char,
        ) -> c_int;
    }
}

#[cfg(target_os = "openbsd")]
fn parent_auth_bsd(user: &str, password: &str, service: &str) -> AuthResult {
    let (Ok(user), Ok(ty), Ok(pass)) = (
        CString::new(user),
        CString::new(service),
        CString::new(password),
    ) else {
        return AuthResult::PermFail;
    };
    // Writable copies, as OpenSMTPD's user[] and pass[].
    let mut user = user.into_bytes_with_nul();
    let mut ty = ty.into_bytes_with_nul();
    let mut pass = pass.into_bytes_with_nul();
    // SAFETY: three NUL-terminated buffers this function owns, alive and
    // writable for the whole call; a NULL style means the default style.
    let ret = unsafe {
        bsd_auth::auth_userokay(
            user.as_mut_ptr().cast(),
            std::ptr::null_mut(),
            ty.as_mut_ptr().cast(),
            pass.as_mut_ptr().cast(),
        )
    };
    if ret != 0 {
        AuthResult::Ok
    } else {
        AuthResult::PermFail
    }
}

/// Linux-PAM's application interface: the few types, constants and
/// functions `parent_auth_pam` uses, from `<security/_pam_types.h>` and
/// `<security/pam_appl.h>` (Debian's libpam0g-dev).
#[cfg(target_os = "linux")]
mod pam {
    use std::ffi::{c_char, c_int, c_void};

    pub const PAM_SUCCESS: c_int = 0;
    pub const PAM_SYSTEM_ERR: c_int = 4;
    pub const PAM_BUF_ERR: c_int = 5;
    pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
    pub const PAM_CONV_ERR: c_int = 19;
    pub const PAM_ABORT: c_int = 26;

    pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
    pub const PAM_PROMPT_ECHO_ON: c_int = 2;
    pub const PAM_ERROR_MSG: c_int = 3;
    pub const PAM_TEXT_INFO: c_int = 4;

    /// `pam_handle_t`, opaque.
    #[repr(C)]
    pub struct PamHandle {
        _opaque: [u8; 0],
    }

    /// `struct pam_message`.
    #[repr(C)]
    pub struct PamMessage {
        pub msg_style: c_int,
        pub msg: *const c_char,
    }

    /// `struct pam_response`: allocated by the application, freed by PAM
    /// with free(3), `resp` included.
    #[repr(C)]
    pub struct PamResponse {
        pub resp: *mut c_char,
        pub resp_retcode: c_int,
    }

    pub type ConvFn = unsafe extern "C" fn(
        num_msg: c_int,
        msg: *mut *const PamMessage,
        resp: *mut *mut PamResponse,
        appdata_ptr: *mut c_void,
    ) -> c_int;

    /// `struct pam_conv`.
    #[repr(C)]
    pub struct PamConv {
        pub conv: Option<ConvFn>,
        pub appdata_ptr: *mut c_void,
    }

    #[link(name = "pam")]
    extern "C" {
        pub fn pam_start(
            service_name: *const c_char,
            user: *const c_char,
            pam_conversation: *const PamConv,
            pamh: *mut *mut PamHandle,
        ) -> c_int;
        pub fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
        pub fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
        pub fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    }
}

/// The PAM conversation: answers the one prompt of each call with the
/// password, which `appdata_ptr` points to as a C string.
///
/// OpenSMTPD answers any single message with the password; we answer
/// informational and error messages with no text, so that the password
/// only ever goes to a prompt. Several messages in one call are refused,
/// as in OpenSMTPD (Linux-PAM and Solaris disagree on their layout).
///
/// It must not unwind into libpam: the body cannot panic, and a panic
/// would still be caught here and become `PAM_CONV_ERR`.
#[cfg(target_os = "linux")]
unsafe extern "C" fn pam_conv_password(
    num_msg: libc::c_int,
    msg: *mut *const pam::PamMessage,
    respp: *mut *mut pam::PamResponse,
    password: *mut libc::c_void,
) -> libc::c_int {
    std::panic::catch_unwind(|| pam_conv_password_answer(num_msg, msg, respp, password))
        .unwrap_or(pam::PAM_CONV_ERR)
}

#[cfg(target_os = "linux")]
fn pam_conv_password_answer(
    num_msg: libc::c_int,
    msg: *mut *const pam::PamMessage,
    respp: *mut *mut pam::PamResponse,
    password: *mut libc::c_void,
) -> libc::c_int {
    if num_msg != 1 || msg.is_null() || respp.is_null() || password.is_null() {
        return pam::PAM_CONV_ERR;
    }
    // SAFETY: PAM passes an array of num_msg (here 1) message pointers,
    // valid for the duration of the call.
    let m = unsafe { *msg };
    if m.is_null() {
        return pam::PAM_CONV_ERR;
    }
    // SAFETY: m points to a message PAM owns for the duration of the call.
    let style = unsafe { (*m).msg_style };
    let answer = match style {
        pam::PAM_PROMPT_ECHO_OFF | pam::PAM_PROMPT_ECHO_ON => true,
        pam::PAM_ERROR_MSG | pam::PAM_TEXT_INFO => false,
        _ => return pam::PAM_CONV_ERR,
    };

    // SAFETY: calloc has no preconditions; PAM releases the response with
    // free(3), so it must come from the C allocator.
    let response: *mut pam::PamResponse =
        unsafe { libc::calloc(1, std::mem::size_of::<pam::PamResponse>()) }.cast();
    if response.is_null() {
        return pam::PAM_BUF_ERR;
    }
    if answer {
        // SAFETY: password is the NUL-terminated string parent_auth_pam
        // put in the pam_conv; it lives until after pam_end.
        let resp = unsafe { libc::strdup(password.cast::<libc::c_char>()) };
        if resp.is_null() {
            // SAFETY: response came from calloc above and is not shared.
            unsafe { libc::free(response.cast()) };
            return pam::PAM_BUF_ERR;
        }
        // SAFETY: response is a zeroed, suitably aligned PamResponse from
        // calloc that only this function holds.
        unsafe { (*response).resp = resp };
    }
    // SAFETY: respp is PAM's out-pointer, checked non-null above; PAM now
    // owns the response.
    unsafe { *respp = response };
    pam::PAM_SUCCESS
}

#[cfg(target_os = "linux")]
fn parent_auth_pam(user: &str, password: &str, service: &str) -> AuthResult {
    let (Ok(service), Ok(user), Ok(password)) = (
        CString::new(service),
        CString::new(user),
        CString::new(password),
    ) else {
        return AuthResult::PermFail;
    };
    let conv = pam::PamConv {
        conv: Some(pam_conv_password),
        appdata_ptr: password.as_ptr().cast_mut().cast(),
    };
    let mut pamh: *mut pam::PamHandle = std::ptr::null_mut();

    // SAFETY: service and user are NUL-terminated; conv and the password
    // it points to outlive the handle, which pam_end releases below.
    let mut rc = unsafe { pam::pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut pamh) };
    if rc == pam::PAM_SUCCESS {
        // SAFETY: pam_start succeeded, so pamh is a live handle.
        rc = unsafe { pam::pam_authenticate(pamh, 0) };
    }
    if rc == pam::PAM_SUCCESS {
        // SAFETY: as above.
        rc = unsafe { pam::pam_acct_mgmt(pamh, 0) };
    }
    if !pamh.is_null() {
        // SAFETY: pamh came from pam_start and is not used after this.
        unsafe { pam::pam_end(pamh, rc) };
    }

    match rc {
        pam::PAM_SUCCESS => AuthResult::Ok,
        pam::PAM_SYSTEM_ERR | pam::PAM_ABORT | pam::PAM_AUTHINFO_UNAVAIL => AuthResult::TempFail,
        _ => AuthResult::PermFail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_newline_and_carriage_return_are_refused() {
        for bad in ["a\0b", "a\nb", "a\rb", "pass\n", "\r\n", "\0"] {
            assert!(!auth_acceptable(bad, LINE_MAX), "{bad:?}");
            assert_eq!(auth_userokay(bad, "x", "smtpd"), AuthResult::PermFail);
            assert_eq!(auth_userokay("root", bad, "smtpd"), AuthResult::PermFail);
        }
        assert!(auth_acceptable("pass word\t:!", LINE_MAX));
    }

    #[test]
    fn values_too_long_for_opensmtpd_buffers_are_refused() {
        assert!(auth_acceptable(
            &"u".repeat(LOGIN_NAME_MAX - 1),
            LOGIN_NAME_MAX
        ));
        assert!(!auth_acceptable(
            &"u".repeat(LOGIN_NAME_MAX),
            LOGIN_NAME_MAX
        ));
        assert!(auth_acceptable(&"p".repeat(LINE_MAX - 1), LINE_MAX));
        assert!(!auth_acceptable(&"p".repeat(LINE_MAX), LINE_MAX));
    }

    #[test]
    fn empty_user_is_refused() {
        assert_eq!(auth_userokay("", "x", "smtpd"), AuthResult::PermFail);
    }

    #[test]
    fn results_have_opensmtpd_lka_values() {
        assert_eq!(AuthResult::Ok as i32, 0);
        assert_eq!(AuthResult::TempFail as i32, 1);
        assert_eq!(AuthResult::PermFail as i32, 2);
    }

    #[cfg(target_os = "linux")]
    mod pam_system {
        use super::super::*;
        use std::fs::File;
        use std::io::Write;
        use std::path::Path;
        use std::process::{Command, Stdio};

        // Names no real system uses; everything below is removed again.
        const USER: &str = "smtpdauthtest";
        const NO_USER: &str = "smtpdauthtest-nosuchuser";
        const PASSWORD: &str = "Tr0ub4dor&3 horse:battery";
        const SERVICE_UNIX: &str = "smtpd-test";
        const SERVICE_PERMIT: &str = "smtpd-test-permit";
        const SERVICE_BROKEN: &str = "smtpd-test-broken";
        const SERVICES: [(&str, &str); 3] = [
            // nodelay: pam_unix would otherwise sleep ~2 s per failure.
            (
                SERVICE_UNIX,
                "auth required pam_unix.so nodelay\naccount required pam_unix.so\n",
            ),
            // Says yes to everything: a PermFail from it proves that PAM
            // was never asked.
            (
                SERVICE_PERMIT,
                "auth required pam_permit.so\naccount required pam_permit.so\n",
            ),
            // pam_exec reports a failing command as PAM_SYSTEM_ERR.
            (
                SERVICE_BROKEN,
                "auth required pam_exec.so quiet /bin/false\naccount required pam_permit.so\n",
            ),
        ];

        #[allow(clippy::disallowed_methods)]
        fn run(argv: &[&str], input: Option<&str>) -> bool {
            let mut child = match Command::new(argv[0])
                .args(&argv[1..])
                .stdin(if input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(_) => return false,
            };
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                if stdin.write_all(text.as_bytes()).is_err() {
                    let _ = child.wait();
                    return false;
                }
            }
            child.wait().map(|s| s.success()).unwrap_or(false)
        }

        fn service_path(name: &str) -> String {
            format!("/etc/pam.d/{name}")
        }

        /// The throwaway user and PAM services; dropping it removes them,
        /// also when an assertion has failed. It holds a lock so that two
        /// test runs (two target directories) do not share the user.
        struct Fixture {
            _lock: File,
        }

        impl Fixture {
            fn new() -> Fixture {
                let lock = File::create(std::env::temp_dir().join("smtpd-auth-test.lock"))
                    .expect("lock file");
                lock.lock().expect("lock");
                let fixture = Fixture { _lock: lock };
                fixture.cleanup(); // leftovers of a crashed run
                assert!(
                    run(
                        &[
                            "useradd",
                            "-M",
                            "-s",
                            "/usr/sbin/nologin",
                            "-c",
                            "smtpd auth test",
                            USER
                        ],
                        None
                    ),
                    "useradd {USER}"
                );
                assert!(
                    run(&["chpasswd"], Some(&format!("{USER}:{PASSWORD}\n"))),
                    "chpasswd"
                );
                for (name, text) in SERVICES {
                    std::fs::write(service_path(name), text).expect("PAM service file");
                }
                fixture
            }

            fn cleanup(&self) {
                for (name, _) in SERVICES {
                    let _ = std::fs::remove_file(service_path(name));
                }
                if crate::sys::process::getpwnam(USER).ok().flatten().is_some() {
                    run(&["userdel", "-f", USER], None);
                }
                run(&["groupdel", USER], None);
            }
        }

        impl Drop for Fixture {
            fn drop(&mut self) {
                self.cleanup();
            }
        }

        fn can_run() -> bool {
            if crate::sys::unistd::geteuid() != 0 {
                println!("note: skipping the PAM tests: they need root");
                return false;
            }
            if !Path::new("/etc/pam.d").is_dir() {
                println!("note: skipping the PAM tests: no /etc/pam.d");
                return false;
            }
            true
        }

        // One test function: the fixture is a system-wide user and files.
        #[test]
        fn pam_checks_system_user_passwords() {
            if !can_run() {
                return;
            }
            let _fixture = Fixture::new();
            assert_eq!(crate::sys::process::getpwnam(NO_USER).ok().flatten(), None);

            assert_eq!(
                auth_userokay(USER, PASSWORD, SERVICE_UNIX),
                AuthResult::Ok,
                "right password"
            );
            assert_eq!(
                auth_userokay(USER, "Tr0ub4dor&3 horse:batterY", SERVICE_UNIX),
                AuthResult::PermFail,
                "wrong password"
            );
            assert_eq!(
                auth_userokay(USER, "", SERVICE_UNIX),
                AuthResult::PermFail,
                "empty password"
            );
            assert_eq!(
                auth_userokay(NO_USER, PASSWORD, SERVICE_UNIX),
                AuthResult::PermFail,
                "unknown user"
            );

            // pam_permit accepts anything, so these PermFails come from
            // the checks made before PAM.
            assert_eq!(
                auth_userokay(USER, "anything", SERVICE_PERMIT),
                AuthResult::Ok,
                "pam_permit"
            );
            let long_user = "u".repeat(LOGIN_NAME_MAX);
            let long_password = "p".repeat(LINE_MAX);
            for (user, password) in [
                (USER, "Tr0ub4dor&3\n"),
                (USER, "\nTr0ub4dor&3"),
                (USER, "Tr0ub4dor&3\r"),
                (USER, "Tr0ub4dor&3\0x"),
                ("smtpdauthtest\n", PASSWORD),
                ("smtpdauthtest\0", PASSWORD),
                ("smtpd\rauthtest", PASSWORD),
                (long_user.as_str(), PASSWORD),
                (USER, long_password.as_str()),
                ("", PASSWORD),
            ] {
                assert_eq!(
                    auth_userokay(user, password, SERVICE_PERMIT),
                    AuthResult::PermFail,
                    "{user:?} {password:?} reached PAM"
                );
            }
            // The right password followed by a newline is still refused.
            assert_eq!(
                auth_userokay(USER, &format!("{PASSWORD}\n"), SERVICE_UNIX),
                AuthResult::PermFail,
                "password with a newline"
            );

            assert_eq!(
                auth_userokay(USER, PASSWORD, SERVICE_BROKEN),
                AuthResult::TempFail,
                "PAM_SYSTEM_ERR"
            );
        }
    }
}
