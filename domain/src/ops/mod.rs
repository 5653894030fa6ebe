//! Observability: the Prometheus series every process exports ([`metrics`]),
//! the stack-wide ten-minute window behind the `/ops` page ([`window`], written
//! by every process once a second) and the view computed from it ([`snapshot`]).
//! Recording never waits on I/O: counters are in memory, Redis is touched by the
//! once-a-second sampler only.

pub mod metrics;
pub mod snapshot;
pub mod window;
