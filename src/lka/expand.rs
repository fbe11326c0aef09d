//! expand.c: the set of destinations a recipient expands to, without
//! duplicates, and the aliases(5) right-hand side parser that feeds it
//! (OpenSMTPD expand.c 1.32).
//!
//! C links heap nodes into a red-black tree ordered by expand_cmp() and
//! points from node to parent and to rule. Here an `Expand` owns its nodes
//! in a vector and they refer to each other by index: a node's `parent` is
//! the index of another node of the same `Expand` (C's parents always are
//! nodes of the tree being built), its `rule` the index of the rule in
//! `sc_rules`. The tree is a `BTreeMap` from a key that holds what
//! expand_cmp() compares.

use std::collections::{BTreeMap, VecDeque};

use crate::defines::LINE_MAX;
use crate::util::log::TRACE_EXPAND;
use crate::util::mailaddr::{mailaddr_line_split, Mailaddr};
use crate::util::to::{expandnode_to_text, text_to_expandnode};
use crate::util::util::strip;

/// enum expand_type, in C's order: expand_cmp() sorts by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExpandType {
    Invalid,
    Username,
    Filename,
    Filter,
    Include,
    Address,
    Error,
}

/// The union of struct expandnode: `user`/`buffer` (a user name, a file,
/// a command, an include path, an error) or `mailaddr`. Ordered as C's
/// memcmp of the union orders nodes of one type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExpandU {
    Text(String),
    Mailaddr(Mailaddr),
}

/// struct expandnode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpandNode {
    pub type_: ExpandType,
    pub sameuser: bool,
    pub realuser: bool,
    pub realuser_uid: u32,
    pub forwarded: bool,
    /// The rule it was expanded under: an index into `sc_rules`.
    pub rule: Option<usize>,
    /// The node it was expanded from: an index into the same `Expand`.
    pub parent: Option<usize>,
    pub depth: u32,
    pub u: ExpandU,
    pub subaddress: String,
}

impl ExpandNode {
    /// A node of `type_` holding `u`, everything else zero, as C's
    /// memset-then-fill builds them.
    pub fn new(type_: ExpandType, u: ExpandU) -> ExpandNode {
        ExpandNode {
            type_,
            sameuser: false,
            realuser: false,
            realuser_uid: 0,
            forwarded: false,
            rule: None,
            parent: None,
            depth: 0,
            u,
            subaddress: String::new(),
        }
    }

    /// `u.user` (or `u.buffer`, the same bytes): for an address, its user
    /// part, which is what C's union shows there.
    pub fn user(&self) -> &str {
        match &self.u {
            ExpandU::Text(t) => t,
            ExpandU::Mailaddr(m) => &m.user,
        }
    }

    /// `u.mailaddr`: for a user name node, the user and no domain, which
    /// is what C's union shows there (lka_session looks up virtual users
    /// that way).
    pub fn mailaddr(&self) -> Mailaddr {
        match &self.u {
            ExpandU::Text(t) => Mailaddr::new(t, ""),
            ExpandU::Mailaddr(m) => m.clone(),
        }
    }
}

/// What expand_cmp() compares, computed when a node enters the tree:
/// its type, flags and value, then whether it has a parent, the nearest
/// address above it, and for files and commands the nearest user above
/// it (its owner). Nodes with equal keys are one destination.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ExpandKey {
    type_: ExpandType,
    sameuser: bool,
    realuser: bool,
    u: ExpandU,
    has_parent: bool,
    address: Option<usize>,
    owner: Option<usize>,
}

/// struct expand.
#[derive(Clone, Debug, Default)]
pub struct Expand {
    /// Every node inserted, by index.
    nodes: Vec<ExpandNode>,
    /// C's expandtree.
    tree: BTreeMap<ExpandKey, usize>,
    /// C's optional `queue`: when set, the index of every node inserted
    /// is appended to it (lka_session's list of nodes to expand).
    pub queue: Option<VecDeque<usize>>,
    pub nb_nodes: usize,
    /// What expand_insert() gives the nodes it inserts.
    pub rule: Option<usize>,
    pub parent: Option<usize>,
}

impl Expand {
    /// An expand whose insertions are also queued (C's `expand->queue`).
    pub fn with_queue() -> Expand {
        Expand {
            queue: Some(VecDeque::new()),
            ..Expand::default()
        }
    }

    /// The node at `index`.
    pub fn node(&self, index: usize) -> Option<&ExpandNode> {
        self.nodes.get(index)
    }

    pub fn node_mut(&mut self, index: usize) -> Option<&mut ExpandNode> {
        self.nodes.get_mut(index)
    }

    /// The nodes in tree order (RB_FOREACH).
    pub fn iter(&self) -> impl Iterator<Item = &ExpandNode> {
        self.tree.values().map(|&i| &self.nodes[i])
    }

    /// The indexes of the nodes in tree order.
    pub fn indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.tree.values().copied()
    }

    /// The nearest node of `type_` from `from` up (from included).
    fn ancestor(&self, from: Option<usize>, type_: ExpandType) -> Option<usize> {
        let mut p = from;
        while let Some(i) = p {
            let n = self.nodes.get(i)?;
            if n.type_ == type_ {
                return Some(i);
            }
            p = n.parent;
        }
        None
    }

    /// expand_cmp()'s view of `node`. C walks up to an address without
    /// checking for the root (there always is one in lka_session); a
    /// chain without one is `None` here.
    fn key(&self, node: &ExpandNode) -> ExpandKey {
        let owner = match node.type_ {
            ExpandType::Filename | ExpandType::Filter => {
                self.ancestor(node.parent, ExpandType::Username)
            }
            _ => None,
        };
        ExpandKey {
            type_: node.type_,
            sameuser: node.sameuser,
            realuser: node.realuser,
            u: node.u.clone(),
            has_parent: node.parent.is_some(),
            address: self.ancestor(node.parent, ExpandType::Address),
            owner,
        }
    }
}

