//! A span-aware walk over the parsed TOML document.
//!
//! serde stops at the first error; `--check` must report every error at once with its line.
//! So sections are read key by key: each read marks the key as known, a bad value records an
//! error and yields `None`, and `Section::finish` reports every key nobody asked for (unknown
//! keys are errors: a typo must never silently disable a security setting).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::error::{ConfigError, LineIndex, Location};
use crate::units::{self, Rate};

/// Collects errors and resolves `${ENV}` references.
pub(crate) struct Diag<'s> {
    file: String,
    lines: LineIndex<'s>,
    env: &'s dyn Fn(&str) -> Option<String>,
    pub(crate) errors: Vec<ConfigError>,
    /// Where every key that was read sits, by key path.
    pub(crate) locations: std::collections::BTreeMap<String, Location>,
}

impl<'s> Diag<'s> {
    pub(crate) fn new(
        file: &str,
        source: &'s str,
        env: &'s dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Diag {
            file: file.to_string(),
            lines: LineIndex::new(source),
            env,
            errors: Vec::new(),
            locations: Default::default(),
        }
    }

    pub(crate) fn location(&self, span: &Option<Range<usize>>, key: &str) -> Location {
        let (line, col) = span
            .as_ref()
            .map_or((1, 1), |s| self.lines.line_col(s.start));
        Location {
            file: self.file.clone(),
            line,
            col,
            key: key.to_string(),
        }
    }

    pub(crate) fn error(
        &mut self,
        span: &Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) {
        let at = self.location(span, key);
        self.errors.push(ConfigError {
            at,
            message: message.into(),
        });
    }

    /// Replaces every `${NAME}` with the environment variable NAME. An unset variable is an
    /// error naming it (secrets never have to live in the file, and must never be empty by
    /// accident).
    fn interpolate(&mut self, raw: &str, span: &Option<Range<usize>>, key: &str) -> Option<String> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        let mut ok = true;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.error(span, key, "`${` without a closing `}`");
                return None;
            };
            let name = &after[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    span,
                    key,
                    format!("`${{{name}}}` is not a valid environment variable reference"),
                );
                ok = false;
            } else {
                match (self.env)(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        self.error(span, key, format!("environment variable {name} is not set"));
                        ok = false;
                    }
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        ok.then_some(out)
    }
}

/// A table (`[x]`, `[[x]]` element or inline `{ ... }`) being read key by key.
pub(crate) struct Section<'a> {
    pub(crate) path: String,
    pub(crate) span: Option<Range<usize>>,
    table: &'a dyn TableLike,
    used: Vec<&'a str>,
}

