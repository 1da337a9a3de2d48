//! Developer tools that drive a running server from outside, as WeChat would: `wxoa replay`,
//! `wxoa fixtures export` and the load generators `wxoa bench` and `wxoa bench-crm`.

pub mod bench;
pub mod bench_crm;
pub mod bench_outbox;
pub mod fixtures;
pub mod replay;
