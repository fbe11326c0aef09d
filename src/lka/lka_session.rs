//! lka_session.c: a recipient's expansion, from the address the client
//! gave to the envelopes the queue stores: rules, aliases, virtual
//! tables, the userbase and .forward files (OpenSMTPD lka_session.c
//! 1.99).
//!
//! An expansion runs until it needs a user's .forward, which only the
//! parent may open; it goes on when the answer comes
//! (lka_session_forward_reply). At the end either every envelope goes to
//! the queue, or the dispatcher gets the reply that refuses the
//! recipient.

use std::os::fd::OwnedFd;

use super::aliases::{aliases_get, aliases_virtual_get};
use super::expand::{expand_insert, Expand, ExpandNode, ExpandType, ExpandU};
use super::forward::{forwards_get, ForwardReq, Forwards};
use super::lka::Lka;
use super::ruleset::ruleset_match;
use crate::config::config::{env, Dispatcher, DispatcherAgent, DEFAULT_USERBASE};
use crate::ipc::mproc::{
    m_add_envelope, m_add_id, m_add_int, m_add_string, m_close, m_compose, m_create, ImsgType,
    ProcType,
};
use crate::pathnames::{path_libexec, SMTPD_USER};
use crate::queue::envelope::{DeliveryType, Envelope, EnvelopeFlags};
use crate::table::table::{table_find, table_lookup, Lookup, TableService};
use crate::util::log::TRACE_EXPAND;

/// EXPAND_DEPTH: the deepest an expansion goes.
const EXPAND_DEPTH: u32 = 10;

/// enum lka_resp_status.
pub const LKA_OK: i32 = 0;
pub const LKA_TEMPFAIL: i32 = 1;
pub const LKA_PERMFAIL: i32 = 2;

const TEMPFAIL_MSG: &str = "424 4.2.4 Mailing list expansion problem";
const PERMFAIL_MSG: &str = "524 5.2.4 Mailing list expansion problem";

/// struct lka_session.
pub struct LkaSession {
    id: u64,
    envelope: Envelope,
    expand: Expand,
    deliverylist: Vec<Envelope>,
    error: i32,
    errormsg: Option<String>,
    /// F_WAITING: a .forward was asked for.
    waiting: bool,
    /// The rule and node the .forward is for.
    rule: Option<usize>,
    node: Option<usize>,
}

/// lka_session(): expands the recipient of `envelope` for the session
/// `id` of the dispatcher.
pub fn lka_session(s: &mut Lka, id: u64, envelope: Envelope) {
    let mut lks = LkaSession {
        id,
        expand: Expand::with_queue(),
        deliverylist: Vec::new(),
        error: 0,
        errormsg: None,
        waiting: false,
        rule: None,
        node: None,
        envelope,
    };
    let xn = ExpandNode::new(
        ExpandType::Address,
        ExpandU::Mailaddr(lks.envelope.rcpt.clone()),
    );
    lks.expand.parent = None;
    lks.expand.rule = None;
    expand_insert(&mut lks.expand, xn);
    lka_resume(s, lks);
}

/// lka_session_forward_reply(): the parent's answer about a user's
/// .forward: no file (deliver to the user), a file to expand, or a
/// failure.
pub fn lka_session_forward_reply(s: &mut Lka, fwreq: &ForwardReq, fd: Option<OwnedFd>) {
    let Some(mut lks) = s.sessions.remove(&fwreq.id) else {
        fatalx!(
            "lka_session_forward_reply: unknown session {:016x}",
            fwreq.id
        );
    };
    lks.waiting = false;
    let (Some(rule), Some(xi)) = (lks.rule, lks.node) else {
        fatalx!("lka_session_forward_reply: no node waiting");
    };
    let dsp = rule_dispatcher(rule);
    let local = local_of(dsp);
    match (fwreq.status, fd) {
        (0, _) => {
            log_trace!(
                TRACE_EXPAND,
                "expand: ~/.forward failed for user {}",
                fwreq.user
            );
            lks.error = LKA_PERMFAIL;
        }
        (1, None) => no_forward(&mut lks, local, rule, xi, &fwreq.user, "no .forward"),
        (1, Some(fd)) => {
            lks.expand.rule = Some(rule);
            lks.expand.parent = Some(xi);
            match forwards_get(fd, &mut lks.expand) {
                Forwards::Tempfail => {
                    log_trace!(
                        TRACE_EXPAND,
                        "expand: temporary forward error for user {}",
                        fwreq.user
                    );
                    lks.error = LKA_TEMPFAIL;
                }
                Forwards::Empty => {
                    no_forward(&mut lks, local, rule, xi, &fwreq.user, "empty .forward")
                }
                Forwards::Expanded => {}
            }
        }
        _ => lks.error = LKA_TEMPFAIL,
    }
    default_errormsg(&mut lks);
    lka_resume(s, lks);
}

