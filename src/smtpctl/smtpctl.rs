//! smtpctl.c: the control program (OpenSMTPD smtpctl.c 1.175).
//!
//! Every command of OpenSMTPD 7.8's smtpctl over the control socket, with
//! its messages and output: pausing and resuming the daemon's parts, its
//! status and counters, logging, traces and profiling, the queue's
//! listing and the envelopes' scheduling, removal, pauses and discovery,
//! table updates; encrypt (encrypt.rs) and spf walk (spfwalk.rs). The
//! relaying agent's commands say plainly that it is not there yet. The
//! sendmail personalities are enqueue.rs's, makemap and newaliases
//! makemap.rs's.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use super::parser::{Matched, Parser};
use crate::config::config::QueueFlags;
use crate::control::IMSG_VERSION;
use crate::ipc::imsg::{
    imsg_compose, imsg_get, imsgbuf_allow_fdpass, imsgbuf_flush, imsgbuf_init, imsgbuf_read, Imsg,
    Imsgbuf, ReadResult,
};
use crate::ipc::mproc::{m_end, m_get_envelope, m_get_int, m_get_time, m_msg, ImsgType};
use crate::pathnames::smtpd_socket;
use crate::queue::envelope::{
    evpid_to_msgid, msgid_to_evpid, DeliveryType, Envelope, EnvelopeFlags, PeerAddr,
};
use crate::queue::queue_backend::{queue_envelope_walk, queue_open, QueueWalk};
use crate::smtpd::{SMTPD_MDA_PAUSED, SMTPD_MTA_PAUSED, SMTPD_SMTP_PAUSED};
use crate::sys::process::setresgid;
use crate::sys::unistd::{geteuid, getgid};
use crate::util::log::{
    PROFILE_IMSG, PROFILE_QUEUE, TRACE_BOUNCE, TRACE_DEBUG, TRACE_EXPAND, TRACE_FILTERS,
    TRACE_IMSG, TRACE_IO, TRACE_LOOKUP, TRACE_MPROC, TRACE_MTA, TRACE_RULES, TRACE_SCHEDULER,
    TRACE_SMTP, TRACE_STAT,
};
use crate::util::stat_backend::{
    StatKv, STAT_COUNTER, STAT_TIMESPEC, STAT_TIMESTAMP, STAT_TIMEVAL,
};
use crate::util::to::duration_to_text;
use crate::util::util::{strnvis, time_now};

fn progname(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// errx(3) with the program's name.
fn errx(msg: &str) -> ! {
    eprintln!("smtpctl: {msg}");
    std::process::exit(1)
}

/// The connection to the daemon.
pub(crate) struct Srv {
    pub(crate) ibuf: Imsgbuf,
}

/// srv_connect(): None when no daemon listens.
pub(crate) fn srv_connect() -> Option<Srv> {
    let stream = UnixStream::connect(smtpd_socket()).ok()?;
    let mut ibuf = match imsgbuf_init(OwnedFd::from(stream)) {
        Ok(b) => b,
        Err(e) => errx(&format!("imsgbuf_init: {e}")),
    };
    imsgbuf_allow_fdpass(&mut ibuf);
    Some(Srv { ibuf })
}

/// srv_send(): one request, marked with IMSG_VERSION.
fn srv_send(srv: &mut Srv, t: ImsgType, data: &[u8]) {
    if let Err(e) = imsg_compose(&mut srv.ibuf, t as u32, IMSG_VERSION, 0, None, data) {
        errx(&format!("imsg_compose: {e}"));
    }
}

/// srv_recv(): the next message, of type `want` if given.
fn srv_recv(srv: &mut Srv, want: Option<ImsgType>) -> Imsg {
    if let Err(e) = imsgbuf_flush(&mut srv.ibuf) {
        errx(&format!("write error: {e}"));
    }
    loop {
        match imsg_get(&mut srv.ibuf) {
            Err(e) => errx(&format!("imsg_get error: {e}")),
            Ok(Some(imsg)) => {
                if imsg.hdr.type_ == ImsgType::IMSG_CTL_FAIL as u32
                    && imsg.hdr.peerid != 0
                    && imsg.hdr.peerid != IMSG_VERSION
                {
                    errx("incompatible smtpctl and smtpd");
                }
                if want.is_some_and(|t| t as u32 != imsg.hdr.type_) {
                    errx("bad message type");
                }
                return imsg;
            }
            Ok(None) => {}
        }
        match imsgbuf_read(&mut srv.ibuf) {
            Err(e) => errx(&format!("read error: {e}")),
            Ok(ReadResult::Data(_) | ReadResult::WouldBlock) => {}
            Ok(_) => errx("pipe closed"),
        }
    }
}

/// srv_check_result(): IMSG_CTL_OK or IMSG_CTL_FAIL, said as C says it.
fn srv_check_result(srv: &mut Srv, verbose: bool) -> i32 {
    let imsg = srv_recv(srv, None);
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_CTL_OK) => {
            if verbose {
                println!("command succeeded");
            }
            0
        }
        Some(ImsgType::IMSG_CTL_FAIL) => {
            if verbose {
                let why = imsg.data.split(|&b| b == 0).next().unwrap_or_default();
                if why.is_empty() {
                    println!("command failed");
                } else {
                    println!("command failed: {}", String::from_utf8_lossy(why));
                }
            }
            1
        }
        _ => errx(&format!("wrong message in response: {}", imsg.hdr.type_)),
    }
}

