//! control.c: the control socket, through which smtpctl talks to the
//! daemon (OpenSMTPD control.c 1.133).
//!
//! So far: the socket (created as root before the chroot, world-writable
//! as in OpenSMTPD, and refusing to start a second daemon), the process
//! itself, and clients accepted as channels of their own. The commands
//! arrive with smtpctl: until then every request is answered with
//! IMSG_CTL_FAIL and logged, and a client that sends what cannot be read
//! is dropped, never the daemon.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};

use crate::config::config::config_peer;
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::*;
use crate::pathnames::{smtpd_socket, PATH_CHROOT, SMTPD_USER};
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_dispatch, imsg_to_str, Peers};
use crate::sys::process::{exit_now, umask};

/// Keys of client channels start here; below are the peer processes.
const CLIENT_KEY_BASE: u64 = 1 << 32;

/// The control process's state.
pub struct Control {
    peers: Peers,
    listener: UnixListener,
    ev_listen: Option<EventId>,
    /// Connected smtpctl clients, by key.
    ctl_conns: BTreeMap<u64, Mproc>,
    next_key: u64,
}

impl MprocOwner for Control {
    fn mproc(&mut self, key: u64) -> Option<&mut Mproc> {
        if key >= CLIENT_KEY_BASE {
            self.ctl_conns.get_mut(&key)
        } else {
            self.peers.get(key)
        }
    }

    fn mproc_ref(&self, key: u64) -> Option<&Mproc> {
        if key >= CLIENT_KEY_BASE {
            self.ctl_conns.get(&key)
        } else {
            self.peers.get_ref_key(key)
        }
    }

    fn mproc_imsg(&mut self, base: &mut EventBase<Self>, key: u64, imsg: Option<Imsg>) {
        if key >= CLIENT_KEY_BASE {
            control_dispatch_ext(self, base, key, imsg);
        } else {
            imsg_dispatch(self, base, key, imsg, control_imsg);
        }
    }
}

/// control_imsg(): messages from the other processes.
fn control_imsg(
    _s: &mut Control,
    _base: &mut EventBase<Control>,
    _from: ProcType,
    imsg: Option<Imsg>,
) {
    let Some(imsg) = imsg else { control_shutdown() };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    fatalx!(
        "control_imsg: unexpected {} imsg",
        imsg_to_str(imsg.hdr.type_)
    )
}

/// control_create_socket(): binds the control socket, refusing to take
/// over one a running daemon listens on.
pub fn control_create_socket() -> UnixListener {
    let path = smtpd_socket();
    if UnixStream::connect(&path).is_ok() {
        fatalx!("control socket already listening");
    }
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != ErrorKind::NotFound {
            fatal!(e, "control: cannot unlink socket");
        }
    }
    let old = umask(libc::S_IXUSR | libc::S_IXGRP | libc::S_IWOTH | libc::S_IROTH | libc::S_IXOTH);
    let listener = UnixListener::bind(&path);
    umask(old);
    let listener = match listener {
        Ok(l) => l,
        Err(e) => fatal!(e, "control: bind"),
    };
    // Anyone may connect; what each may do is decided per request.
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)) {
        let _ = std::fs::remove_file(&path);
        fatal!(e, "control: chmod");
    }
    if let Err(e) = listener.set_nonblocking(true) {
        fatal!(e, "control: nonblocking");
    }
    listener
}

/// control(): the process's main.
pub fn control(mut peers: Peers, listener: UnixListener, backend_stat: &str) -> ! {
    if backend_stat != "ram" {
        fatalx!("could not find stat backend \"{backend_stat}\"");
    }
    child_privdrop(
        "control",
        &[SMTPD_USER],
        Some(PATH_CHROOT),
        ProcType::PROC_CONTROL,
        false,
    );
    let mut base = EventBase::new();
    use ProcType::*;
    for p in [
        PROC_SCHEDULER,
        PROC_QUEUE,
        PROC_PARENT,
        PROC_LKA,
        PROC_DISPATCHER,
        PROC_CA,
    ] {
        config_peer(&mut base, &mut peers, p);
    }
    let mut s = Control {
        peers,
        listener,
        ev_listen: None,
        ctl_conns: BTreeMap::new(),
        next_key: CLIENT_KEY_BASE,
    };
    control_listen(&mut s, &mut base);
    if let Err(e) = crate::sys::pledge::pledge("stdio unix recvfd sendfd", None) {
        fatal!(e, "pledge");
    }
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}

/// control_shutdown().
fn control_shutdown() -> ! {
    log_debug!("debug: control agent exiting");
    exit_now(0)
}

/// control_listen(): starts accepting clients.
fn control_listen(s: &mut Control, base: &mut EventBase<Control>) {
    let ev = base.event_set(s.listener.as_raw_fd(), EvFlags::EV_READ, control_accept, 0);
    if let Err(e) = base.event_add(ev, None) {
        fatal!(e, "control_listen: event_add");
    }
    s.ev_listen = Some(ev);
}

/// control_accept(): one client, as a channel of its own.
fn control_accept(
    s: &mut Control,
    base: &mut EventBase<Control>,
    _fd: RawFd,
    _ev: EvFlags,
    _arg: u64,
) {
    let stream = match s.listener.accept() {
        Ok((stream, _)) => stream,
        Err(e) if e.kind() == ErrorKind::WouldBlock => return,
        Err(e) => {
            log_warn!(e, "warn: control_accept: accept");
            return;
        }
    };
    let key = s.next_key;
    s.next_key += 1;
    let mut p = mproc_init(OwnedFd::from(stream), ProcType::PROC_CLIENT, "client", 0);
    mproc_enable(base, &mut p, key);
    s.ctl_conns.insert(key, p);
}

/// control_close(): forgets a client.
fn control_close(s: &mut Control, base: &mut EventBase<Control>, key: u64) {
    if let Some(p) = s.ctl_conns.remove(&key) {
        mproc_clear(base, p);
    }
}

/// control_dispatch_ext(): a request from a client. None means the client
/// left, or sent what cannot be read: it is dropped.
fn control_dispatch_ext(
    s: &mut Control,
    base: &mut EventBase<Control>,
    key: u64,
    imsg: Option<Imsg>,
) {
    let Some(imsg) = imsg else {
        control_close(s, base, key);
        return;
    };
    log_warnx!(
        "warn: control: {} requested, but control commands are not implemented yet",
        imsg_to_str(imsg.hdr.type_)
    );
    if let Some(p) = s.ctl_conns.get_mut(&key) {
        m_compose(p, ImsgType::IMSG_CTL_FAIL, 0, 0, None, &[]);
    }
}
