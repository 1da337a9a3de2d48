//! Built-in handlers that routing rules can name (`handler = "…"`).
//!
//! A handler is an async function from a [`HandlerCtx`] to an optional [`Reply`]. Adding one is
//! the function plus one line in [`Handlers::builtin`]. Handlers may be slow: the bot answers
//! WeChat with `success` at the reply deadline and lets the handler finish.

use crate::store::Store;
use crate::wechat::message::{Body, Message};
use crate::wechat::reply::Reply;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a handler gets.
#[derive(Clone)]
pub struct HandlerCtx {
    pub msg: Arc<Message>,
    pub store: Store,
    pub templates: Arc<super::templates::Templates>,
}

pub type HandlerResult = Result<Option<Reply>, String>;
type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type HandlerFn = Arc<dyn Fn(HandlerCtx) -> BoxFuture + Send + Sync>;

#[derive(Clone, Default)]
pub struct Handlers(HashMap<String, HandlerFn>);

impl Handlers {
    /// The handlers wxoa ships.
    pub fn builtin() -> Handlers {
        let mut h = Handlers::default();
        h.add("transfer_customer_service", transfer_customer_service);
        h.add("echo", echo);
        h
    }

    /// Registers (or replaces) a handler.
    pub fn add<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(HandlerCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.0.insert(name.to_owned(), Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&HandlerFn> {
        self.0.get(name)
    }
}

/// Hands the conversation to the customer-service desk.
async fn transfer_customer_service(_: HandlerCtx) -> HandlerResult {
    Ok(Some(Reply::TransferCustomerService { kf_account: None }))
}

/// Says back what the follower said (or recognised speech); handy while developing.
async fn echo(ctx: HandlerCtx) -> HandlerResult {
    let said = match &ctx.msg.body {
        Body::Text { content, .. } => content.clone(),
        Body::Voice { recognition: Some(r), .. } => r.clone(),
        _ => return Ok(None),
    };
    Ok(Reply::text(said).ok())
}
