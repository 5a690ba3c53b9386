//! The upstream leg: pools of peers ([`pool`]) and each request's attempt at them
//! ([`attempt`]: peer choice, the circuit breaker, retries, and the upstream accounting). The
//! one way a request reaches an upstream is pingora's proxy loop; these are its hooks.

pub mod attempt;
pub mod pool;

pub use attempt::Attempt;
pub use pool::UpstreamPool;
