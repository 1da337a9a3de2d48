//! The bot: from a parsed message to the answer, exactly once per message.
//!
//! WeChat retries a call it got no answer for within 5 s, three times, so every message is
//! logged under a unique dedup key and a retry gets the first call's answer:
//! 1. **Route** once, to the first matching rule ([`rules`]).
//! 2. **Act.** A template or inline reply is a pure function of the message: computed, then
//!    logged with the message in one write; if the key was taken the call was a retry and gets
//!    the logged reply. A handler ([`handlers`]) may have side effects: the message is *claimed*
//!    first and the handler runs once, in a task of its own; a retry here waits for it, one at
//!    another instance polls the log and takes the message over if the owner died.
//! 3. **Record** the answer before it is returned; every log write is bounded by the time WeChat
//!    still waits ([`LOG_MARGIN`], [`ANSWER_BY`]).
//! 4. **Late replies.** Past the deadline `success` is sent and a late-reply job commits with the
//!    `deferred` outcome; the handler's reply becomes a customer-service message, or after a crash
//!    the job runs the handler again from the logged message ([`Bot::late_reply`]) — so handlers
//!    must be safe to run twice, as the built-in ones are.

pub mod handlers;
mod late;
mod render;
pub mod rules;
pub mod templates;

pub use render::{ReplyRuleError, Routing, render};
use render::{render_inline, render_text, settle};

use crate::store::messages::{Answered, Claim, Inbound, LogError, MessageLog, Outcome, Stored};
use crate::wechat::message::Message;
use handlers::{HandlerCtx, HandlerError, HandlerResult, Handlers};
use rules::{Action, Rules};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use templates::Templates;
use tokio::sync::watch;

/// The answer to one message: the plaintext reply document, or `None` for `success`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reply_xml: Option<String>,
    pub outcome: Outcome,
    /// Whether this call was a retry answered from the first call.
    pub duplicate: bool,
}

/// Why a message got no answer (the webhook answers 503, and WeChat retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log could not commit the answer while WeChat still waits.
    #[error("the message log did not commit within {0} ms of receipt")]
    Late(u128),
    #[error("the claimed message vanished from the log")]
    Vanished,
    #[error("the first call for this message failed")]
    FirstFailed,
}

type Shared = Option<Result<Arc<Answer>, BotError>>;

/// How long past the reply deadline the log may take to commit an answer.
pub const LOG_MARGIN: Duration = Duration::from_millis(500);
/// The latest an answer may leave, whatever the deadline: WeChat stops waiting at 5 s.
pub const ANSWER_BY: Duration = Duration::from_millis(4800);

/// A message routed to a handler: the rule's name and the handler's.
#[derive(Debug, Clone)]
struct Route {
    rule: String,
    handler: String,
}

/// Who answers a message if its claim is taken over: its handler (publishing to the waiters),
/// or a pure action.
enum Owner<'a> {
    Handler(&'a Route, &'a watch::Sender<Shared>),
    Pure(&'a Routing, Option<&'a rules::Rule>),
}

pub struct Bot {
    /// The files' routing, which every change of the console's replies starts from, and its
    /// version (one more at each reload of the files).
    base: std::sync::RwLock<(u64, Arc<Routing>)>,
    /// The routing in force (the base plus the console's replies), and the base version and
    /// replies generation it was built from.
    routing: std::sync::RwLock<((u64, i64), Arc<Routing>)>,
    handlers: Handlers,
    log: MessageLog,
    inflight: Mutex<HashMap<String, watch::Receiver<Shared>>>,
    deadline: Duration,
    instance: String,
    /// Wakes the outbox worker when a late reply is queued.
    outbox_wake: Arc<tokio::sync::Notify>,
    public_url: Arc<str>,
    /// For handlers that hand out checkout links; switched off (empty secret) unless set.
    checkout: Arc<crate::config::CheckoutConfig>,
    /// How far a store may be and still be "nearby" (`stores.nearby_km`).
    nearby_km: u32,
    /// The tiers' labels, for the balance card (`[[loyalty.tiers]]`).
    loyalty: Arc<crate::config::LoyaltyConfig>,
    /// The balance card's cover (`bot.balance_cover_url`, or the shipped one under `public_url`).
    balance_cover: Arc<str>,
    /// A deferred handler's late-reply job comes due this long after the deadline: by then the
    /// handler has finished (and turned the job into its reply), or its process is gone and the
    /// job runs the handler again (`bot.late_takeover_secs`).
    late_takeover: Duration,
}

