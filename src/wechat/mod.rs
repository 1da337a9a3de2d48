//! The WeChat protocol, split the way WeChat splits it: request [`signature`]s, safe-mode
//! [`crypto`], the [`envelope`] that combines them per mode, the bounded [`xml`] reader,
//! inbound [`message`]s and events, passive [`reply`]s, and the API [`client`].

pub mod client;
pub mod crypto;
pub mod envelope;
pub mod message;
pub mod reply;
pub mod signature;
pub mod xml;