/// expand_lookup(): the index of the node equal to `key` under
/// expand_cmp(), if any.
pub fn expand_lookup(expand: &Expand, key: &ExpandNode) -> Option<usize> {
    expand.tree.get(&expand.key(key)).copied()
}

/// expand_to_text(): the nodes in tree order, separated by `, `; None if
/// that takes `sz` bytes or more (C's buffer).
pub fn expand_to_text(expand: &Expand, sz: usize) -> Option<String> {
    let mut buf = String::new();
    for xn in expand.iter() {
        if !buf.is_empty() {
            buf.push_str(", ");
        }
        buf.push_str(&expandnode_to_text(xn).unwrap_or_default());
        if buf.len() >= sz {
            return None;
        }
    }
    Some(buf)
}

/// expand_insert(): adds `node` under the expand's current rule and
/// parent unless an equal node is there already. A user name expanded
/// from the same user name is marked `sameuser` (a user forwarding to
/// itself). Returns the new node's index, None when it was a duplicate.
pub fn expand_insert(expand: &mut Expand, mut node: ExpandNode) -> Option<usize> {
    node.rule = expand.rule;
    node.parent = expand.parent;

    log_trace!(
        TRACE_EXPAND,
        "expand: {:p}: expand_insert() called for {}",
        expand,
        expandnode_info(&node).unwrap_or_default()
    );
    let parent = expand.parent.and_then(|p| expand.nodes.get(p));
    if node.type_ == ExpandType::Username
        && parent.is_some_and(|p| p.type_ == ExpandType::Username && p.user() == node.user())
    {
        log_trace!(TRACE_EXPAND, "expand: {:p}: setting sameuser = 1", expand);
        node.sameuser = true;
    }

    let key = expand.key(&node);
    if expand.tree.contains_key(&key) {
        log_trace!(TRACE_EXPAND, "expand: {:p}: node found, discarding", expand);
        return None;
    }

    node.depth = parent.map_or(0, |p| p.depth + 1);
    let index = expand.nodes.len();
    expand.nodes.push(node);
    expand.tree.insert(key, index);
    if let Some(queue) = &mut expand.queue {
        queue.push_back(index);
    }
    expand.nb_nodes += 1;
    log_trace!(TRACE_EXPAND, "expand: {:p}: inserted node #{index}", expand);
    Some(index)
}

/// expand_clear(): removes every node (and empties the queue). As in C,
/// `nb_nodes` and `rule` stay; `parent` is reset, since it would name a
/// node that is gone (C keeps the dangling pointer).
pub fn expand_clear(expand: &mut Expand) {
    log_trace!(TRACE_EXPAND, "expand: {:p}: clearing expand tree", expand);
    if let Some(queue) = &mut expand.queue {
        queue.clear();
    }
    expand.tree.clear();
    expand.nodes.clear();
    expand.parent = None;
}

/// expand_free().
pub fn expand_free(mut expand: Expand) {
    expand_clear(&mut expand);
    log_trace!(TRACE_EXPAND, "expand: {:p}: freeing expand tree", &expand);
}

/// expand_cmp(): how two nodes of `expand` (or about to enter it) order.
pub fn expand_cmp(expand: &Expand, e1: &ExpandNode, e2: &ExpandNode) -> std::cmp::Ordering {
    expand.key(e1).cmp(&expand.key(e2))
}

/// expand_line_split(): the splitter of mailaddr.c (OpenSMTPD has two
/// copies of it).
fn expand_line_split(line: &mut &str) -> Result<Option<String>, ()> {
    mailaddr_line_split(line)
}

/// expand_line(): inserts the items of the comma-separated aliases(5)
/// right-hand side `s`. `:include:` items are skipped unless
/// `do_includes`. False for a line of LINE_MAX bytes or more, an open
/// quote or escape, or an item that is none of the forms; the items
/// before a bad one stay inserted, as in C.
pub fn expand_line(expand: &mut Expand, s: &str, do_includes: bool) -> bool {
    if s.len() >= LINE_MAX {
        return false;
    }
    let mut p = s;
    loop {
        match expand_line_split(&mut p) {
            Err(()) => return false,
            Ok(None) => return true,
            Ok(Some(item)) => {
                let subrcpt = strip(&item);
                if subrcpt.is_empty() {
                    continue;
                }
                let Some(xn) = text_to_expandnode(subrcpt) else {
                    return false;
                };
                if !do_includes && xn.type_ == ExpandType::Include {
                    continue;
                }
                expand_insert(expand, xn);
            }
        }
    }
}

/// expandnode_info(): `type:value[parent=..., rule=...]` for traces. C
/// prints the parent, rule and dispatcher pointers; we print the indexes
/// of the parent node and the rule.
fn expandnode_info(e: &ExpandNode) -> Option<String> {
    let type_ = match e.type_ {
        ExpandType::Filter => "filter",
        ExpandType::Filename => "filename",
        ExpandType::Include => "include",
        ExpandType::Username => "username",
        ExpandType::Address => "address",
        ExpandType::Error => "error",
        ExpandType::Invalid => return None,
    };
    let value = expandnode_to_text(e)?;
    let index = |i: Option<usize>| i.map_or_else(|| "none".to_string(), |i| format!("#{i}"));
    Some(format!(
        "{type_}:{value}[parent={}, rule={}]",
        index(e.parent),
        index(e.rule)
    ))
}

#[cfg(test)]
mod tests;