/// A user without a .forward (or with an empty one): delivered as the
/// user, unless the action only forwards or only expands.
fn no_forward(
    lks: &mut LkaSession,
    local: Option<&crate::config::config::DispatcherLocal>,
    rule: usize,
    xi: usize,
    user: &str,
    what: &str,
) {
    if local.is_some_and(|l| l.forward_only()) {
        log_trace!(
            TRACE_EXPAND,
            "expand: {what} for user {user} on forward-only rule"
        );
        lks.error = LKA_TEMPFAIL;
    } else if local.is_some_and(|l| l.expand_only()) {
        log_trace!(
            TRACE_EXPAND,
            "expand: {what} for user {user} and no default action on rule"
        );
        lks.error = LKA_PERMFAIL;
    } else {
        log_trace!(TRACE_EXPAND, "expand: {what} for user {user}, just deliver");
        lka_submit(lks, rule, xi);
    }
}

fn default_errormsg(lks: &mut LkaSession) {
    if lks.errormsg.is_none() {
        match lks.error {
            LKA_TEMPFAIL => lks.errormsg = Some(TEMPFAIL_MSG.into()),
            LKA_PERMFAIL => lks.errormsg = Some(PERMFAIL_MSG.into()),
            _ => {}
        }
    }
}

/// lka_resume(): expands queued nodes until the expansion waits for a
/// .forward or is done, then answers.
fn lka_resume(s: &mut Lka, mut lks: LkaSession) {
    if lks.error == 0 {
        while let Some(xi) = lks.expand.queue.as_mut().and_then(|q| q.pop_front()) {
            let rule = lks.expand.node(xi).and_then(|n| n.rule);
            if let Some(fwreq) = lka_expand(&mut lks, rule, xi) {
                lka_ask_forward(s, &fwreq);
                lks.waiting = true;
            }
            if lks.waiting {
                s.sessions.insert(lks.id, lks);
                return;
            }
            if lks.error != 0 {
                break;
            }
        }
        if lks.error == 0 && lks.deliverylist.is_empty() {
            log_trace!(
                TRACE_EXPAND,
                "expand: lka_done: expanded to empty delivery list"
            );
            lks.error = LKA_PERMFAIL;
            lks.errormsg = Some(PERMFAIL_MSG.into());
        }
    }
    if lks.error != 0 {
        lka_refuse(s, &lks);
    } else {
        lka_submit_all(s, &lks);
    }
}

/// The recipient is refused: the dispatcher gets the reply.
fn lka_refuse(s: &mut Lka, lks: &LkaSession) {
    let msg = lks.errormsg.clone().unwrap_or_else(|| {
        if lks.error == LKA_PERMFAIL {
            "550 Invalid recipient".into()
        } else {
            "451 Temporary failure".into()
        }
    });
    let p = s.peers.p(ProcType::PROC_DISPATCHER);
    m_create(p, ImsgType::IMSG_SMTP_EXPAND_RCPT, 0, 0, None);
    m_add_id(p, lks.id);
    m_add_int(p, lks.error);
    m_add_string(p, Some(&msg));
    m_close(p);
}

/// The envelopes go to the queue, then the commit of the recipient.
fn lka_submit_all(s: &mut Lka, lks: &LkaSession) {
    let p = s.peers.p(ProcType::PROC_QUEUE);
    for ep in &lks.deliverylist {
        m_create(p, ImsgType::IMSG_LKA_ENVELOPE_SUBMIT, 0, 0, None);
        m_add_id(p, lks.id);
        m_add_envelope(p, ep);
        m_close(p);
    }
    m_create(p, ImsgType::IMSG_LKA_ENVELOPE_COMMIT, 0, 0, None);
    m_add_id(p, lks.id);
    m_close(p);
}

