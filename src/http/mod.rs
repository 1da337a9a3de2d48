//! HTTP infrastructure the handler modules share: the accept loop ([`server`]), the webhook's
//! fast path ([`webhook`]), health and metrics ([`health`]), page rendering ([`page`]), request ids and spans ([`request_id`]), the
//! JSON API's extractors ([`api`]) and signed calls from the brand's systems ([`signed`]).
//! Each handler module owns its `router()`; [`crate::app`] merges them.

pub mod api;
pub mod health;
pub mod page;
pub mod request_id;
pub mod server;
pub mod signed;
pub mod webhook;