impl<'a> Section<'a> {
    pub(crate) fn new(table: &'a dyn TableLike, path: String, span: Option<Range<usize>>) -> Self {
        // A [[routes]] element has no span of its own: point at its first key instead.
        let span = span.or_else(|| {
            table
                .iter()
                .next()
                .and_then(|(k, _)| table.key(k).and_then(|k| k.span()))
        });
        Section {
            path,
            span,
            table,
            used: Vec::new(),
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// The field named `key`, marking it as known. `None` when absent.
    pub(crate) fn get(&mut self, key: &'a str) -> Option<Field<'a>> {
        self.used.push(key);
        let (k, item) = self.table.get_key_value(key)?;
        let span = item.span().or_else(|| k.span());
        Some(Field {
            node: Node::Item(item),
            path: self.child_path(key),
            span,
            key_span: k.span(),
        })
    }

    /// Like `get`, and remembers where the key sits (for checks made after loading).
    pub(crate) fn get_located(&mut self, key: &'a str, d: &mut Diag) -> Option<Field<'a>> {
        let field = self.get(key)?;
        let at = d.location(
            &field.key_span.clone().or_else(|| field.span.clone()),
            &field.path,
        );
        d.locations.insert(field.path.clone(), at);
        Some(field)
    }

    /// Like `get`, but a missing key is an error.
    pub(crate) fn require(&mut self, key: &'a str, d: &mut Diag) -> Option<Field<'a>> {
        let field = self.get(key);
        if field.is_none() {
            let path = self.child_path(key);
            d.error(&self.span, &path, "required key is missing");
        }
        field
    }

    /// Every key of the table, marking all as known (for maps such as `[upstreams]`).
    pub(crate) fn entries(&mut self) -> Vec<(&'a str, Field<'a>)> {
        let table = self.table;
        table
            .iter()
            .map(|(key, item)| {
                self.used.push(key);
                let key_span = table.key(key).and_then(|k| k.span());
                let span = item.span().or_else(|| key_span.clone());
                (
                    key,
                    Field {
                        node: Node::Item(item),
                        path: self.child_path(key),
                        span,
                        key_span,
                    },
                )
            })
            .collect()
    }

    /// Reports every key that no reader asked for.
    pub(crate) fn finish(self, d: &mut Diag) {
        for (key, _) in self.table.iter() {
            if !self.used.contains(&key) {
                let span = self.table.key(key).and_then(|k| k.span());
                d.error(&span, &self.child_path(key), "unknown key");
            }
        }
    }
}

/// A value in the document: a whole item (a key's value, a table) or an array element.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn value(self) -> Option<&'a Value> {
        match self {
            Node::Item(item) => item.as_value(),
            Node::Value(value) => Some(value),
        }
    }

    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }
}

/// One value in the file, with its key path and position.
pub(crate) struct Field<'a> {
    pub(crate) node: Node<'a>,
    pub(crate) path: String,
    pub(crate) span: Option<Range<usize>>,
    pub(crate) key_span: Option<Range<usize>>,
}

impl<'a> Field<'a> {
    pub(crate) fn error(&self, d: &mut Diag, message: impl Into<String>) {
        d.error(&self.span, &self.path, message);
    }

    pub(crate) fn location(&self, d: &Diag) -> Location {
        d.location(&self.span, &self.path)
    }

    fn kind(&self) -> &'static str {
        match self.node {
            Node::Item(Item::Table(_)) => "a table",
            Node::Item(Item::ArrayOfTables(_)) => "an array of tables",
            Node::Item(Item::None) => "nothing",
            _ => match self.node.value() {
                Some(Value::String(_)) => "a string",
                Some(Value::Integer(_)) => "an integer",
                Some(Value::Float(_)) => "a float",
                Some(Value::Boolean(_)) => "a boolean",
                Some(Value::Datetime(_)) => "a date-time",
                Some(Value::Array(_)) => "an array",
                Some(Value::InlineTable(_)) => "a table",
                None => "nothing",
            },
        }
    }

    /// The keys of a table, without reading it (for resolving references up front).
    pub(crate) fn node_table_keys(&self) -> Option<std::collections::HashSet<String>> {
        self.node
            .table_like()
            .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
    }

    pub(crate) fn node_is_string(&self) -> bool {
        matches!(self.node.value(), Some(Value::String(_)))
    }

    fn wrong_type(&self, d: &mut Diag, want: &str) {
        let found = self.kind();
        self.error(d, format!("expected {want}, found {found}"));
    }