/// A request with an int, and its result.
fn srv_int_command(t: ImsgType, v: u32) -> i32 {
    let mut srv = srv_or_exit();
    srv_send(&mut srv, t, &(v as i32).to_ne_bytes());
    srv_check_result(&mut srv, true)
}

/// A request without data, and its result.
fn srv_command(t: ImsgType) -> i32 {
    let mut srv = srv_or_exit();
    srv_send(&mut srv, t, &[]);
    srv_check_result(&mut srv, true)
}

fn srv_or_exit() -> Srv {
    srv_connect().unwrap_or_else(|| errx("smtpd doesn't seem to be running"))
}

/// do_update_table(): lka reloads the table; the answer says whether it
/// could.
fn do_update_table(name: &str) -> i32 {
    let mut srv = srv_or_exit();
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    srv_send(&mut srv, ImsgType::IMSG_CTL_UPDATE_TABLE, &data);
    srv_check_result(&mut srv, true)
}

/// After newaliases, a running smtpd reloads its `aliases` table, which
/// matters when that table is a file read into memory; the answer is not
/// reported, as in C.
pub(crate) fn newaliases_notify() {
    if let Some(mut srv) = srv_connect() {
        srv_send(&mut srv, ImsgType::IMSG_CTL_UPDATE_TABLE, b"aliases\0");
        srv_check_result(&mut srv, false);
    }
}

/// do_show_status().
fn do_show_status() -> i32 {
    let mut srv = srv_or_exit();
    srv_send(&mut srv, ImsgType::IMSG_CTL_SHOW_STATUS, &[]);
    let imsg = srv_recv(&mut srv, Some(ImsgType::IMSG_CTL_SHOW_STATUS));
    let Ok(b) = <[u8; 4]>::try_from(imsg.data.as_slice()) else {
        errx("bogus data");
    };
    let flags = u32::from_ne_bytes(b);
    let state = |f: u32| if flags & f != 0 { "paused" } else { "running" };
    println!("MDA {}", state(SMTPD_MDA_PAUSED));
    println!("MTA {}", state(SMTPD_MTA_PAUSED));
    println!("SMTP {}", state(SMTPD_SMTP_PAUSED));
    0
}

/// srv_iter_messages(): every queued message, a page at a time.
fn srv_iter_messages(srv: &mut Srv) -> Vec<u32> {
    let mut all = Vec::new();
    let mut from: u32 = 0;
    loop {
        srv_send(srv, ImsgType::IMSG_CTL_LIST_MESSAGES, &from.to_ne_bytes());
        let imsg = srv_recv(srv, Some(ImsgType::IMSG_CTL_LIST_MESSAGES));
        if imsg.data.is_empty() {
            return all;
        }
        if imsg.data.len() % 4 != 0 {
            errx("bogus data");
        }
        all.extend(
            imsg.data
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
        );
        let last = *all.last().unwrap_or(&u32::MAX);
        match last.checked_add(1) {
            Some(next) => from = next,
            None => return all,
        }
    }
}

