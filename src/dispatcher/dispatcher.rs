//! dispatcher.c: the process that speaks SMTP, in both directions, and
//! drives local deliveries (OpenSMTPD dispatcher.c 1.3).
//!
//! So far the process itself: chroot, privilege drop, its channels and
//! the messages every process takes. The SMTP server, the MTA and the MDA
//! arrive with their issues.

use crate::config::config::config_peer;
use crate::io::event::EventBase;
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{ImsgType, ProcType};
use crate::pathnames::{PATH_CHROOT, SMTPD_USER};
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;

pub struct Dispatcher {
    peers: Peers,
}

crate::impl_mproc_owner!(Dispatcher, dispatcher_imsg);

/// dispatcher_imsg().
fn dispatcher_imsg(
    _s: &mut Dispatcher,
    _base: &mut EventBase<Dispatcher>,
    _from: ProcType,
    imsg: Option<Imsg>,
) {
    let Some(imsg) = imsg else {
        dispatcher_shutdown()
    };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_CONF_START) => {}
        // smtp_configure() comes with the SMTP server; until then, say
        // which listeners are not served rather than pretend.
        Some(ImsgType::IMSG_CONF_END) => {
            let conf = crate::config::config::env();
            for l in conf.sc_sock_listener.iter().chain(&conf.sc_listeners) {
                log_warnx!(
                    "warn: listener {} (port {}) not opened: the SMTP server is not implemented yet",
                    l.address(),
                    l.port
                );
            }
        }
        _ => fatalx!(
            "dispatcher_imsg: unexpected {} imsg",
            imsg_to_str(imsg.hdr.type_)
        ),
    }
}

/// dispatcher_shutdown().
fn dispatcher_shutdown() -> ! {
    log_debug!("debug: dispatcher agent exiting");
    exit_now(0)
}

/// dispatcher(): the process's main.
pub fn dispatcher(mut peers: Peers) -> ! {
    child_privdrop(
        "dispatcher",
        &[SMTPD_USER],
        Some(PATH_CHROOT),
        ProcType::PROC_DISPATCHER,
        false,
    );
    let mut base = EventBase::new();
    use ProcType::*;
    for p in [PROC_PARENT, PROC_QUEUE, PROC_LKA, PROC_CONTROL, PROC_CA] {
        config_peer(&mut base, &mut peers, p);
    }
    if let Err(e) = crate::sys::pledge::pledge("stdio inet unix recvfd sendfd", None) {
        fatal!(e, "pledge");
    }
    let mut s = Dispatcher { peers };
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
