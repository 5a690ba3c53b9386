//! Header operations the policies ask for, applied to a pingora response header.

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

#[derive(Debug, Clone)]
pub enum HeaderOp {
    Set(HeaderName, HeaderValue),
    Append(HeaderName, HeaderValue),
    Remove(HeaderName),
}

impl HeaderOp {
    pub fn apply(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
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
