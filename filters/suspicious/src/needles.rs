//! A rule's fixed signatures, matched in one pass with an Aho-Corasick automaton (linear in
//! the input, whatever the number of signatures). The lists are short, so the automaton is a
//! DFA (fastest to search). Signatures are lower case; the request target is lower-cased
//! before matching, other inputs (the user agent) are matched ASCII case-insensitively.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// A list of lower-case signatures and the automaton built from it.
#[derive(Debug, Clone)]
pub(super) struct Needles {
    needles: &'static [&'static str],
    /// `None` only if the automaton could not be built (it cannot for these short constant
    /// lists); the slower plain scan then gives the same answers.
    automaton: Option<AhoCorasick>,
    case_insensitive: bool,
}

impl Needles {
    /// For input that is already lower case.
    pub(super) fn new(needles: &'static [&'static str]) -> Needles {
        Needles::build(needles, false)
    }

    /// For input in any case.
    pub(super) fn any_case(needles: &'static [&'static str]) -> Needles {
        Needles::build(needles, true)
    }

    fn build(needles: &'static [&'static str], case_insensitive: bool) -> Needles {
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(case_insensitive)
            .kind(Some(AhoCorasickKind::DFA))
            .match_kind(MatchKind::LeftmostFirst)
            .build(needles)
            .map_err(|e| {
                log::warn!("suspicious: signature automaton unavailable ({e}); using a plain scan")
            })
            .ok();
        Needles {
            needles,
            automaton,
            case_insensitive,
        }
    }

    /// The first signature found in `hay`.
    pub(super) fn find(&self, hay: &[u8]) -> Option<&'static str> {
        match &self.automaton {
            Some(ac) => ac
                .find(hay)
                .and_then(|m| self.needles.get(m.pattern().as_usize()).copied()),
            None => self.needles.iter().copied().find(|n| {
                hay.windows(n.len()).any(|w| {
                    w == n.as_bytes()
                        || (self.case_insensitive && w.eq_ignore_ascii_case(n.as_bytes()))
                })
            }),
        }
    }
}