/// srv_iter_envelopes(): the envelopes of one message, with the state
/// the scheduler gives them (flags, next try), a page at a time.
fn srv_iter_envelopes(srv: &mut Srv, msgid: u32) -> Vec<Envelope> {
    let mut all = Vec::new();
    let mut from = msgid_to_evpid(msgid);
    loop {
        srv_send(srv, ImsgType::IMSG_CTL_LIST_ENVELOPES, &from.to_ne_bytes());
        let mut found = 0;
        loop {
            let imsg = srv_recv(srv, Some(ImsgType::IMSG_CTL_LIST_ENVELOPES));
            if imsg.data.is_empty() {
                break;
            }
            let mut m = m_msg(&imsg);
            let flags = m_get_int(&mut m);
            let nexttry = m_get_time(&mut m);
            let mut evp = m_get_envelope(&mut m);
            m_end(&m);
            evp.flags |= EnvelopeFlags::from_bits_retain(flags as u32);
            evp.nexttry = nexttry;
            from = evp.id + 1;
            found += 1;
            all.push(evp);
        }
        if found == 0 || evpid_to_msgid(from) != msgid {
            return all;
        }
    }
}

/// What an id on the command line names (P_MSGID, P_EVPID): up to eight
/// hexadecimal digits a message, more an envelope.
fn parse_id(s: &str) -> u64 {
    match u64::from_str_radix(s, 16) {
        Ok(v) if !s.is_empty() && s.len() <= 16 && !s.starts_with('+') => v,
        _ => errx(&format!("invalid id: {s}")),
    }
}

/// srv_foreach_envelope(): the request `ctl` on every envelope, of one
/// message, or one envelope; how many it went through for.
fn srv_foreach_envelope(srv: &mut Srv, arg: Option<&str>, ctl: ImsgType) -> usize {
    let ids: Vec<u64> = match arg {
        None => srv_iter_messages(srv)
            .into_iter()
            .flat_map(|msgid| {
                srv_iter_envelopes(srv, msgid)
                    .into_iter()
                    .map(|e| e.id)
                    .collect::<Vec<_>>()
            })
            .collect(),
        Some(a) if a.len() <= 8 => {
            let msgid = parse_id(a) as u32;
            srv_iter_envelopes(srv, msgid)
                .iter()
                .map(|e| e.id)
                .collect()
        }
        Some(a) => vec![parse_id(a)],
    };
    let mut ok = 0;
    for evpid in ids {
        srv_send(srv, ctl, &evpid.to_ne_bytes());
        if srv_check_result(srv, false) == 0 {
            ok += 1;
        }
    }
    ok
}

/// do_schedule(), do_remove(), do_pause_envelope(), do_resume_envelope().
fn do_envelopes(arg: Option<&str>, ctl: ImsgType, done: &str) -> i32 {
    let mut srv = srv_or_exit();
    let ok = srv_foreach_envelope(&mut srv, arg, ctl);
    println!("{ok} envelope{} {done}", if ok > 1 { "s" } else { "" });
    0
}

/// do_show_queue(): every envelope, or those of one message; from the
/// spool itself when the daemon is not running.
fn do_show_queue(arg: Option<&str>) -> i32 {
    let now = time_now();
    let Some(mut srv) = srv_connect() else {
        // The spool is _smtpq's: only root reads it without the daemon.
        if geteuid() != 0 {
            errx("smtpd doesn't seem to be running");
        }
        return show_offline_queue(now);
    };
    let msgids = match arg {
        None => srv_iter_messages(&mut srv),
        Some(a) => vec![parse_id(a) as u32],
    };
    for msgid in msgids {
        for mut e in srv_iter_envelopes(&mut srv, msgid) {
            show_queue_envelope(&mut e, true, now);
        }
    }
    0
}

/// do_show_queue()'s offline side: the spool's envelopes as they are.
fn show_offline_queue(now: i64) -> i32 {
    let spool = crate::pathnames::path_spool();
    let mut q = match queue_open(
        "fs",
        std::path::Path::new(&spool),
        QueueFlags::empty(),
        None,
    ) {
        Ok(q) => q,
        Err(e) => errx(&format!("{spool}/queue: {e}")),
    };
    loop {
        match queue_envelope_walk(&mut q) {
            QueueWalk::Done => return 0,
            QueueWalk::Skip => {}
            QueueWalk::Envelope(mut e) => show_queue_envelope(&mut e, false, now),
        }
    }
}

