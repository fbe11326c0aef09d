//! dispatcher.c: the process that speaks SMTP, in both directions, and
//! drives local deliveries (OpenSMTPD dispatcher.c 1.3).
//!
//! So far the SMTP server (smtp.rs, smtp_session.rs, proxy.rs), local
//! delivery (mda.rs) and the resolver's answers; the MTA arrives with
//! its issue.

use std::collections::HashMap;

use super::mda::{mda_imsg, mda_io, Mda};
use super::proxy::{proxy_io, ProxySession};
use super::smtp::{smtp_configure, smtp_imsg, smtp_postfork, Smtp};
use super::smtp_session::smtp_io;
use crate::config::config::config_peer;
use crate::dns::resolver::{resolver_dispatch_result, Resolver, ResolverOwner};
use crate::io::event::EventBase;
use crate::io::ioev::{Io, IoEvent, IoOwner};
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{ImsgType, ProcType};
use crate::pathnames::{PATH_CHROOT, SMTPD_USER};
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;

pub struct Dispatcher {
    pub peers: Peers,
    pub resolver: Resolver<Dispatcher>,
    pub smtp: Smtp,
    /// Connections whose PROXY header is being read.
    pub proxies: HashMap<u64, ProxySession>,
    /// Local deliveries (mda.c).
    pub mda: Mda,
}

crate::impl_mproc_owner!(Dispatcher, dispatcher_imsg);

impl ResolverOwner for Dispatcher {
    fn resolver(&mut self) -> &mut Resolver<Dispatcher> {
        &mut self.resolver
    }
}

/// The connections of the dispatcher, by key: SMTP sessions and proxied
/// connections, each known by a unique id (generate_uid).
impl IoOwner for Dispatcher {
    fn io(&mut self, key: u64) -> Option<&mut Io> {
        if let Some(s) = self.smtp.sessions.get_mut(&key) {
            return Some(&mut s.io);
        }
        if let Some(p) = self.proxies.get_mut(&key) {
            return Some(&mut p.io);
        }
        self.mda.io(key)
    }

    fn io_ref(&self, key: u64) -> Option<&Io> {
        if let Some(s) = self.smtp.sessions.get(&key) {
            return Some(&s.io);
        }
        if let Some(p) = self.proxies.get(&key) {
            return Some(&p.io);
        }
        self.mda.io_ref(key)
    }

    fn io_callback(&mut self, base: &mut EventBase<Self>, key: u64, evt: IoEvent) {
        if self.smtp.sessions.contains_key(&key) {
            smtp_io(self, base, key, evt);
        } else if self.proxies.contains_key(&key) {
            proxy_io(self, base, key, evt);
        } else if self.mda.has_session(key) {
            mda_io(self, base, key, evt);
        }
    }
}

/// dispatcher_imsg().
fn dispatcher_imsg(
    s: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    from: ProcType,
    imsg: Option<Imsg>,
) {
    use ImsgType::*;
    let Some(imsg) = imsg else {
        dispatcher_shutdown()
    };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(IMSG_GETADDRINFO | IMSG_GETADDRINFO_END | IMSG_GETNAMEINFO | IMSG_RES_QUERY) => {
            resolver_dispatch_result(s, base, &imsg)
        }
        Some(IMSG_CONF_START) => {}
        Some(IMSG_CONF_END) => smtp_configure(s, base),
        Some(
            IMSG_SMTP_CHECK_SENDER
            | IMSG_SMTP_EXPAND_RCPT
            | IMSG_SMTP_LOOKUP_HELO
            | IMSG_SMTP_MESSAGE_COMMIT
            | IMSG_SMTP_MESSAGE_CREATE
            | IMSG_SMTP_MESSAGE_OPEN
            | IMSG_QUEUE_ENVELOPE_SUBMIT
            | IMSG_QUEUE_ENVELOPE_COMMIT
            | IMSG_QUEUE_SMTP_SESSION
            | IMSG_CTL_SMTP_SESSION
            | IMSG_CTL_PAUSE_SMTP
            | IMSG_CTL_RESUME_SMTP,
        ) => smtp_imsg(s, base, from as u64, imsg),
        Some(
            IMSG_MDA_LOOKUP_USERINFO
            | IMSG_QUEUE_DELIVER
            | IMSG_MDA_OPEN_MESSAGE
            | IMSG_MDA_FORK
            | IMSG_MDA_DONE,
        ) => mda_imsg(s, base, imsg),
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

/// dispatcher(): the process's main. The listening sockets are bound
/// first, while the process is root.
pub fn dispatcher(mut peers: Peers) -> ! {
    let smtp = smtp_postfork();
    // smtp_can_accept() counts the open descriptors, in the chroot.
    crate::sys::socket::getdtablecount_init();
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
    let mut s = Dispatcher {
        peers,
        resolver: Resolver::default(),
        smtp,
        proxies: HashMap::new(),
        mda: Mda::default(),
    };
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
