//! `sql_injection`: SQL-injection shapes (OWASP "SQL Injection Prevention Cheat Sheet";
//! CWE-89) in the decoded, lower-cased target.
//!
//! Words alone never match: `select your favourite song`, `union station`, `drop the bass`
//! and `order by popularity` are searches. What matches is SQL *structure*: `union select`,
//! a stacked statement after `;`, timing and file functions, comments used as whitespace,
//! a quote that closes a string and continues with `or`/`and` and a comparison, a boolean
//! tautology (`or 1=1`), or a quote followed by a comment that cuts the rest of the query.

use memchr::memmem;

use super::needles::Needles;
use super::target::contains;

pub(super) const SIGNATURES: &[&str] = &[
    "union select",
    "union all select",
    "union distinct select",
    "union(select",
    "union (select",
    "select * from",
    "and (select",
    "and(select",
    "or (select",
    "or(select",
    "=(select",
    "in (select",
    "in(select",
    "information_schema",
    "sleep(",
    "benchmark(",
    "waitfor delay",
    "waitfor time",
    "load_file(",
    "into outfile",
    "into dumpfile",
    "@@version",
    "@@datadir",
    "xp_cmdshell",
    "sp_executesql",
    "sp_oacreate",
    "exec master",
    "extractvalue(",
    "updatexml(",
    "group_concat(",
    "concat(0x",
    "dbms_pipe.",
    "utl_http.",
    "utl_inaddr.",
    "sysobjects",
    "mysql.user",
    "pg_shadow",
    "sqlite_master",
    "; drop table",
    ";drop table",
    "; drop database",
    ";drop database",
    "; delete from",
    ";delete from",
    "; insert into",
    ";insert into",
    "; truncate table",
    ";truncate table",
    "; alter table",
    ";alter table",
    "; create table",
    "; exec ",
    ";exec ",
    "; shutdown",
    ";shutdown",
    "; declare @",
    ";declare @",
    "/**/",
    "/*!",
];

pub(super) fn find(canonical: &[u8], signatures: &Needles) -> Option<&'static str> {
    if let Some(sig) = signatures.find(canonical) {
        return Some(sig);
    }
    if contains(canonical, b"/*") {
        // `union/*x*/select`: comments act as whitespace.
        let stripped = strip_comments(canonical);
        if let Some(sig) = signatures.find(&stripped) {
            return Some(sig);
        }
    }
    if quote_then_logic(canonical) {
        return Some("quote then OR/AND comparison");
    }
    if tautology(canonical) {
        return Some("boolean tautology");
    }
    if quote_then_comment(canonical) {
        return Some("quote then comment");
    }
    if order_by_probe(canonical) {
        return Some("order by column probe");
    }
    None
}

const QUOTES: &[u8] = b"'\"`";

/// Positions of the quote characters in `s`.
fn quotes(s: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr3_iter(b'\'', b'"', b'`', s)
}
/// How far past a keyword a comparison is looked for.
const SCOPE: usize = 80;

/// `/* ... */` replaced by a space (an unterminated comment runs to the end).
fn strip_comments(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"/*") {
            let end = memmem::find(&s[i + 2..], b"*/").map_or(s.len(), |p| i + 2 + p + 2);
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
            i = end;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The rest of one query value from `at`: up to a lone `&` (`&&` is SQL), at most `SCOPE`.
fn value_from(s: &[u8], at: usize) -> &[u8] {
    let rest = s.get(at..).unwrap_or_default();
    let rest = &rest[..rest.len().min(SCOPE)];
    let mut end = rest.len();
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'&' {
            if rest.get(i + 1) == Some(&b'&') {
                i += 2;
                continue;
            }
            end = i;
            break;
        }
        i += 1;
    }
    &rest[..end]
}

/// A logical keyword at `at`, and where it ends. Word keywords must be followed by
/// something that can start an operand.
fn logic_keyword(s: &[u8], at: usize) -> Option<usize> {
    let rest = s.get(at..)?;
    for kw in [&b"||"[..], b"&&"] {
        if rest.starts_with(kw) {
            return Some(at + 2);
        }
    }
    for kw in [&b"or"[..], b"and", b"xor", b"having"] {
        if rest.starts_with(kw) {
            let next = rest.get(kw.len()).copied();
            if matches!(
                next,
                Some(b' ' | b'(' | b'\'' | b'"' | b'-' | b'!' | b'@' | b'0'..=b'9')
            ) {
                return Some(at + kw.len());
            }
        }
    }
    None
}