/// show_queue_envelope(): one line of `show queue`.
fn show_queue_envelope(e: &mut Envelope, online: bool, now: i64) {
    let mut status = Vec::new();
    for (bit, name) in [
        (EnvelopeFlags::EF_BOUNCE, "bounce"),
        (EnvelopeFlags::EF_AUTHENTICATED, "auth"),
        (EnvelopeFlags::EF_INTERNAL, "internal"),
        (EnvelopeFlags::EF_SUSPEND, "suspend"),
        (EnvelopeFlags::EF_HOLD, "hold"),
    ] {
        if e.flags.contains(bit) {
            e.flags.remove(bit);
            status.push(name);
        }
    }
    let runstate = if !online {
        "offline|".to_string()
    } else if e.flags.contains(EnvelopeFlags::EF_PENDING) {
        format!("pending|{}", e.nexttry - now)
    } else if e.flags.contains(EnvelopeFlags::EF_INFLIGHT) {
        format!("inflight|{}", now - e.lasttry)
    } else {
        "invalid|".to_string()
    };
    e.flags
        .remove(EnvelopeFlags::EF_PENDING | EnvelopeFlags::EF_INFLIGHT);
    if !e.flags.is_empty() {
        errx(&format!(
            "{:016x}: unexpected flags 0x{:04x}",
            e.id,
            e.flags.bits()
        ));
    }
    let agent = match e.type_ {
        DeliveryType::Mda => "mda",
        DeliveryType::Mta => "mta",
        DeliveryType::Bounce => "bounce",
    };
    let src = match e.ss {
        PeerAddr::Local => "local",
        PeerAddr::Inet(a) if a.is_ipv4() => "inet4",
        PeerAddr::Inet(_) => "inet6",
        PeerAddr::Unspec => "?",
    };
    println!(
        "{:016x}|{src}|{agent}|{}|{}@{}|{}@{}|{}@{}|{}|{}|{}|{}|{runstate}|{}",
        e.id,
        status.join(","),
        e.sender.user,
        e.sender.domain,
        e.rcpt.user,
        e.rcpt.domain,
        e.dest.user,
        e.dest.domain,
        e.creation,
        e.creation + e.ttl,
        e.lasttry,
        e.retry,
        strnvis(e.errorline.as_bytes(), false)
    );
}

/// display(): a spool file, as it is, on the standard output. Queue
/// encryption and compression do not exist here yet: a file they made
/// (OpenSMTPD's magic numbers) is refused, not printed as garbage.
fn display(path: &str) -> i32 {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => errx(&format!(
            "fopen: {path}: {}",
            crate::util::log::strerror(&e)
        )),
    };
    if data.starts_with(&[0x1f, 0x8b]) {
        errx(&format!(
            "{path}: compressed; queue compression is not implemented yet"
        ));
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if out.write_all(&data).and_then(|()| out.flush()).is_err() {
        return 1;
    }
    0
}

/// do_show_envelope(): the envelope's file in the spool.
fn do_show_envelope(arg: &str) -> i32 {
    let evpid = parse_id(arg);
    let msgid = evpid_to_msgid(evpid);
    display(&format!(
        "{}/queue/{:02x}/{msgid:08x}/{evpid:016x}",
        crate::pathnames::path_spool(),
        msgid >> 24
    ))
}

/// do_show_message(): the message's data in the spool, by its id or
/// one of its envelopes'.
fn do_show_message(arg: &str) -> i32 {
    let id = parse_id(arg);
    let msgid = if arg.len() > 8 {
        evpid_to_msgid(id)
    } else {
        id as u32
    };
    display(&format!(
        "{}/queue/{:02x}/{msgid:08x}/message",
        crate::pathnames::path_spool(),
        msgid >> 24
    ))
}

