//! ruleset.c: which `match` rule an envelope falls under (OpenSMTPD
//! ruleset.c 1.48). Rules are tried in order and the first whose every
//! criterion holds wins; a criterion that cannot be decided (a lookup
//! error) stops the walk with a temporary failure.
//!
//! C reads the configuration from its global `env`; ruleset_match_conf()
//! takes it as a parameter, so that tests need no global, and
//! ruleset_match() passes env().

use crate::config::config::{env, Rule, Smtpd};
use crate::queue::envelope::{Envelope, EnvelopeFlags};
use crate::table::table::{table_find, table_match, TableService};
use crate::util::log::TRACE_RULES;
use crate::util::to::{mailaddr_to_text, rule_to_text, ss_to_text};

/// The envelope flag of a message received under TLS. OpenSMTPD 7.8's
/// envelope has none, which is why its `match tls` always tempfails; we
/// implement the criterion (DESIGN.md §5) on 0x08, the bit C leaves free
/// between EF_INTERNAL and EF_PENDING, until envelope.rs defines it.
pub const EF_SECURE: EnvelopeFlags = EnvelopeFlags::from_bits_retain(0x08);

/// ruleset_match() could not decide: a table lookup failed (C returns
/// NULL with errno EAGAIN). The envelope must be tempfailed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tempfail;

/// A criterion's verdict: C's 1 / 0 / -1.
type MatchResult = Result<bool, Tempfail>;

/// MATCH_RESULT(): a lookup's answer turned by the criterion's negation.
fn match_result(r: MatchResult, neg: i8) -> MatchResult {
    r.map(|r| if neg < 0 { !r } else { r })
}

/// table_match() of the rule's table `name`: a lookup error, or a table
/// that is not there (C would crash on it; the parser never lets it
/// happen), cannot decide.
fn ruleset_table_match(
    conf: &Smtpd,
    name: Option<&str>,
    service: TableService,
    key: &str,
) -> MatchResult {
    let Some(table) = name.and_then(|n| table_find(conf, n)) else {
        log_warnx!(
            "warn: ruleset: table {} not found",
            name.unwrap_or("(none)")
        );
        return Err(Tempfail);
    };
    table_match(conf, table, service, key).map_err(|_| Tempfail)
}

fn ruleset_match_tag(conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_tag == 0 {
        return Ok(true);
    }
    let service = if r.flag_tag_regex {
        TableService::K_REGEX
    } else {
        TableService::K_STRING
    };
    let ret = ruleset_table_match(conf, r.table_tag.as_deref(), service, &evp.tag);
    match_result(ret, r.flag_tag)
}

/// `from`: the session's address (`local` for the Unix socket) against
/// the table, or its reverse DNS name. Envelopes made by an expansion
/// come from `local`. Negation does not turn the cases C decides before
/// any lookup (no reverse name, an internal envelope and no table).
fn ruleset_match_from(conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_from == 0 {
        return Ok(true);
    }
    let key = if evp.flags.contains(EnvelopeFlags::EF_INTERNAL) {
        // Expanded from an empty table_from (from socket, from rdns):
        // the rule cannot apply.
        if r.table_from.is_none() {
            return Ok(false);
        }
        "local".to_string()
    } else if r.flag_from_rdns {
        let has_rdns = evp.hostname != "<unknown>";
        if r.table_from.is_none() {
            return match_result(Ok(has_rdns), r.flag_from);
        }
        if !has_rdns {
            return Ok(false);
        }
        evp.hostname.clone()
    } else {
        let key = ss_to_text(&evp.ss);
        if r.flag_from_socket {
            if key == "local" {
                return match_result(Ok(true), r.flag_from);
            }
            return Ok(r.flag_from < 0);
        }
        key
    };
    // `from rdns <table>` looks names up as network addresses, as in
    // C: only table_netaddr_match's case-insensitive equality can match.
    let service = if r.flag_from_regex {
        TableService::K_REGEX
    } else {
        TableService::K_NETADDR
    };
    let ret = ruleset_table_match(conf, r.table_from.as_deref(), service, &key);
    match_result(ret, r.flag_from)
}

fn ruleset_match_to(conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_for == 0 {
        return Ok(true);
    }
    let service = if r.flag_for_regex {
        TableService::K_REGEX
    } else {
        TableService::K_DOMAIN
    };
    let ret = ruleset_table_match(conf, r.table_for.as_deref(), service, &evp.dest.domain);
    match_result(ret, r.flag_for)
}

