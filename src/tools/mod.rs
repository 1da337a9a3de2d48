//! Developer tools that drive a running server from outside, as WeChat would: `wxoa replay`,
//! `wxoa fixtures export` and the load generator `wxoa bench`.

pub mod bench;
pub mod bench_outbox;
pub mod fixtures;
pub mod replay;
