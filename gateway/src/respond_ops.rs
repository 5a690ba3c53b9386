//! Applies the policies' header operations to a pingora response header (pingora keeps its
//! own header-name case map, so changes go through its methods, not the raw map).

use pingora::http::ResponseHeader;
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