fn ruleset_match_smtp_helo(conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_smtp_helo == 0 {
        return Ok(true);
    }
    let service = if r.flag_smtp_helo_regex {
        TableService::K_REGEX
    } else {
        TableService::K_DOMAIN
    };
    let ret = ruleset_table_match(conf, r.table_smtp_helo.as_deref(), service, &evp.helo);
    match_result(ret, r.flag_smtp_helo)
}

/// `tls`: whether the message came in under TLS. OpenSMTPD 7.8 returns
/// -1 here ("not until TLS flag is added to envelope"), so that any rule
/// with `tls` or `!tls` tempfails every envelope it is tried on; we
/// decide it from the envelope's EF_SECURE.
fn ruleset_match_smtp_starttls(_conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_smtp_starttls == 0 {
        return Ok(true);
    }
    match_result(Ok(evp.flags.contains(EF_SECURE)), r.flag_smtp_starttls)
}

/// `auth`: the session authenticated, and with a table, as one of its
/// users (a user name with an `@` is looked up as an address).
fn ruleset_match_smtp_auth(conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_smtp_auth == 0 {
        return Ok(true);
    }
    let ret = if !evp.flags.contains(EnvelopeFlags::EF_AUTHENTICATED) {
        Ok(false)
    } else if let Some(table) = r.table_smtp_auth.as_deref() {
        let service = if r.flag_smtp_auth_regex {
            TableService::K_REGEX
        } else if evp.username.contains('@') {
            TableService::K_MAILADDR
        } else {
            TableService::K_STRING
        };
        ruleset_table_match(conf, Some(table), service, &evp.username)
    } else {
        Ok(true)
    };
    match_result(ret, r.flag_smtp_auth)
}

fn ruleset_match_smtp_mail_from(conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_smtp_mail_from == 0 {
        return Ok(true);
    }
    let service = if r.flag_smtp_mail_from_regex {
        TableService::K_REGEX
    } else {
        TableService::K_MAILADDR
    };
    let Some(key) = mailaddr_to_text(&evp.sender) else {
        return Err(Tempfail);
    };
    let ret = ruleset_table_match(conf, r.table_smtp_mail_from.as_deref(), service, &key);
    match_result(ret, r.flag_smtp_mail_from)
}

fn ruleset_match_smtp_rcpt_to(conf: &Smtpd, r: &Rule, evp: &Envelope) -> MatchResult {
    if r.flag_smtp_rcpt_to == 0 {
        return Ok(true);
    }
    let service = if r.flag_smtp_rcpt_to_regex {
        TableService::K_REGEX
    } else {
        TableService::K_MAILADDR
    };
    let Some(key) = mailaddr_to_text(&evp.dest) else {
        return Err(Tempfail);
    };
    let ret = ruleset_table_match(conf, r.table_smtp_rcpt_to.as_deref(), service, &key);
    match_result(ret, r.flag_smtp_rcpt_to)
}

/// The criteria in the order C evaluates them (auth before tls); the
/// first that fails or cannot decide ends the rule.
const CRITERIA: [fn(&Smtpd, &Rule, &Envelope) -> MatchResult; 8] = [
    ruleset_match_tag,
    ruleset_match_from,
    ruleset_match_to,
    ruleset_match_smtp_helo,
    ruleset_match_smtp_auth,
    ruleset_match_smtp_starttls,
    ruleset_match_smtp_mail_from,
    ruleset_match_smtp_rcpt_to,
];

/// ruleset_match(): the first rule of the configuration (env()) that
/// `evp` matches; see ruleset_match_conf().
pub fn ruleset_match(evp: &Envelope) -> Result<Option<(usize, &'static Rule)>, Tempfail> {
    ruleset_match_conf(env(), evp)
}

/// ruleset_match() on `conf`: the first rule `evp` matches, with its
/// index in `sc_rules` (C's traces number rules from 1), `Ok(None)` when
/// none does, `Err(Tempfail)` when a criterion could not be decided. A
/// matching `reject` rule is returned like any other: the caller refuses.
pub fn ruleset_match_conf<'a>(
    conf: &'a Smtpd,
    evp: &Envelope,
) -> Result<Option<(usize, &'a Rule)>, Tempfail> {
    'rules: for (i, r) in conf.sc_rules.iter().enumerate() {
        for criterion in CRITERIA {
            match criterion(conf, r, evp) {
                Ok(true) => {}
                Ok(false) => continue 'rules,
                Err(Tempfail) => {
                    log_trace!(TRACE_RULES, "temporary failure in processing of a rule");
                    return Err(Tempfail);
                }
            }
        }
        log_trace!(TRACE_RULES, "rule #{} matched: {}", i + 1, rule_to_text(r));
        return Ok(Some((i, r)));
    }
    log_trace!(TRACE_RULES, "no rule matched");
    Ok(None)
}

#[cfg(test)]
mod tests;