/// do_discover(): an envelope or a message put in the spool by hand.
fn do_discover(arg: &str) -> i32 {
    let mut srv = srv_or_exit();
    let id = parse_id(arg);
    let t = if arg.len() > 8 {
        srv_send(
            &mut srv,
            ImsgType::IMSG_CTL_DISCOVER_EVPID,
            &id.to_ne_bytes(),
        );
        ImsgType::IMSG_CTL_DISCOVER_EVPID
    } else {
        srv_send(
            &mut srv,
            ImsgType::IMSG_CTL_DISCOVER_MSGID,
            &(id as u32).to_ne_bytes(),
        );
        ImsgType::IMSG_CTL_DISCOVER_MSGID
    };
    let imsg = srv_recv(&mut srv, None);
    if imsg.hdr.type_ == ImsgType::IMSG_CTL_FAIL as u32 {
        println!("command failed");
        return 1;
    }
    if imsg.hdr.type_ != t as u32 {
        errx("bad message type");
    }
    if imsg.data.is_empty() {
        return 0;
    }
    let Ok(b) = <[u8; 8]>::try_from(imsg.data.as_slice()) else {
        errx("bogus data");
    };
    let n = usize::from_ne_bytes(b);
    println!("{n} envelope{} discovered", if n != 1 { "s" } else { "" });
    0
}

/// do_show_stats(): every counter, in key order, `uptime` as how long
/// the daemon has run.
fn do_show_stats() -> i32 {
    let mut srv = srv_or_exit();
    let mut kv = StatKv::default();
    loop {
        srv_send(&mut srv, ImsgType::IMSG_CTL_GET_STATS, &kv.to_bytes());
        let imsg = srv_recv(&mut srv, Some(ImsgType::IMSG_CTL_GET_STATS));
        kv = StatKv::from_bytes(&imsg.data).unwrap_or_else(|| errx("bogus data"));
        if !kv.iter {
            return 0;
        }
        if kv.key == "uptime" {
            let duration = time_now() - kv.val.a;
            println!("uptime={duration}");
            println!("uptime.human={}", duration_to_text(duration));
            continue;
        }
        let v = kv.val;
        match v.type_ {
            STAT_COUNTER | STAT_TIMESTAMP => println!("{}={}", kv.key, v.a),
            STAT_TIMEVAL => println!("{}={}.{}", kv.key, v.a, v.b),
            STAT_TIMESPEC => println!(
                "{}={}.{:06}",
                kv.key,
                v.a * 1_000_000 + v.b / 1_000_000,
                v.b % 1_000_000
            ),
            _ => {}
        }
    }
}

/// do_monitor(): the digest every second, as changes since the last.
fn do_monitor() -> i32 {
    let mut srv = srv_or_exit();
    let mut last = [0usize; 11];
    let mut count = 0usize;
    loop {
        srv_send(&mut srv, ImsgType::IMSG_CTL_GET_DIGEST, &[]);
        let imsg = srv_recv(&mut srv, Some(ImsgType::IMSG_CTL_GET_DIGEST));
        if imsg.data.len() != 16 + 8 * 11 {
            errx("bogus data");
        }
        let mut d = [0usize; 11];
        for (i, v) in d.iter_mut().enumerate() {
            let o = 16 + 8 * i;
            *v = usize::from_ne_bytes(imsg.data[o..o + 8].try_into().unwrap_or_default());
        }
        // clt_connect, clt_disconnect, evp_enqueued, evp_dequeued,
        // evp_expired, evp_removed, evp_bounce, dlv_ok, dlv_permfail,
        // dlv_tempfail, dlv_loop.
        if count % 25 == 0 {
            if count != 0 {
                println!();
            }
            println!(
                "--- client ---  -- envelope --   ---- relay/delivery --- ------- misc -------\n\
                 curr conn disc  curr  enq  deq   ok tmpfail prmfail loop expire remove bounce"
            );
        }
        let delta = |i: usize| d[i].wrapping_sub(last[i]);
        println!(
            "{:4} {:4} {:4}  {:4} {:4} {:4} {:4}    {:4}    {:4} {:4}   {:4}   {:4}   {:4}",
            d[0].wrapping_sub(d[1]),
            delta(0),
            delta(1),
            d[2].wrapping_sub(d[3]),
            delta(2),
            delta(3),
            delta(7),
            delta(9),
            delta(8),
            delta(10),
            delta(4),
            delta(5),
            delta(6)
        );
        last = d;
        count += 1;
        crate::sys::unistd::sleep(1);
    }
}

