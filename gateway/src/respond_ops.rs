//! Applies the policies' header operations to a pingora response header (pingora keeps its
//! own header-name case map, so changes go through its methods, not the raw map).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{IntoCaseHeaderName, ResponseHeader};
pub use portcullis_edge::HeaderOp;

pub trait ApplyHeaderOp {
    fn apply(&self, resp: &mut ResponseHeader) -> pingora::Result<()>;
}

impl ApplyHeaderOp for HeaderOp {
    fn apply(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        match self {
            HeaderOp::Set(n, v) => resp.insert_header(n.clone(), v.clone()),
            HeaderOp::Append(n, v) => resp.append_header(n.clone(), v.clone()).map(|_| ()),
            HeaderOp::Remove(n) => {
                resp.remove_header(n);
                Ok(())
            }
        }
    }
}

/// A header operation prepared once per configuration snapshot for headers every response
/// gets (the security headers): the name's wire bytes are computed here, as pingora itself
/// would (`IntoCaseHeaderName`), so applying it hands pingora a shared `Bytes` instead of
/// copying the name into a fresh allocation on every response. The wire output is the same.
pub enum ReadyOp {
    Set(Bytes, HeaderValue),
    Append(Bytes, HeaderValue),
    Remove(HeaderName),
}

impl ReadyOp {
    pub fn new(op: &HeaderOp) -> Self {
        let case = |name: &HeaderName| {
            Bytes::copy_from_slice(name.clone().into_case_header_name().as_slice())
        };
        match op {
            HeaderOp::Set(n, v) => ReadyOp::Set(case(n), v.clone()),
            HeaderOp::Append(n, v) => ReadyOp::Append(case(n), v.clone()),
            HeaderOp::Remove(n) => ReadyOp::Remove(n.clone()),
        }
    }
}

impl ApplyHeaderOp for ReadyOp {
    fn apply(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        match self {
            ReadyOp::Set(n, v) => resp.insert_header(n.clone(), v.clone()),
            ReadyOp::Append(n, v) => resp.append_header(n.clone(), v.clone()).map(|_| ()),
            ReadyOp::Remove(n) => {
                resp.remove_header(n);
                Ok(())
            }
        }
    }
}