impl Bot {
    /// Now, on the app's clock (the message log's store carries it).
    fn now_ms(&self) -> i64 {
        self.log.store().now_ms()
    }

    pub fn new(
        rules: Rules,
        templates: Templates,
        handlers: Handlers,
        log: MessageLog,
        deadline: Duration,
        outbox_wake: Arc<tokio::sync::Notify>,
        public_url: &str,
    ) -> Bot {
        let base = Routing { rules, templates: Arc::new(templates) };
        let base = Arc::new(base);
        Bot {
            routing: std::sync::RwLock::new(((0, -1), base.clone())),
            base: std::sync::RwLock::new((0, base)),
            handlers,
            log,
            inflight: Mutex::new(HashMap::new()),
            deadline,
            instance: crate::store::instance_id(),
            outbox_wake,
            public_url: public_url.into(),
            checkout: Arc::new(crate::config::CheckoutConfig::default()),
            nearby_km: crate::config::StoresConfig::default().nearby_km,
            loyalty: Arc::default(),
            balance_cover: handlers::shipped_balance_cover(public_url).into(),
            late_takeover: Duration::from_secs(60),
        }
    }

    /// How long after the deadline a late reply is taken over.
    pub fn with_late_takeover(mut self, after: Duration) -> Bot {
        self.late_takeover = after;
        self
    }

    /// The checkout configuration handlers see (see [`handlers::HandlerCtx::checkout`]).
    pub fn with_checkout(mut self, checkout: crate::config::CheckoutConfig) -> Bot {
        self.checkout = Arc::new(checkout);
        self
    }

    /// Whom `stores_nearby` calls near (`stores.nearby_km`).
    pub fn with_nearby_km(mut self, km: u32) -> Bot {
        self.nearby_km = km;
        self
    }

    /// The loyalty programme's tiers, whose labels followers read.
    pub fn with_loyalty(mut self, loyalty: crate::config::LoyaltyConfig) -> Bot {
        self.loyalty = Arc::new(loyalty);
        self
    }

    /// The balance card's cover (`bot.balance_cover_url`); empty keeps the shipped one.
    pub fn with_balance_cover(mut self, url: &str) -> Bot {
        if !url.is_empty() {
            self.balance_cover = url.into();
        }
        self
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The routing of the files alone (`config/routes.toml` and the templates).
    pub fn base(&self) -> Arc<Routing> {
        self.base.read().unwrap().1.clone()
    }

    /// [`Bot::base`] with its version, for building the routing in force from it.
    pub fn base_versioned(&self) -> (u64, Arc<Routing>) {
        self.base.read().unwrap().clone()
    }

    /// Puts the files' `routing` in force as the new base (a reload): its version, which the
    /// routing built from it is to be set with.
    pub fn set_base(&self, routing: Routing) -> u64 {
        let mut base = self.base.write().unwrap();
        *base = (base.0 + 1, Arc::new(routing));
        base.0
    }

    /// The routing in force.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.read().unwrap().1.clone()
    }

    /// Puts `routing`, built from base `version` and the replies' `generation`, in force —
    /// unless one built from a later base, or the same base and a later generation, already is
    /// (two reloads finishing out of order keep the newer). The next message is routed by it;
    /// one being routed finishes with the routing it started with.
    pub fn set_routing(&self, version: (u64, i64), routing: Routing) -> bool {
        let mut current = self.routing.write().unwrap();
        if version < current.0 {
            return false;
        }
        *current = (version, Arc::new(routing));
        true
    }

