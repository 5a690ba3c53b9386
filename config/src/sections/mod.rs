//! One reader per top-level section of the file.

pub(crate) mod acme;
pub(crate) mod bounds;
pub(crate) mod cache;
pub(crate) mod edge;
pub(crate) mod jwt;
pub(crate) mod limits;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod signed_urls;
pub(crate) mod sources;
pub(crate) mod tracing;
pub(crate) mod upstreams;
