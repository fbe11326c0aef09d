//! parser.c: smtpctl's command grammar (OpenSMTPD parser.c 1.42).
//!
//! The commands are installed as patterns of words, a tree of nodes that
//! share their prefixes; a word of a command line matches a node exactly,
//! or as the one token of its level it abbreviates (`sh q` is `show
//! queue`), or as the parameter a `<...>` node takes. A line that leads
//! nowhere gets C's message: the possibilities at the point it stopped,
//! or "invalid command".

use std::net::IpAddr;

/// The kinds of node (P_TOKEN and the parameter types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeType {
    Token,
    Str,
    Int,
    Msgid,
    Evpid,
    Routeid,
    Addr,
}

/// struct node: a word of the patterns, its followers, and the pattern
/// that ends here if any (C's cmd).
#[derive(Debug)]
struct Node {
    type_: NodeType,
    token: &'static str,
    children: Vec<usize>,
    cmd: Option<&'static str>,
}

/// The tree (C's root and what hangs from it); node 0 is the root.
#[derive(Debug)]
pub struct Parser {
    nodes: Vec<Node>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            nodes: vec![Node {
                type_: NodeType::Token,
                token: "",
                children: Vec::new(),
                cmd: None,
            }],
        }
    }
}

/// What a command line matched: the pattern, and the line's words with
/// each abbreviation written out.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched {
    pub pattern: &'static str,
    pub words: Vec<String>,
}

impl Parser {
    /// cmd_install(): adds `pattern`; a pattern given twice is a bug.
    pub fn cmd_install(&mut self, pattern: &'static str) {
        let mut node = 0;
        for word in pattern.split([' ', '\t']).filter(|w| !w.is_empty()) {
            let found = self.nodes[node]
                .children
                .iter()
                .copied()
                .find(|&c| self.nodes[c].token == word);
            node = match found {
                Some(c) => c,
                None => self.node_add(node, word),
            };
        }
        if self.nodes[node].cmd.is_some() {
            panic!("duplicate pattern: {pattern}");
        }
        self.nodes[node].cmd = Some(pattern);
    }

    fn node_add(&mut self, parent: usize, word: &'static str) -> usize {
        let type_ = match word {
            "<str>" => NodeType::Str,
            "<int>" => NodeType::Int,
            "<msgid>" => NodeType::Msgid,
            "<evpid>" => NodeType::Evpid,
            "<routeid>" => NodeType::Routeid,
            "<addr>" => NodeType::Addr,
            _ => NodeType::Token,
        };
        self.nodes.push(Node {
            type_,
            token: word,
            children: Vec::new(),
            cmd: None,
        });
        let n = self.nodes.len() - 1;
        self.nodes[parent].children.push(n);
        n
    }

    /// cmd_run()'s matching: the pattern `argv` names, or what C prints
    /// on standard error when it names none.
    pub fn cmd_match(&self, argv: &[String]) -> Result<Matched, String> {
        let mut node = 0;
        let mut stack = Vec::new();
        let mut words = Vec::new();
        for arg in argv {
            let children = &self.nodes[node].children;
            let next = children
                .iter()
                .copied()
                .find(|&c| cmd_check(arg, &self.nodes[c]))
                .or_else(|| self.cmd_abbrev(node, arg));
            let Some(next) = next else {
                return Err(self.cmd_fail(node, &stack));
            };
            node = next;
            stack.push(node);
            words.push(match self.nodes[node].type_ {
                NodeType::Token => self.nodes[node].token.to_string(),
                _ => arg.clone(),
            });
        }
        match self.nodes[node].cmd {
            Some(pattern) => Ok(Matched { pattern, words }),
            None => Err(self.cmd_fail(node, &stack)),
        }
    }

    /// The one token among `node`'s followers that `arg` begins; none
    /// when no token or several do.
    fn cmd_abbrev(&self, node: usize, arg: &str) -> Option<usize> {
        let mut best = None;
        for &c in &self.nodes[node].children {
            let n = &self.nodes[c];
            if n.type_ != NodeType::Token || !n.token.starts_with(arg) {
                continue;
            }
            if best.is_some() {
                return None;
            }
            best = Some(c);
        }
        best
    }

    /// cmd_run()'s `fail`: the nodes that led to `node` (their tokens, a
    /// parameter as its `<...>`), followed by each of its possibilities;
    /// "invalid command" where nothing can follow.
    fn cmd_fail(&self, node: usize, stack: &[usize]) -> String {
        let children = &self.nodes[node].children;
        if children.is_empty() {
            return "invalid command\n".to_string();
        }
        let mut out = String::from("possibilities are:\n");
        for &c in children {
            for &n in stack {
                out.push_str(self.nodes[n].token);
                out.push(' ');
            }
            out.push_str(self.nodes[c].token);
            out.push('\n');
        }
        out
    }
}