    /// The message log (for `/readyz`: whether its writer is stuck).
    pub fn log(&self) -> &MessageLog {
        &self.log
    }

    /// Answers `msg` (received at `received`), exactly once per dedup key.
    pub async fn handle(
        self: &Arc<Self>,
        msg: Message,
        raw_xml: String,
        encrypted: bool,
        received: Instant,
    ) -> Result<Arc<Answer>, BotError> {
        let key = msg.dedup_key();
        let routing = self.routing();
        let rule = routing.rules.route(&msg);
        if let Some(r) = rule
            && let Action::Handler(handler) = &r.action
        {
            let route = Route { rule: r.name.clone(), handler: handler.clone() };
            return self.handle_claimed(msg, key, route, raw_xml, encrypted, received).await;
        }
        // A pure reply: compute it, then log message and answer in one write.
        let started = Instant::now();
        let msg = Arc::new(msg);
        let (outcome, reply_xml) = self.act(&routing, rule, &msg);
        let record = Answered {
            outcome,
            reply_xml: reply_xml.clone(),
            rule: rule.map(|r| r.name.clone()),
            handled_us: started.elapsed().as_micros() as i64,
        };
        let inbound = self.inbound(&msg, key.clone(), raw_xml, encrypted, received, Some(record));
        match self.logged(received, self.log.insert(inbound)).await? {
            Claim::Claimed(_) => Ok(Arc::new(Answer { reply_xml, outcome, duplicate: false })),
            Claim::Duplicate => {
                metrics::counter!("wxoa_webhook_duplicates_total", "where" => "stored").increment(1);
                let msg = Arc::try_unwrap(msg).unwrap_or_else(|m| (*m).clone());
                self.follow(&key, Owner::Pure(&routing, rule), msg, received).await.map(Arc::new)
            }
        }
    }

    fn inbound(
        &self,
        msg: &Message,
        key: String,
        raw_xml: String,
        encrypted: bool,
        received: Instant,
        outcome: Option<Answered>,
    ) -> Inbound {
        Inbound {
            dedup_key: key,
            openid: msg.openid.clone(),
            msg_type: msg.msg_type.as_str().to_owned(),
            event: msg.event().map(str::to_owned),
            event_key: msg.event_key().map(str::to_owned),
            msg_id: msg.msg_id().map(|id| id.to_string()),
            create_time: msg.create_time,
            encrypted,
            raw_xml,
            received_at: self.now_ms() - received.elapsed().as_millis() as i64,
            claimed_by: self.instance.clone(),
            outcome,
        }
    }