/// str_to_trace().
fn str_to_trace(s: &str) -> u32 {
    match s {
        "imsg" => TRACE_IMSG,
        "io" => TRACE_IO,
        "smtp" => TRACE_SMTP,
        "filters" => TRACE_FILTERS,
        "mta" => TRACE_MTA,
        "bounce" => TRACE_BOUNCE,
        "scheduler" => TRACE_SCHEDULER,
        "lookup" => TRACE_LOOKUP,
        "stat" => TRACE_STAT,
        "rules" => TRACE_RULES,
        "mproc" => TRACE_MPROC,
        "expand" => TRACE_EXPAND,
        "all" => !TRACE_DEBUG,
        _ => errx(&format!("invalid trace keyword: {s}")),
    }
}

/// str_to_profile().
fn str_to_profile(s: &str) -> u32 {
    match s {
        "imsg" => PROFILE_IMSG,
        "queue" => PROFILE_QUEUE,
        _ => errx(&format!("invalid profile keyword: {s}")),
    }
}

/// The commands of OpenSMTPD 7.8's smtpctl (cmd_install_priv and
/// cmd_install in main()), as patterns: `<...>` takes any word.
const COMMANDS: &[&str] = &[
    "discover <evpid>",
    "discover <msgid>",
    "pause mta from <addr> for <str>",
    "resume mta from <addr> for <str>",
    "show mta paused",
    "log brief",
    "log verbose",
    "monitor",
    "pause envelope <evpid>",
    "pause envelope <msgid>",
    "pause envelope all",
    "pause mda",
    "pause mta",
    "pause smtp",
    "profile <str>",
    "remove <evpid>",
    "remove <msgid>",
    "remove all",
    "resume envelope <evpid>",
    "resume envelope <msgid>",
    "resume envelope all",
    "resume mda",
    "resume mta",
    "resume route <routeid>",
    "resume smtp",
    "schedule <msgid>",
    "schedule <evpid>",
    "schedule all",
    "show envelope <evpid>",
    "show hoststats",
    "show message <msgid>",
    "show message <evpid>",
    "show queue",
    "show queue <msgid>",
    "show hosts",
    "show relays",
    "show routes",
    "show stats",
    "show status",
    "trace <str>",
    "unprofile <str>",
    "untrace <str>",
    "update table <str>",
    "encrypt",
    "encrypt <str>",
    "spf walk",
];

/// The commands anyone may run (cmd_install), and those a user may run
/// on their own mail (not in C, where root alone lists and removes).
fn unprivileged(pattern: &str) -> bool {
    pattern.starts_with("encrypt")
        || pattern == "spf walk"
        || pattern.starts_with("show queue")
        || pattern.starts_with("remove ")
}