/// IMSG_LKA_OPEN_FORWARD: the parent opens the user's .forward.
fn lka_ask_forward(s: &mut Lka, fwreq: &ForwardReq) {
    let Some(data) = fwreq.to_bytes() else {
        fatalx!(
            "lka_expand: forward request for {} does not fit",
            fwreq.user
        );
    };
    let p = s.peers.p(ProcType::PROC_PARENT);
    m_compose(p, ImsgType::IMSG_LKA_OPEN_FORWARD, 0, 0, None, &data);
}

/// The action a rule names.
fn rule_dispatcher(rule: usize) -> &'static Dispatcher {
    let conf = env();
    let name = conf
        .sc_rules
        .get(rule)
        .and_then(|r| r.dispatcher.as_deref())
        .unwrap_or_default();
    match conf.sc_dispatchers.get(name) {
        Some(d) => d,
        None => fatalx!("lka: no action \"{name}\""),
    }
}

fn local_of(dsp: &Dispatcher) -> Option<&crate::config::config::DispatcherLocal> {
    match &dsp.u {
        DispatcherAgent::Local(l) => Some(l),
        _ => None,
    }
}

fn set_error(lks: &mut LkaSession, error: i32, why: &str) {
    log_trace!(TRACE_EXPAND, "expand: lka_expand: {why}");
    lks.error = error;
}

/// lka_expand(): one node. Some(request) when the user's .forward must be
/// read first.
fn lka_expand(lks: &mut LkaSession, rule: Option<usize>, xi: usize) -> Option<ForwardReq> {
    let xn = lks.expand.node(xi)?.clone();
    if xn.depth >= EXPAND_DEPTH {
        set_error(lks, LKA_PERMFAIL, "node too deep.");
        lks.errormsg = Some(PERMFAIL_MSG.into());
        return None;
    }
    match xn.type_ {
        ExpandType::Invalid | ExpandType::Include => fatalx!("lka_expand: unexpected type"),
        ExpandType::Address => {
            lka_expand_address(lks, &xn, xi);
            None
        }
        ExpandType::Username => lka_expand_username(lks, rule?, &xn, xi),
        ExpandType::Filename | ExpandType::Filter => {
            lka_expand_command(lks, rule?, &xn, xi);
            None
        }
        ExpandType::Error => {
            lka_expand_error(lks, rule?, &xn);
            None
        }
    }
}

/// EXPAND_ADDRESS: the address through the rules; a remote action takes
/// it as it is, a local one through its virtual table or as a user name.
fn lka_expand_address(lks: &mut LkaSession, xn: &ExpandNode, xi: usize) {
    let maddr = xn.mailaddr();
    log_trace!(
        TRACE_EXPAND,
        "expand: lka_expand: address: {}@{} [depth={}]",
        maddr.user,
        maddr.domain,
        xn.depth
    );
    let mut ep = lks.envelope.clone();
    ep.dest = maddr.clone();
    // Nodes with a parent are forward addresses.
    if xn.parent.is_some() {
        ep.flags |= EnvelopeFlags::EF_INTERNAL;
    }
    // SRS decoding comes with SRS (sc_srs_key).
    let ri = match ruleset_match(&ep) {
        Err(_) => return set_error(lks, LKA_TEMPFAIL, "rule lookup failed"),
        Ok(None) => return set_error(lks, LKA_PERMFAIL, "no rule matched"),
        Ok(Some((_, r))) if r.reject => return set_error(lks, LKA_PERMFAIL, "rejected"),
        Ok(Some((ri, _))) => ri,
    };
    let dsp = rule_dispatcher(ri);
    if matches!(dsp.u, DispatcherAgent::Remote(_)) {
        return lka_submit(lks, ri, xi);
    }
    lks.expand.rule = Some(ri);
    lks.expand.parent = Some(xi);
    if local_of(dsp).is_some_and(|l| l.table_virtual.is_some()) {
        // The virtual lookup is made with the user part lowercased.
        let mut m = maddr;
        m.user = m.user.to_ascii_lowercase();
        match aliases_virtual_get(&mut lks.expand, &m) {
            -1 => set_error(lks, LKA_TEMPFAIL, "error in virtual alias lookup"),
            0 => set_error(lks, LKA_PERMFAIL, "no aliases for virtual"),
            _ => {}
        }
        return default_errormsg(lks);
    }
    if let Some(n) = lks.expand.node_mut(xi) {
        n.rule = Some(ri);
    }
    let node = ExpandNode::new(
        ExpandType::Username,
        ExpandU::Text(xn.mailaddr().user.to_ascii_lowercase()),
    );
    expand_insert(&mut lks.expand, node);
}

