//! Applies the policies' header operations to a head's header map, once pingora's case map is
//! out of the way (`lowercase`): the ready `HeaderName`/`HeaderValue` pairs go in as they are,
//! with no name re-parsed and no second map to keep in step.

use http::HeaderMap;
pub use portcullis_edge::HeaderOp;

pub trait ApplyHeaderOp {
    fn apply(&self, headers: &mut HeaderMap);
}

impl ApplyHeaderOp for HeaderOp {
    fn apply(&self, headers: &mut HeaderMap) {
        match self {
            HeaderOp::Set(n, v) => {
                headers.insert(n.clone(), v.clone());
            }
            HeaderOp::Append(n, v) => {
                headers.append(n.clone(), v.clone());
            }
            HeaderOp::Remove(n) => {
                headers.remove(n);
            }
        }
    }
}