/// cmd_run(): the command `argv` names (abbreviations allowed, as
/// parser.c reads them), run.
fn cmd_run(argv: &[String]) -> i32 {
    let mut parser = Parser::default();
    for pattern in COMMANDS {
        parser.cmd_install(pattern);
    }
    let Matched { pattern, words } = match parser.cmd_match(argv) {
        Ok(m) => m,
        Err(why) => {
            eprint!("{why}");
            // C's main returns cmd_run's -1.
            return 255;
        }
    };
    if !unprivileged(pattern) && geteuid() != 0 {
        errx("need root privileges");
    }
    let arg = |i: usize| words.get(i).map_or("", String::as_str);
    match pattern {
        "log brief" => srv_int_command(ImsgType::IMSG_CTL_VERBOSE, 0),
        "log verbose" => srv_int_command(ImsgType::IMSG_CTL_VERBOSE, TRACE_DEBUG),
        "pause mda" => srv_command(ImsgType::IMSG_CTL_PAUSE_MDA),
        "pause mta" => srv_command(ImsgType::IMSG_CTL_PAUSE_MTA),
        "pause smtp" => srv_command(ImsgType::IMSG_CTL_PAUSE_SMTP),
        "resume mda" => srv_command(ImsgType::IMSG_CTL_RESUME_MDA),
        "resume mta" => srv_command(ImsgType::IMSG_CTL_RESUME_MTA),
        "resume smtp" => srv_command(ImsgType::IMSG_CTL_RESUME_SMTP),
        "show status" => do_show_status(),
        "update table <str>" => do_update_table(arg(2)),
        "show stats" => do_show_stats(),
        "monitor" => do_monitor(),
        "discover <evpid>" | "discover <msgid>" => do_discover(arg(1)),
        "show queue" => do_show_queue(None),
        "show envelope <evpid>" => do_show_envelope(arg(2)),
        "show message <msgid>" | "show message <evpid>" => do_show_message(arg(2)),
        "show queue <msgid>" => do_show_queue(Some(arg(2))),
        "schedule all" => do_envelopes(None, ImsgType::IMSG_CTL_SCHEDULE, "scheduled"),
        "schedule <msgid>" | "schedule <evpid>" => {
            do_envelopes(Some(arg(1)), ImsgType::IMSG_CTL_SCHEDULE, "scheduled")
        }
        "remove all" => do_envelopes(None, ImsgType::IMSG_CTL_REMOVE, "removed"),
        "remove <msgid>" | "remove <evpid>" => {
            do_envelopes(Some(arg(1)), ImsgType::IMSG_CTL_REMOVE, "removed")
        }
        "pause envelope all" => do_envelopes(None, ImsgType::IMSG_CTL_PAUSE_EVP, "paused"),
        "pause envelope <msgid>" | "pause envelope <evpid>" => {
            do_envelopes(Some(arg(2)), ImsgType::IMSG_CTL_PAUSE_EVP, "paused")
        }
        "resume envelope all" => do_envelopes(None, ImsgType::IMSG_CTL_RESUME_EVP, "resumed"),
        "resume envelope <msgid>" | "resume envelope <evpid>" => {
            do_envelopes(Some(arg(2)), ImsgType::IMSG_CTL_RESUME_EVP, "resumed")
        }
        "trace <str>" => srv_int_command(ImsgType::IMSG_CTL_TRACE_ENABLE, str_to_trace(arg(1))),
        "untrace <str>" => srv_int_command(ImsgType::IMSG_CTL_TRACE_DISABLE, str_to_trace(arg(1))),
        "profile <str>" => {
            srv_int_command(ImsgType::IMSG_CTL_PROFILE_ENABLE, str_to_profile(arg(1)))
        }
        "unprofile <str>" => {
            srv_int_command(ImsgType::IMSG_CTL_PROFILE_DISABLE, str_to_profile(arg(1)))
        }
        "encrypt" => super::encrypt::do_encrypt(None),
        "encrypt <str>" => super::encrypt::do_encrypt(Some(arg(1))),
        "spf walk" => super::spfwalk::spfwalk(),
        _ => {
            eprintln!(
                "smtpctl: {}: not implemented yet in this smtpd port",
                words.join(" ")
            );
            1
        }
    }
}

/// usage() of smtpctl.c, for each personality.
pub(crate) fn usage(name: &str) -> i32 {
    match name {
        "sendmail" | "send-mail" | "mailq" | "newaliases" | "makemap" => {
            eprintln!("usage: {name} [-tv] [-f from] [-F name] to ...");
        }
        _ => eprintln!("usage: {name} command [argument ...]"),
    }
    1
}

pub fn main(args: Vec<String>) -> i32 {
    // As a C program: a reader gone (`smtpctl show queue | head`) ends it
    // quietly, rather than as a failed write.
    let _ = crate::sys::event::signal_default(libc::SIGPIPE);
    let name = progname(args.first().map_or("smtpctl", String::as_str)).to_string();
    // sendmail_compat() (enqueue.rs).
    if matches!(name.as_str(), "sendmail" | "send-mail") {
        return super::enqueue::sendmail_compat(&args);
    }
    // As C's main: the set-group-ID group is for sendmail's offline
    // queue; no command here keeps it.
    if let Err(e) = setresgid(getgid()) {
        errx(&format!("setresgid: {}", crate::util::log::strerror(&e)));
    }
    match name.as_str() {
        "mailq" => return cmd_run(&["show".to_string(), "queue".to_string()]),
        "smtpctl" => {}
        _ => errx("unsupported mode"),
    }
    let words = &args[1..];
    if words.is_empty() {
        return usage(&name);
    }
    cmd_run(words)
}