/// EXPAND_USERNAME: aliases first; then the user, who must exist in the
/// userbase, and whose .forward is asked for unless this is the user's
/// own forward or the action delivers as another user.
fn lka_expand_username(
    lks: &mut LkaSession,
    rule: usize,
    xn: &ExpandNode,
    xi: usize,
) -> Option<ForwardReq> {
    log_trace!(
        TRACE_EXPAND,
        "expand: lka_expand: username: {} [depth={}, sameuser={}]",
        xn.user(),
        xn.depth,
        i32::from(xn.sameuser)
    );
    let dsp = rule_dispatcher(rule);
    let local = local_of(dsp);
    lks.expand.rule = Some(rule);
    lks.expand.parent = Some(xi);
    if let Some(l) = local.filter(|_| !xn.sameuser) {
        let mut r = 0;
        if l.table_alias.is_some() {
            r = aliases_get(&mut lks.expand, xn.user());
        }
        if l.table_virtual.is_some() {
            r = aliases_virtual_get(&mut lks.expand, &xn.mailaddr());
        }
        if r == -1 {
            set_error(lks, LKA_TEMPFAIL, "error in alias lookup");
            default_errormsg(lks);
        }
        if r != 0 {
            return None;
        }
    }
    // gilles+hackers@ -> gilles@
    let delim = env().sc_subaddressing_delim;
    let mut user = xn.user().to_string();
    let mut subaddress = String::new();
    if let Some(p) = user.find(delim) {
        subaddress = user[p + delim.len_utf8()..].to_string();
        user.truncate(p);
    }
    if let Some(n) = lks.expand.node_mut(xi) {
        n.u = ExpandU::Text(user.clone());
        n.subaddress = subaddress;
    }
    let userbase = local
        .and_then(|l| l.table_userbase.as_deref())
        .unwrap_or(DEFAULT_USERBASE);
    let conf = env();
    let ui = match table_find(conf, userbase)
        .map(|t| table_lookup(conf, t, TableService::K_USERINFO, &user))
    {
        None | Some(Err(_)) => {
            set_error(lks, LKA_TEMPFAIL, "backend error while searching user");
            return None;
        }
        Some(Ok(Some(Lookup::Userinfo(ui)))) => ui,
        Some(Ok(_)) => {
            set_error(lks, LKA_PERMFAIL, "user-part does not match system user");
            return None;
        }
    };
    if let Some(n) = lks.expand.node_mut(xi) {
        n.realuser = true;
        n.realuser_uid = ui.uid;
    }
    let parent_forwarded = xn
        .parent
        .and_then(|p| lks.expand.node(p))
        .is_some_and(|p| p.forwarded);
    if xn.sameuser && parent_forwarded {
        log_trace!(TRACE_EXPAND, "expand: lka_expand: same user, submitting");
        lka_submit(lks, rule, xi);
        return None;
    }
    // Another delivery user: other users' .forward files are skipped.
    if local
        .and_then(|l| l.user.as_deref())
        .is_some_and(|u| u != user)
    {
        log_trace!(
            TRACE_EXPAND,
            "expand: lka_expand: alternate delivery user mismatch recipient user, skip .forward, submitting"
        );
        lka_submit(lks, rule, xi);
        return None;
    }
    lks.rule = Some(rule);
    lks.node = Some(xi);
    if let Some(n) = lks.expand.node_mut(xi) {
        n.forwarded = true;
    }
    Some(ForwardReq {
        id: lks.id,
        status: 0,
        user: ui.username,
        uid: ui.uid,
        gid: ui.gid,
        directory: ui.directory,
    })
}

/// EXPAND_FILENAME and EXPAND_FILTER: a file or a command from an alias
/// or a .forward, never from root's, never for a forward-only action.
fn lka_expand_command(lks: &mut LkaSession, rule: usize, xn: &ExpandNode, xi: usize) {
    let what = if xn.type_ == ExpandType::Filename {
        "filename"
    } else {
        "filter"
    };
    let parent = xn.parent.and_then(|p| lks.expand.node(p));
    if parent.is_some_and(|p| p.realuser && p.realuser_uid == 0) {
        return set_error(
            lks,
            LKA_TEMPFAIL,
            &format!("{what} not allowed in root's forward"),
        );
    }
    if local_of(rule_dispatcher(rule)).is_some_and(|l| l.forward_only()) {
        return set_error(
            lks,
            LKA_TEMPFAIL,
            &format!("{what} matched on forward-only rule"),
        );
    }
    log_trace!(
        TRACE_EXPAND,
        "expand: lka_expand: {what}: {} [depth={}]",
        xn.user(),
        xn.depth
    );
    lka_submit(lks, rule, xi);
}