fn has_comparison(value: &[u8]) -> bool {
    value.iter().any(|b| matches!(b, b'=' | b'<' | b'>'))
        || [&b" regexp "[..], b" rlike ", b" in("]
            .iter()
            .any(|w| contains(value, w))
}

/// `' or 'a'='a`, `") or ("x"="x`, `'or'1'='1`, `' || 1=1`: a quote, optional `)`, a
/// logical keyword, and a comparison later in the same value.
fn quote_then_logic(s: &[u8]) -> bool {
    quotes(s).any(|i| {
        let mut j = i + 1;
        while matches!(s.get(j), Some(b' ' | b')')) {
            j += 1;
        }
        logic_keyword(s, j).is_some_and(|end| has_comparison(value_from(s, end)))
    })
}

/// An operand: digits, or a short quoted literal. Returns where it ends.
fn operand(s: &[u8], at: usize) -> Option<usize> {
    let rest = s.get(at..)?;
    match rest.first()? {
        b'0'..=b'9' => Some(at + rest.iter().take_while(|b| b.is_ascii_digit()).count()),
        q @ (b'\'' | b'"') => {
            let close = rest.iter().skip(1).take(20).position(|b| b == q)?;
            Some(at + close + 2)
        }
        _ => None,
    }
}

/// ` or 1=1`, ` and 1=2`, ` or 'a'='a'`, ` having 1=1`: a logical keyword after a word
/// boundary and a comparison of two literals.
fn tautology(s: &[u8]) -> bool {
    if memchr::memchr3(b'=', b'<', b'>', s).is_none() {
        return false;
    }
    // Where a keyword (`or`, `and`, `xor`, `having`, `||`, `&&`) can start.
    let starts =
        memchr::memchr3_iter(b'o', b'a', b'x', s).chain(memchr::memchr3_iter(b'h', b'|', b'&', s));
    starts.filter(|&i| i > 0).any(|i| {
        if s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' {
            return false;
        }
        let Some(mut j) = logic_keyword(s, i) else {
            return false;
        };
        while s.get(j) == Some(&b' ') {
            j += 1;
        }
        let Some(mut j) = operand(s, j) else {
            return false;
        };
        while s.get(j) == Some(&b' ') {
            j += 1;
        }
        let op = s.get(j..).unwrap_or_default();
        let op_len = [&b"<>"[..], b"!=", b">=", b"<=", b"=", b"<", b">"]
            .iter()
            .find(|o| op.starts_with(o))
            .map(|o| o.len());
        let Some(op_len) = op_len else {
            return false;
        };
        let mut k = j + op_len;
        while s.get(k) == Some(&b' ') {
            k += 1;
        }
        operand(s, k).is_some()
    })
}

/// `admin'--`, `x' -- `, `x')#`, `1'/*`: a quote closing a string, then a comment that cuts
/// off the rest of the statement; or a value with a quote that ends in `--` glued to a word
/// (`x' order by 3--`). `don't -- stop` and `-- the end --` stay ordinary text.
fn quote_then_comment(s: &[u8]) -> bool {
    let after_quote = quotes(s).any(|i| {
        let mut j = i + 1;
        while matches!(s.get(j), Some(b' ' | b')')) {
            j += 1;
        }
        let rest = s.get(j..).unwrap_or_default();
        (rest.starts_with(b"--") && matches!(rest.get(2), None | Some(b' ' | b'-' | b'&')))
            || (rest.starts_with(b"#") && matches!(rest.get(1), None | Some(b' ' | b'&')))
            || rest.starts_with(b"/*")
    });
    after_quote || glued_trailing_comment(s)
}

fn glued_trailing_comment(s: &[u8]) -> bool {
    memmem::find_iter(s, b"--").any(|i| {
        if i == 0 || matches!(s[i - 1], b' ' | b'-' | b'=') {
            return false;
        }
        if !matches!(s.get(i + 2), None | Some(b' ' | b'-' | b'&')) {
            return false;
        }
        let start = s[..i]
            .iter()
            .rposition(|b| matches!(b, b'=' | b'?' | b'&' | b'/'))
            .map_or(0, |p| p + 1);
        s[start..i].iter().any(|b| QUOTES.contains(b))
    })
}

/// `order by 9--`, `order by 10#`: probing the column count before a `union select`.
fn order_by_probe(s: &[u8]) -> bool {
    memmem::find_iter(s, b"order by ").any(|pos| {
        let at = pos + 9;
        let digits = s[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        let mut j = at + digits;
        while s.get(j) == Some(&b' ') {
            j += 1;
        }
        let rest = s.get(j..).unwrap_or_default();
        rest.starts_with(b"--") || rest.starts_with(b"#") || rest.starts_with(b"/*")
    })
}
