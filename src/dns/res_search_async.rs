//! res_search_async.c: the search-domain strategy (libasr
//! res_search_async.c). smtpd never calls res_search_async() itself; its
//! getaddrinfo walks the domains with _asr_iter_domain(), which lives in
//! this file in C and so lives here.

use bitflags::bitflags;

use super::asr::{asr_make_fqdn, AsrCtx, ResOptions};

bitflags! {
    /// How the last name was formed (ASYNC_DOM_*).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct DomFlags: u32 {
        const FQDN = 0x1;
        const NDOTS = 0x2;
        const DOMAIN = 0x4;
        const ASIS = 0x8;
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum DomStep {
    #[default]
    Init,
    Domain,
    Done,
}

/// The iteration state C keeps in the query (as_dom_step, as_dom_idx,
/// as_dom_flags).
#[derive(Clone, Debug, Default)]
pub struct DomIter {
    step: DomStep,
    idx: usize,
    pub flags: DomFlags,
}

/// What the next step of the iteration gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IterDomain {
    /// A name to look up, without its final dot.
    Name(String),
    /// The name cannot be completed (too long).
    Error,
    /// Every possibility was tried.
    Done,
}

/// domcat(): `name` completed with `domain`, without the final dot.
fn domcat(name: &str, domain: Option<&str>) -> IterDomain {
    match asr_make_fqdn(name, domain) {
        Some(mut f) => {
            f.pop();
            IterDomain::Name(f)
        }
        None => IterDomain::Error,
    }
}

impl DomIter {
    pub fn new() -> DomIter {
        DomIter::default()
    }

    /// _asr_iter_domain(): the names to try for `name`, one per call. A
    /// name with a final dot is tried alone. A name with at least ndots
    /// dots is tried as it is first; then it is tried in each search
    /// domain; then as it is, if it was not already.
    pub fn asr_iter_domain(&mut self, ac: &AsrCtx, name: &str) -> IterDomain {
        if self.step == DomStep::Init {
            if name.ends_with('.') {
                self.flags |= DomFlags::FQDN;
                self.step = DomStep::Done;
                return domcat(name, None);
            }
            self.step = DomStep::Domain;
            self.idx = 0;
            if name.matches('.').count() >= ac.ac_ndots {
                self.flags |= DomFlags::NDOTS;
                return IterDomain::Name(name.to_string());
            }
        }
        if self.step == DomStep::Domain {
            let search = ac.ac_options.contains(ResOptions::RES_DNSRCH)
                || (ac.ac_options.contains(ResOptions::RES_DEFNAMES)
                    && self.idx == 0
                    && !name.contains('.'));
            if self.idx < ac.ac_dom.len() && search {
                self.flags |= DomFlags::DOMAIN;
                self.idx += 1;
                return domcat(name, Some(&ac.ac_dom[self.idx - 1]));
            }
            self.step = DomStep::Done;
            if !self.flags.contains(DomFlags::NDOTS) {
                self.flags |= DomFlags::ASIS;
                return IterDomain::Name(name.to_string());
            }
        }
        IterDomain::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(conf: &str, name: &str) -> Vec<IterDomain> {
        let ac = AsrCtx::from_string(conf);
        let mut it = DomIter::new();
        let mut out = Vec::new();
        loop {
            let n = it.asr_iter_domain(&ac, name);
            out.push(n.clone());
            if n != IterDomain::Error && n != IterDomain::Done {
                continue;
            }
            return out;
        }
    }

    fn n(s: &str) -> IterDomain {
        IterDomain::Name(s.to_string())
    }

    #[test]
    fn a_fully_qualified_name_is_tried_alone() {
        let got = names("search a.example b.example\n", "host.example.");
        assert_eq!(got, [n("host.example"), IterDomain::Done]);
    }

    #[test]
    fn a_short_name_goes_through_the_search_list_then_as_is() {
        let got = names("search a.example b.example\n", "host");
        assert_eq!(
            got,
            [
                n("host.a.example"),
                n("host.b.example"),
                n("host"),
                IterDomain::Done
            ]
        );
    }

    #[test]
    fn a_name_with_enough_dots_is_tried_first_and_once() {
        let got = names("search a.example\noptions ndots:2\n", "mx.host.org");
        assert_eq!(
            got,
            [
                n("mx.host.org"),
                n("mx.host.org.a.example"),
                IterDomain::Done
            ]
        );
        let got = names("search a.example\noptions ndots:2\n", "host.org");
        assert_eq!(
            got,
            [n("host.org.a.example"), n("host.org"), IterDomain::Done]
        );
    }

    #[test]
    fn a_name_too_long_for_a_domain_is_an_error() {
        let long = "x".repeat(250);
        let got = names("search a.example\n", &long);
        assert_eq!(got, [IterDomain::Error]);
    }
}