    /// A string, with `${ENV}` references resolved.
    pub(crate) fn string(&self, d: &mut Diag) -> Option<String> {
        match self.node.value().and_then(Value::as_str) {
            Some(raw) => d.interpolate(raw, &self.span, &self.path),
            None => {
                self.wrong_type(d, "a string");
                None
            }
        }
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty_string(&self, d: &mut Diag) -> Option<String> {
        let s = self.string(d)?;
        if s.trim().is_empty() {
            self.error(d, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub(crate) fn bool(&self, d: &mut Diag) -> Option<bool> {
        let value = self.node.value().and_then(Value::as_bool);
        if value.is_none() {
            self.wrong_type(d, "true or false");
        }
        value
    }

    /// An integer within `min..=max`.
    pub(crate) fn int(&self, d: &mut Diag, min: i64, max: i64) -> Option<i64> {
        let Some(n) = self.node.value().and_then(Value::as_integer) else {
            self.wrong_type(d, "an integer");
            return None;
        };
        if n < min || n > max {
            self.error(d, format!("{n} is out of range ({min} to {max})"));
            return None;
        }
        Some(n)
    }

    /// A number (integer or float) within `min..=max`.
    pub(crate) fn number(&self, d: &mut Diag, min: f64, max: f64) -> Option<f64> {
        let value = self.node.value();
        let n = match (
            value.and_then(Value::as_float),
            value.and_then(Value::as_integer),
        ) {
            (Some(f), _) => f,
            (None, Some(i)) => i as f64,
            _ => {
                self.wrong_type(d, "a number");
                return None;
            }
        };
        if !(min..=max).contains(&n) {
            self.error(d, format!("{n} is out of range ({min} to {max})"));
            return None;
        }
        Some(n)
    }

    pub(crate) fn duration(&self, d: &mut Diag) -> Option<Duration> {
        let text = self.string(d)?;
        units::parse_duration(&text)
            .map_err(|e| self.error(d, e))
            .ok()
    }

    /// A duration that must be greater than zero.
    pub(crate) fn positive_duration(&self, d: &mut Diag) -> Option<Duration> {
        let value = self.duration(d)?;
        if value.is_zero() {
            self.error(d, "must be greater than zero");
            return None;
        }
        Some(value)
    }

    pub(crate) fn rate(&self, d: &mut Diag) -> Option<Rate> {
        let text = self.string(d)?;
        units::parse_rate(&text).map_err(|e| self.error(d, e)).ok()
    }

    pub(crate) fn byte_rate(&self, d: &mut Diag) -> Option<units::ByteRate> {
        let text = self.string(d)?;
        units::parse_byte_rate(&text)
            .map_err(|e| self.error(d, e))
            .ok()
    }

    pub(crate) fn size(&self, d: &mut Diag) -> Option<usize> {
        let text = self.string(d)?;
        units::parse_size(&text).map_err(|e| self.error(d, e)).ok()
    }

    pub(crate) fn socket_addr(&self, d: &mut Diag) -> Option<SocketAddr> {
        let text = self.string(d)?;
        text.trim()
            .parse()
            .map_err(|_| {
                self.error(
                    d,
                    format!("`{text}` is not an IP:port address (e.g. \"127.0.0.1:8080\")"),
                )
            })
            .ok()
    }

    /// An array whose elements are read by `each`.
    pub(crate) fn list<T>(
        &self,
        d: &mut Diag,
        mut each: impl FnMut(&Field<'a>, &mut Diag) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Some(array) = self.node.value().and_then(Value::as_array) else {
            self.wrong_type(d, "an array");
            return None;
        };
        let mut out = Vec::with_capacity(array.len());
        let mut ok = true;
        for (i, value) in array.iter().enumerate() {
            let field = Field {
                node: Node::Value(value),
                path: format!("{}[{}]", self.path, i),
                span: value.span().or_else(|| self.span.clone()),
                key_span: None,
            };
            match each(&field, d) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A table (`[x.y]` or inline), read key by key.
    pub(crate) fn section(&self, d: &mut Diag) -> Option<Section<'a>> {
        match self.node.table_like() {
            Some(table) => {
                let span = self.key_span.clone().or_else(|| self.span.clone());
                Some(Section::new(table, self.path.clone(), span))
            }
            None => {
                self.wrong_type(d, "a table");
                None
            }
        }
    }

    /// The elements of an array of tables (`[[routes]]`).
    pub(crate) fn tables(&self, d: &mut Diag) -> Option<Vec<Section<'a>>> {
        match self.node {
            Node::Item(Item::ArrayOfTables(array)) => Some(
                array
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Section::new(t, format!("{}[{}]", self.path, i), None))
                    .collect(),
            ),
            _ => {
                self.wrong_type(d, "an array of tables ([[...]])");
                None
            }
        }
    }
}

/// An optional key's read result: outer `None` = the key is absent, `Some(None)` = present but
/// invalid (already reported). `optional()` turns it into "`None` = invalid, stop" for `?`.
pub(crate) trait OptionalKey<T> {
    fn optional(self) -> Option<Option<T>>;
}

impl<T> OptionalKey<T> for Option<Option<T>> {
    fn optional(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(v)) => Some(Some(v)),
        }
    }
}