/// EXPAND_ERROR: an `error:` alias: its code and text are the reply.
fn lka_expand_error(lks: &mut LkaSession, rule: usize, xn: &ExpandNode) {
    if local_of(rule_dispatcher(rule)).is_some_and(|l| l.forward_only()) {
        return set_error(lks, LKA_TEMPFAIL, "error matched on forward-only rule");
    }
    log_trace!(
        TRACE_EXPAND,
        "expand: lka_expand: error: {} [depth={}]",
        xn.user(),
        xn.depth
    );
    let msg = xn.user().to_string();
    match msg.as_bytes().first() {
        Some(b'4') => lks.error = LKA_TEMPFAIL,
        Some(b'5') => lks.error = LKA_PERMFAIL,
        _ => {}
    }
    lks.errormsg = Some(msg);
}

/// lka_find_ancestor(): the nearest node of `type_` from `xi` up.
fn lka_find_ancestor(expand: &Expand, mut xi: usize, type_: ExpandType) -> usize {
    while let Some(n) = expand.node(xi) {
        if n.type_ == type_ {
            return xi;
        }
        match n.parent {
            Some(p) => xi = p,
            None => break,
        }
    }
    fatalx!("lka_find_ancestor: no ancestors of type {type_:?}")
}

/// lka_submit(): the envelope of one destination, on the delivery list.
fn lka_submit(lks: &mut LkaSession, rule: usize, xi: usize) {
    let conf = env();
    let Some(xn) = lks.expand.node(xi).cloned() else {
        return;
    };
    let mut ep = lks.envelope.clone();
    ep.dispatcher = conf
        .sc_rules
        .get(rule)
        .and_then(|r| r.dispatcher.clone())
        .unwrap_or_default();
    let dsp = rule_dispatcher(rule);
    match &dsp.u {
        DispatcherAgent::Remote(_) => {
            if xn.type_ != ExpandType::Address {
                fatalx!("lka_deliver: expect address");
            }
            ep.type_ = DeliveryType::Mta;
            ep.dest = xn.mailaddr();
        }
        DispatcherAgent::Local(_) | DispatcherAgent::Bounce => {
            if !matches!(
                xn.type_,
                ExpandType::Username | ExpandType::Filename | ExpandType::Filter
            ) {
                fatalx!("lka_deliver: wrong type: {:?}", xn.type_);
            }
            ep.type_ = DeliveryType::Mda;
            let addr = lka_find_ancestor(&lks.expand, xi, ExpandType::Address);
            ep.dest = lks
                .expand
                .node(addr)
                .map(ExpandNode::mailaddr)
                .unwrap_or_default();
            if xn.type_ == ExpandType::Username {
                ep.mda_user = xn.user().to_string();
                ep.mda_subaddress = xn.subaddress.clone();
            } else {
                lka_submit_command(&lks.expand, &xn, &mut ep);
            }
        }
    }
    lks.deliverylist.push(ep);
}

/// A file or command destination: delivered as the user whose .forward
/// named it, or as the unprivileged user for aliases.
fn lka_submit_command(expand: &Expand, xn: &ExpandNode, ep: &mut Envelope) {
    let parent = xn.parent.and_then(|p| expand.node(p));
    ep.mda_user = match parent {
        Some(p) if p.realuser => p.user().to_string(),
        _ => SMTPD_USER.to_string(),
    };
    // "this battle needs to be fought ...", as C says.
    if xn.type_ == ExpandType::Filter && ep.mda_user == SMTPD_USER {
        log_warnx!("commands executed from aliases run with {SMTPD_USER} privileges");
    }
    ep.mda_exec = if xn.type_ == ExpandType::Filename {
        format!(
            "{}/mail.mboxfile -f %{{mbox.from}} {}",
            path_libexec(),
            xn.user()
        )
    } else {
        xn.user().to_string()
    };
}
