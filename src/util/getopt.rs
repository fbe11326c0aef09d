//! getopt(3), for the command lines of smtpd, smtpctl and sendmail: short
//! options, clustered (`-dv`), arguments attached or separate (`-fFILE`,
//! `-f FILE`), optional arguments (`x::`, attached only: `-xARG`), `--`
//! ends options, and the first operand ends them too, as POSIX (and
//! OpenBSD's getopt) do.

/// One parsed option, or a mistake getopt(3) reports with `?`.
#[derive(Debug, PartialEq, Eq)]
pub enum Opt {
    Flag(char, Option<String>),
    /// An option letter not in the specification.
    Unknown(char),
    /// An option that takes an argument, at the end of the line.
    MissingArg(char),
}

pub struct Getopt<'a> {
    args: &'a [String],
    spec: &'static str,
    /// Index of the next argument (optind).
    pub optind: usize,
    /// Position inside a cluster of options.
    pos: usize,
}

impl<'a> Getopt<'a> {
    /// `args` includes the program name, as argv does.
    pub fn new(args: &'a [String], spec: &'static str) -> Self {
        Getopt {
            args,
            spec,
            optind: 1,
            pos: 0,
        }
    }

    /// The operands left after the options.
    pub fn operands(&self) -> &'a [String] {
        &self.args[self.optind.min(self.args.len())..]
    }

    fn takes_arg(&self, c: char) -> Option<Arg> {
        let i = self.spec.find(c)?;
        let rest = &self.spec[i + c.len_utf8()..];
        Some(if rest.starts_with("::") {
            Arg::Optional
        } else if rest.starts_with(':') {
            Arg::Required
        } else {
            Arg::None
        })
    }
}

/// What an option letter of the specification takes.
enum Arg {
    None,
    Required,
    /// `x::`, an extension of OpenBSD's and GNU's getopt: an argument
    /// only when attached to the letter.
    Optional,
}

impl Iterator for Getopt<'_> {
    type Item = Opt;

    fn next(&mut self) -> Option<Opt> {
        let arg = self.args.get(self.optind)?;
        if self.pos == 0 {
            if arg == "--" {
                self.optind += 1;
                return None;
            }
            if !arg.starts_with('-') || arg == "-" {
                return None;
            }
            self.pos = 1;
        }
        let c = arg[self.pos..].chars().next()?;
        self.pos += c.len_utf8();
        let at_end = self.pos >= arg.len();
        let takes = match self.takes_arg(c) {
            Some(t) if c != ':' => t,
            _ => {
                if at_end {
                    self.optind += 1;
                    self.pos = 0;
                }
                return Some(Opt::Unknown(c));
            }
        };
        if matches!(takes, Arg::None) || (matches!(takes, Arg::Optional) && at_end) {
            if at_end {
                self.optind += 1;
                self.pos = 0;
            }
            return Some(Opt::Flag(c, None));
        }
        let value = if !at_end {
            Some(arg[self.pos..].to_string())
        } else {
            self.optind += 1;
            self.args.get(self.optind).cloned()
        };
        self.optind += 1;
        self.pos = 0;
        Some(match value {
            Some(v) => Opt::Flag(c, Some(v)),
            None => Opt::MissingArg(c),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        std::iter::once("prog")
            .chain(s.split_whitespace())
            .map(String::from)
            .collect()
    }

    #[test]
    fn clusters_attached_and_separate_arguments() {
        let a = args("-dv -fconf -D x=1 -x lka rest");
        let mut g = Getopt::new(&a, "B:dD:hnP:f:FT:vx:");
        let got: Vec<Opt> = g.by_ref().collect();
        assert_eq!(
            got,
            [
                Opt::Flag('d', None),
                Opt::Flag('v', None),
                Opt::Flag('f', Some("conf".into())),
                Opt::Flag('D', Some("x=1".into())),
                Opt::Flag('x', Some("lka".into())),
            ]
        );
        assert_eq!(g.operands(), ["rest"]);
    }

    #[test]
    fn optional_arguments_are_taken_only_when_attached() {
        let a = args("-Ebody -E -J x");
        let mut g = Getopt::new(&a, "E::J::");
        let got: Vec<Opt> = g.by_ref().collect();
        assert_eq!(
            got,
            [
                Opt::Flag('E', Some("body".into())),
                Opt::Flag('E', None),
                Opt::Flag('J', None),
            ]
        );
        assert_eq!(g.operands(), ["x"]);
    }

    #[test]
    fn mistakes_and_double_dash() {
        let a = args("-q -f");
        let got: Vec<Opt> = Getopt::new(&a, "f:").collect();
        assert_eq!(got, [Opt::Unknown('q'), Opt::MissingArg('f')]);
        let a = args("-- -d");
        let mut g = Getopt::new(&a, "d");
        assert_eq!(g.next(), None);
        assert_eq!(g.operands(), ["-d"]);
    }
}