    /// The claim-first path for handlers, which may have side effects.
    async fn handle_claimed(
        self: &Arc<Self>,
        msg: Message,
        key: String,
        route: Route,
        raw_xml: String,
        encrypted: bool,
        received: Instant,
    ) -> Result<Arc<Answer>, BotError> {
        // Either wait for the call already handling this key here, or register ours.
        let (rx, first) = {
            let mut inflight = self.inflight.lock().unwrap();
            match inflight.get(&key) {
                Some(rx) => (rx.clone(), None),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.clone(), rx.clone());
                    (rx, Some(tx))
                }
            }
        };
        let Some(tx) = first else {
            metrics::counter!("wxoa_webhook_duplicates_total", "where" => "in_flight").increment(1);
            return Self::first_answer(rx, true).await;
        };
        // One task does it all, so a dropped connection abandons nothing: claim, run, record —
        // and, past the deadline, the late reply.
        let bot = self.clone();
        tokio::spawn(async move {
            let result = bot.claim_and_run(msg, &key, route, raw_xml, encrypted, received, &tx).await;
            tx.send_if_modified(|s| {
                let first = s.is_none();
                if first {
                    *s = Some(result.map(Arc::new));
                }
                first
            });
            bot.inflight.lock().unwrap().remove(&key);
        });
        Self::first_answer(rx, false).await
    }

    /// The first answer the task handling a message publishes.
    async fn first_answer(mut rx: watch::Receiver<Shared>, duplicate: bool) -> Result<Arc<Answer>, BotError> {
        let first = rx.wait_for(Option::is_some).await.map(|shared| shared.clone());
        match first {
            Ok(Some(Ok(a))) if duplicate => Ok(Arc::new(Answer { duplicate: true, ..(*a).clone() })),
            Ok(Some(result)) => result,
            _ => Err(BotError::FirstFailed),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn claim_and_run(
        self: &Arc<Self>,
        msg: Message,
        key: &str,
        route: Route,
        raw_xml: String,
        encrypted: bool,
        received: Instant,
        publish: &watch::Sender<Shared>,
    ) -> Result<Answer, BotError> {
        let inbound = self.inbound(&msg, key.to_owned(), raw_xml, encrypted, received, None);
        match self.logged(received, self.log.insert(inbound)).await? {
            Claim::Claimed(id) => self.run(id, msg, &route, received, publish).await,
            Claim::Duplicate => {
                metrics::counter!("wxoa_webhook_duplicates_total", "where" => "stored").increment(1);
                self.follow(key, Owner::Handler(&route, publish), msg, received).await
            }
        }
    }

    /// Answers a retry from the first call's record, waiting (until our deadline) while the
    /// first call is still running; takes the message over if its owner went quiet.
    async fn follow(
        self: &Arc<Self>,
        key: &str,
        owner: Owner<'_>,
        msg: Message,
        received: Instant,
    ) -> Result<Answer, BotError> {
        let stale_after = self.deadline.as_millis() as i64 + 1000;
        loop {
            let stored: Option<Stored> = self.logged(received, self.log.find(key)).await?;
            let Some(stored) = stored else { return Err(BotError::Vanished) };
            if let Some(o) = stored.outcome {
                return Ok(Answer { reply_xml: o.reply_xml, outcome: o.outcome, duplicate: true });
            }
            if self.now_ms() - stored.claimed_at > stale_after
                && self.logged(received, self.log.take_over(&stored, &self.instance)).await?
            {
                tracing::warn!(message_id = stored.id, from = %stored.claimed_by, "taking over a message whose handler went quiet");
                return match owner {
                    Owner::Handler(route, publish) => self.run(stored.id, msg, route, received, publish).await,
                    Owner::Pure(routing, rule) => {
                        let started = Instant::now();
                        let (outcome, reply_xml) = self.act(routing, rule, &Arc::new(msg));
                        let record = Answered {
                            outcome,
                            reply_xml: reply_xml.clone(),
                            rule: rule.map(|r| r.name.clone()),
                            handled_us: started.elapsed().as_micros() as i64,
                        };
                        self.logged(received, self.log.complete(stored.id, record, None)).await?;
                        Ok(Answer { reply_xml, outcome, duplicate: false })
                    }
                };
            }
            if received.elapsed() >= self.deadline {
                return Ok(Answer { reply_xml: None, outcome: Outcome::Pending, duplicate: true });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn handler_ctx(&self, msg: Arc<Message>) -> HandlerCtx {
        HandlerCtx {
            msg,
            store: self.log.store().clone(),
            templates: self.routing().templates.clone(),
            public_url: self.public_url.clone(),
            checkout: self.checkout.clone(),
            nearby_km: self.nearby_km,
            loyalty: self.loyalty.clone(),
            balance_cover: self.balance_cover.clone(),
        }
    }

    /// Runs the handler of a message we own (claimed, or taken over) and records the answer.
    /// Past the deadline it records `deferred` with the late-reply job, publishes `success`,
    /// and goes on with the handler ([`Bot::deliver_late`]).
    async fn run(
        self: &Arc<Self>,
        id: i64,
        msg: Message,
        route: &Route,
        received: Instant,
        publish: &watch::Sender<Shared>,
    ) -> Result<Answer, BotError> {
        let started = Instant::now();
        let msg = Arc::new(msg);
        let handler = self.handlers.get(&route.handler).expect("validated at load").clone();
        let mut work = CatchPanic(handler(self.handler_ctx(msg.clone())));
        let remaining = self.deadline.saturating_sub(received.elapsed());
        let record = |outcome: Outcome, reply_xml: Option<String>| Answered {
            outcome,
            reply_xml,
            rule: Some(route.rule.clone()),
            handled_us: started.elapsed().as_micros() as i64,
        };
        match tokio::time::timeout(remaining, &mut work).await {
            Ok(result) => {
                let (outcome, reply) = settle(result.and_then(|r| r));
                let reply_xml = reply.map(|r| r.to_xml(&msg.openid, &msg.to_user_name, self.now_ms() / 1000));
                self.logged(received, self.log.complete(id, record(outcome, reply_xml.clone()), None)).await?;
                Ok(Answer { reply_xml, outcome, duplicate: false })
            }
            Err(_) => {
                metrics::counter!("wxoa_webhook_deferred_total").increment(1);
                let late = self.late_job(id);
                self.logged(received, self.log.complete(id, record(Outcome::Deferred, None), Some(late))).await?;
                let answer = Answer { reply_xml: None, outcome: Outcome::Deferred, duplicate: false };
                publish.send_replace(Some(Ok(Arc::new(answer.clone()))));
                let result = work.await.and_then(|r| r);
                self.deliver_late(id, &msg.openid, &route.handler, result).await;
                Ok(answer)
            }
        }
    }

    /// The message log's `write`, bounded by when this message must be answered: the reply
    /// deadline plus [`LOG_MARGIN`], and never past [`ANSWER_BY`]. A database that cannot
    /// commit by then (locked by another process, a disk stalling) gets a prompt 503 — WeChat
    /// retries, and a retry finds whatever did commit — rather than an answer WeChat no longer
    /// waits for.
    async fn logged<T>(
        &self,
        received: Instant,
        write: impl Future<Output = Result<T, LogError>>,
    ) -> Result<T, BotError> {
        let by = (self.deadline + LOG_MARGIN).min(ANSWER_BY);
        match tokio::time::timeout(by.saturating_sub(received.elapsed()), write).await {
            Ok(result) => result.map_err(BotError::from),
            Err(_) => {
                metrics::counter!("wxoa_message_log_timeouts_total").increment(1);
                Err(BotError::Late(by.as_millis()))
            }
        }
    }

    /// The outcome and reply document of a pure action (anything but a handler).
    fn act(&self, routing: &Routing, rule: Option<&rules::Rule>, msg: &Arc<Message>) -> (Outcome, Option<String>) {
        let (outcome, reply) = match rule.map(|r| &r.action) {
            None | Some(Action::Nothing) => (Outcome::Nothing, None),
            Some(Action::Text { template }) => settle(render_text(&routing.templates, template, msg)),
            Some(Action::Inline { kind, fields, articles }) => {
                settle(render_inline(&routing.templates, *kind, fields, articles, msg))
            }
            Some(Action::Handler(_)) => unreachable!("handlers are not pure"),
        };
        (outcome, reply.map(|r| r.to_xml(&msg.openid, &msg.to_user_name, self.now_ms() / 1000)))
    }
}

/// A handler's future with its panics caught: a panicking handler is a failed one, answered
/// `success`, not a task that dies with the message claimed.
struct CatchPanic<F>(F);

impl<F: Future<Output = HandlerResult> + Unpin> Future for CatchPanic<F> {
    type Output = Result<HandlerResult, HandlerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = Pin::new(&mut self.0);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(HandlerError::Panicked)),
        }
    }
}
