//! lka.c: the lookup agent, which reads tables, matches rules, expands
//! aliases and .forward files, resolves names and runs filters
//! (OpenSMTPD lka.c 1.253).
//!
//! So far the process itself: privilege drop (no chroot: it reads the
//! tables where they are), its channels, the messages every process takes,
//! the narrowing of its pledge once configured, and the lookups it
//! resolves for the dispatcher (resolver.c and dns.c).

use crate::config::config::{config_peer, env};
use crate::dispatcher::mda::{userinfo_encode, USERINFO_SIZE};
use crate::dns::asr::Asr;
use crate::dns::dns::{dns_imsg, Dns, DnsOwner};
use crate::dns::event_asr::{AsrOwner, EventAsr};
use crate::dns::resolver::resolver_dispatch_request;
use crate::io::event::{EvFlags, EventBase};
use crate::ipc::imsg::imsg_get_fd;
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{
    m_add_data, m_add_id, m_add_int, m_add_string, m_close, m_compose, m_create, m_end,
    m_get_envelope, m_get_id, m_get_mailaddr, m_get_sockaddr, m_get_string, m_msg,
};
use crate::ipc::mproc::{mproc_disable, mproc_enable, ImsgType, ProcType};
use crate::lka::forward::ForwardReq;
use crate::lka::lka_session::{
    lka_session, lka_session_forward_reply, LkaSession, LKA_OK, LKA_PERMFAIL, LKA_TEMPFAIL,
};
use crate::pathnames::SMTPD_USER;
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;
use crate::table::table::{table_find, table_lookup, Lookup, TableService, Userinfo};
use crate::util::mailaddr::Mailaddr;
use crate::util::util::mailaddr_match;
use std::collections::HashMap;

pub struct Lka {
    pub(crate) peers: Peers,
    asr: EventAsr<Lka>,
    dns: Dns,
    /// Recipient expansions waiting for a .forward (lka_session.c's tree).
    pub(crate) sessions: HashMap<u64, LkaSession>,
}

crate::impl_mproc_owner!(Lka, lka_imsg);

impl AsrOwner for Lka {
    fn event_asr(&mut self) -> &mut EventAsr<Lka> {
        &mut self.asr
    }
}

impl DnsOwner for Lka {
    fn dns(&mut self) -> &mut Dns {
        &mut self.dns
    }
}

impl Lka {
    /// The process state on its channels and resolver.
    pub fn new(peers: Peers, asr: Asr) -> Lka {
        Lka {
            peers,
            asr: EventAsr::new(asr),
            dns: Dns::default(),
            sessions: HashMap::new(),
        }
    }
}

/// lka_imsg().
fn lka_imsg(s: &mut Lka, base: &mut EventBase<Lka>, from: ProcType, imsg: Option<Imsg>) {
    use ImsgType::*;
    let Some(imsg) = imsg else { lka_shutdown() };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(IMSG_GETADDRINFO | IMSG_GETNAMEINFO | IMSG_RES_QUERY) => {
            resolver_dispatch_request(s, base, from, &imsg)
        }
        Some(IMSG_MTA_DNS_HOST | IMSG_MTA_DNS_MX | IMSG_MTA_DNS_MX_PREFERENCE) => {
            dns_imsg(s, base, from, &imsg)
        }
        Some(IMSG_SMTP_CHECK_SENDER) => lka_imsg_check_sender(s, from, &imsg),
        Some(IMSG_SMTP_EXPAND_RCPT) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            let evp = m_get_envelope(&mut m);
            m_end(&m);
            lka_session(s, reqid, evp);
        }
        Some(IMSG_SMTP_LOOKUP_HELO) => lka_imsg_lookup_helo(s, from, &imsg),
        Some(IMSG_MDA_LOOKUP_USERINFO) => lka_imsg_lookup_userinfo(s, from, &imsg),
        Some(IMSG_LKA_OPEN_FORWARD) => {
            let Some(fwreq) = ForwardReq::from_bytes(&imsg.data) else {
                fatalx!(
                    "lka_imsg: IMSG_LKA_OPEN_FORWARD: bad size {}",
                    imsg.data.len()
                );
            };
            let mut imsg = imsg;
            let fd = imsg_get_fd(&mut imsg);
            lka_session_forward_reply(s, &fwreq, fd);
        }
        Some(IMSG_CTL_UPDATE_TABLE) => lka_imsg_update_table(s, &imsg),
        Some(ImsgType::IMSG_CONF_START) => {}
        Some(ImsgType::IMSG_CONF_END) => {
            // Filter and table processes are started by now: lka needs
            // proc and exec no longer.
            if let Err(e) =
                crate::sys::pledge::pledge("stdio rpath inet dns getpw recvfd sendfd", None)
            {
                fatal!(e, "pledge");
            }
            // Start fulfilling requests.
            let p = ProcType::PROC_DISPATCHER;
            mproc_enable(base, s.peers.p(p), p as u64);
        }
        _ => fatalx!("lka_imsg: unexpected {} imsg", imsg_to_str(imsg.hdr.type_)),
    }
}