/// cmd_check(): whether `arg` is what `node` takes. Ids are exactly 8 or
/// 16 hexadecimal digits and never zero, as C's.
fn cmd_check(arg: &str, node: &Node) -> bool {
    match node.type_ {
        NodeType::Token => arg == node.token,
        NodeType::Str => true,
        NodeType::Int => arg.parse::<i32>().is_ok(),
        NodeType::Msgid => arg.len() == 8 && hex_id(arg) != 0,
        NodeType::Evpid => arg.len() == 16 && hex_id(arg) != 0,
        NodeType::Routeid => arg
            .parse::<u64>()
            .is_ok_and(|id| id >= 1 && id <= i64::MAX as u64),
        NodeType::Addr => text_to_addr(arg),
    }
}

/// text_to_msgid() and text_to_evpid(): the id in hexadecimal, 0 when
/// it is not one.
fn hex_id(arg: &str) -> u64 {
    if !arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return 0;
    }
    u64::from_str_radix(arg, 16).unwrap_or(0)
}

/// text_to_sockaddr() with PF_UNSPEC: an IPv4 or IPv6 address, the
/// latter possibly with a `%scope`.
fn text_to_addr(arg: &str) -> bool {
    let addr = arg.split_once('%').map_or(arg, |(a, _)| a);
    addr.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Parser {
        let mut p = Parser::default();
        for pattern in [
            "show queue",
            "show queue <msgid>",
            "show stats",
            "show status",
            "schedule <msgid>",
            "schedule <evpid>",
            "schedule all",
            "resume route <routeid>",
            "pause mta from <addr> for <str>",
            "log brief",
            "log verbose",
        ] {
            p.cmd_install(pattern);
        }
        p
    }

    fn run(p: &Parser, line: &str) -> Result<Matched, String> {
        let argv: Vec<String> = line.split(' ').map(str::to_string).collect();
        p.cmd_match(&argv)
    }

    #[test]
    fn exact_words_and_parameters_match() {
        let p = parser();
        let m = run(&p, "schedule 0123abcd").unwrap();
        assert_eq!(m.pattern, "schedule <msgid>");
        assert_eq!(m.words, ["schedule", "0123abcd"]);
        let m = run(&p, "schedule 0123abcd00000001").unwrap();
        assert_eq!(m.pattern, "schedule <evpid>");
        assert_eq!(run(&p, "schedule all").unwrap().pattern, "schedule all");
        assert_eq!(
            run(&p, "pause mta from ::1%lo for example.org")
                .unwrap()
                .pattern,
            "pause mta from <addr> for <str>"
        );
        assert_eq!(
            run(&p, "resume route 42").unwrap().pattern,
            "resume route <routeid>"
        );
    }

    #[test]
    fn a_unique_prefix_stands_for_its_token() {
        let p = parser();
        let m = run(&p, "sh q").unwrap();
        assert_eq!(m.pattern, "show queue");
        assert_eq!(m.words, ["show", "queue"]);
        assert_eq!(run(&p, "l v").unwrap().pattern, "log verbose");
        assert_eq!(run(&p, "sched a").unwrap().words, ["schedule", "all"]);
        // "st" begins both stats and status.
        assert_eq!(
            run(&p, "show st").unwrap_err(),
            "possibilities are:\nshow queue\nshow stats\nshow status\n"
        );
    }

    #[test]
    fn ids_of_the_wrong_length_or_zero_match_nothing() {
        let p = parser();
        for bad in [
            "schedule 123",
            "schedule 00000000",
            "schedule 0000000000000000",
            "schedule 0123abcg",
        ] {
            assert_eq!(
                run(&p, bad).unwrap_err(),
                "possibilities are:\nschedule <msgid>\nschedule <evpid>\nschedule all\n",
                "{bad}"
            );
        }
        assert!(run(&p, "resume route 0").is_err());
        assert!(run(&p, "pause mta from example.org for x").is_err());
    }

    #[test]
    fn an_incomplete_or_unknown_line_lists_what_could_follow() {
        let p = parser();
        assert_eq!(
            run(&p, "show").unwrap_err(),
            "possibilities are:\nshow queue\nshow stats\nshow status\n"
        );
        assert_eq!(
            run(&p, "frobnicate").unwrap_err(),
            "possibilities are:\nshow\nschedule\nresume\npause\nlog\n"
        );
        assert_eq!(run(&p, "log brief now").unwrap_err(), "invalid command\n");
    }

    #[test]
    #[should_panic(expected = "duplicate pattern")]
    fn a_pattern_twice_is_a_bug() {
        let mut p = parser();
        p.cmd_install("show stats");
    }
}
