//! ca.c: the crypto process, which alone holds the private keys of the
//! pki entries and signs for the processes that speak TLS (OpenSMTPD ca.c
//! 1.49).
//!
//! So far the process itself: chroot, privilege drop, its channels and
//! the messages every process takes. The keys and the signing requests
//! arrive with TLS.

use crate::config::config::config_peer;
use crate::io::event::EventBase;
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{mproc_disable, mproc_enable, ImsgType, ProcType};
use crate::pathnames::{PATH_CHROOT, SMTPD_USER};
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;

pub struct Ca {
    peers: Peers,
}

crate::impl_mproc_owner!(Ca, ca_imsg);

/// ca_imsg().
fn ca_imsg(s: &mut Ca, base: &mut EventBase<Ca>, _from: ProcType, imsg: Option<Imsg>) {
    let Some(imsg) = imsg else { ca_shutdown() };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_CONF_START) => {}
        Some(ImsgType::IMSG_CONF_END) => {
            // Start fulfilling requests.
            let p = ProcType::PROC_DISPATCHER;
            mproc_enable(base, s.peers.p(p), p as u64);
        }
        _ => fatalx!("ca_imsg: unexpected {} imsg", imsg_to_str(imsg.hdr.type_)),
    }
}

/// ca_shutdown().
fn ca_shutdown() -> ! {
    log_debug!("debug: ca agent exiting");
    exit_now(0)
}

/// ca(): the process's main.
pub fn ca(mut peers: Peers) -> ! {
    child_privdrop(
        "ca",
        &[SMTPD_USER],
        Some(PATH_CHROOT),
        ProcType::PROC_CA,
        false,
    );
    let mut base = EventBase::new();
    for p in [
        ProcType::PROC_CONTROL,
        ProcType::PROC_PARENT,
        ProcType::PROC_DISPATCHER,
    ] {
        config_peer(&mut base, &mut peers, p);
    }
    // Ignore the dispatcher until the configuration is complete.
    mproc_disable(peers.p(ProcType::PROC_DISPATCHER));
    if let Err(e) = crate::sys::pledge::pledge("stdio", None) {
        fatal!(e, "pledge");
    }
    let mut s = Ca { peers };
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