/// IMSG_CTL_UPDATE_TABLE: `smtpctl update table NAME` reloads a table;
/// the answer goes back to the client through control.
fn lka_imsg_update_table(s: &mut Lka, imsg: &Imsg) {
    let name = imsg.data.split(|&b| b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(name);
    let ok = match crate::table::table::table_find(env(), &name) {
        Some(t) => crate::table::table::table_update(t),
        None => {
            log_warnx!("warn: Lookup table not found: \"{name}\"");
            false
        }
    };
    let t = if ok {
        ImsgType::IMSG_CTL_OK
    } else {
        ImsgType::IMSG_CTL_FAIL
    };
    m_compose(
        s.peers.p(ProcType::PROC_CONTROL),
        t,
        imsg.hdr.peerid,
        0,
        None,
        &[],
    );
}

/// IMSG_SMTP_CHECK_SENDER: may the authenticated user send as this
/// sender (`senders` table)?
fn lka_imsg_check_sender(s: &mut Lka, from: ProcType, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    let tablename = m_get_string(&mut m).unwrap_or("").to_string();
    let username = m_get_string(&mut m).unwrap_or("").to_string();
    let maddr = m_get_mailaddr(&mut m);
    m_end(&m);
    let ret = lka_mailaddrmap(&tablename, &username, &maddr);
    let p = s.peers.p(from);
    m_create(p, ImsgType::IMSG_SMTP_CHECK_SENDER, 0, 0, None);
    m_add_id(p, reqid);
    m_add_int(p, ret);
    m_close(p);
}

/// IMSG_SMTP_LOOKUP_HELO: the name a listener's `hostnames` table gives
/// its address.
fn lka_imsg_lookup_helo(s: &mut Lka, from: ProcType, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    let tablename = m_get_string(&mut m).unwrap_or("").to_string();
    let sa = m_get_sockaddr(&mut m);
    m_end(&m);
    let (ret, name) = lka_addrname(&tablename, &sa);
    let p = s.peers.p(from);
    m_create(p, ImsgType::IMSG_SMTP_LOOKUP_HELO, 0, 0, None);
    m_add_id(p, reqid);
    m_add_int(p, ret);
    if ret == LKA_OK {
        m_add_string(p, name.as_deref());
    }
    m_close(p);
}

/// IMSG_MDA_LOOKUP_USERINFO: the account a local delivery runs as, from
/// the action's userbase, as struct userinfo's bytes.
fn lka_imsg_lookup_userinfo(s: &mut Lka, from: ProcType, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    let tablename = m_get_string(&mut m).unwrap_or_default();
    let username = m_get_string(&mut m).unwrap_or_default();
    m_end(&m);
    let (mut ret, userinfo) = lka_userinfo(tablename, username);
    let mut data = vec![0u8; USERINFO_SIZE];
    if let Some(u) = userinfo {
        if let Err(e) = userinfo_encode(&u, &mut data) {
            log_warnx!("warn: userinfo {tablename}:{username}: {e}");
            ret = LKA_PERMFAIL;
        }
    }
    let p = s.peers.p(from);
    m_create(p, ImsgType::IMSG_MDA_LOOKUP_USERINFO, 0, 0, None);
    m_add_id(p, reqid);
    m_add_int(p, ret);
    if ret == LKA_OK {
        m_add_data(p, &data);
    }
    m_close(p);
}

/// lka_userinfo(): a user of a userbase table.
fn lka_userinfo(tablename: &str, username: &str) -> (i32, Option<Userinfo>) {
    log_debug!("debug: lka: userinfo {tablename}:{username}");
    let conf = crate::config::config::env();
    let Some(table) = table_find(conf, tablename) else {
        log_warnx!("warn: cannot find user table {tablename}");
        return (LKA_TEMPFAIL, None);
    };
    match table_lookup(conf, table, TableService::K_USERINFO, username) {
        Err(_) => {
            log_warnx!("warn: failure during userinfo lookup {tablename}:{username}");
            (LKA_TEMPFAIL, None)
        }
        Ok(Some(Lookup::Userinfo(u))) => (LKA_OK, Some(u)),
        Ok(_) => (LKA_PERMFAIL, None),
    }
}

/// lka_addrname(): the `hostnames` entry of an address.
fn lka_addrname(tablename: &str, sa: &std::net::SocketAddr) -> (i32, Option<String>) {
    let source = crate::util::to::sa_to_text(Some(sa));
    log_debug!("debug: lka: helo {tablename}:{source}");
    let conf = crate::config::config::env();
    let Some(table) = table_find(conf, tablename) else {
        log_warnx!("warn: cannot find helo table {tablename}");
        return (LKA_TEMPFAIL, None);
    };
    match table_lookup(conf, table, TableService::K_ADDRNAME, &source) {
        Err(_) => {
            log_warnx!("warn: failure during helo lookup {tablename}:{source}");
            (LKA_TEMPFAIL, None)
        }
        Ok(Some(Lookup::Addrname(a))) => (LKA_OK, Some(a.name)),
        Ok(_) => (LKA_PERMFAIL, None),
    }
}

/// lka_mailaddrmap(): whether the user's entry of the senders table
/// allows the address.
fn lka_mailaddrmap(tablename: &str, username: &str, maddr: &Mailaddr) -> i32 {
    log_debug!("debug: lka: mailaddrmap {tablename}:{username}");
    let conf = crate::config::config::env();
    let Some(table) = table_find(conf, tablename) else {
        log_warnx!("warn: cannot find mailaddrmap table {tablename}");
        return LKA_TEMPFAIL;
    };
    match table_lookup(conf, table, TableService::K_MAILADDRMAP, username) {
        Err(_) => {
            log_warnx!("warn: failure during mailaddrmap lookup {tablename}:{username}");
            LKA_TEMPFAIL
        }
        Ok(Some(Lookup::Maddrmap(list))) => {
            let delim = conf.sc_subaddressing_delim;
            if list.iter().any(|m| mailaddr_match(maddr, m, delim)) {
                LKA_OK
            } else {
                LKA_PERMFAIL
            }
        }
        Ok(_) => LKA_PERMFAIL,
    }
}

/// lka_sig_handler(): reaps lka's own children (table processes).
fn lka_sig_handler(_s: &mut Lka, _base: &mut EventBase<Lka>, _sig: i32, _ev: EvFlags, _arg: u64) {
    while let Ok(Some(_)) = crate::sys::process::waitpid_any_nohang() {}
}

/// lka_shutdown().
fn lka_shutdown() -> ! {
    log_debug!("debug: lookup agent exiting");
    exit_now(0)
}

/// lka(): the process's main.
pub fn lka(mut peers: Peers) -> ! {
    child_privdrop("lka", &[SMTPD_USER], None, ProcType::PROC_LKA, true);
    let mut base = EventBase::new();
    let ev = base.signal_set(libc::SIGCHLD, lka_sig_handler, 0);
    if let Err(e) = base.event_add(ev, None) {
        fatal!(e, "signal_add");
    }
    use ProcType::*;
    for p in [PROC_PARENT, PROC_QUEUE, PROC_CONTROL, PROC_DISPATCHER] {
        config_peer(&mut base, &mut peers, p);
    }
    // Ignore the dispatcher until the configuration is complete.
    mproc_disable(peers.p(PROC_DISPATCHER));
    // proc and exec are revoked before serving requests.
    if let Err(e) =
        crate::sys::pledge::pledge("stdio rpath inet dns getpw recvfd sendfd proc exec", None)
    {
        fatal!(e, "pledge");
    }
    // resolv.conf is read now, where lka lives (it is not chrooted), and
    // again whenever it changes.
    let s = Lka::new(peers, Asr::new());
    lka_loop(s, base)
}

/// The event loop of a configured lka; tests run it on channels of their
/// own.
pub fn lka_loop(mut s: Lka, mut base: EventBase<Lka>) -> ! {
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
