//! The bot: from a parsed message to the answer, exactly once per message.
//!
//! 1. **Route** to the first matching rule ([`rules`]).
//! 2. **Act and deduplicate.** WeChat retries a call it got no answer for within 5 s, three
//!    times; every message is logged under a unique dedup key and a retry gets the first call's
//!    answer. How depends on the action:
//!    * a template or inline reply is a pure function of the message, so it is computed first
//!      and logged together with the message in one write. If the key was taken, this call was
//!      a retry: its own reply is discarded and the logged one returned.
//!    * a built-in handler ([`handlers`]) may have side effects, so the message is *claimed*
//!      first and the handler runs only for the claim's owner. A retry arriving meanwhile in
//!      this process waits for it (the in-flight map); one arriving at another instance polls
//!      the log until the owner records its answer, and takes the message over if the owner
//!      went quiet (it died). A handler that misses the reply deadline gets `success` sent for
//!      it and goes on running; its reply is delivered later through the customer-service API.
//! 3. **Record** the answer before it is returned, so the retry gets the same one.

pub mod handlers;
pub mod rules;
pub mod templates;

use crate::jobs::outbox::{self, NewJob};
use crate::jobs::worker::CustomMessageJob;
use crate::store::messages::{Claim, Inbound, MessageLog, Outcome, Stored};
use crate::store::now_ms;
use crate::wechat::client::message::CustomMessage;
use crate::wechat::message::Message;
use crate::wechat::reply::{Article, Reply};
use handlers::{HandlerCtx, Handlers};
use rules::{Action, Rules};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use templates::Templates;
use tokio::sync::watch;

/// The answer to one message: the plaintext reply document, or `None` for `success`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reply_xml: Option<String>,
    /// `replied`, `nothing`, `deferred`, `failed`, or `pending` (a duplicate whose first call is
    /// still running elsewhere at our deadline).
    pub outcome: String,
    /// Whether this call was a retry answered from the first call.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotError(pub String);

impl std::fmt::Display for BotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BotError {}

type Shared = Option<Result<Arc<Answer>, BotError>>;

/// How long past the reply deadline the log may take to commit an answer.
pub const LOG_MARGIN: Duration = Duration::from_millis(500);
/// The latest an answer may leave, whatever the deadline: WeChat stops waiting at 5 s.
pub const ANSWER_BY: Duration = Duration::from_millis(4800);

pub struct Bot {
    rules: Rules,
    templates: Arc<Templates>,
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
}

impl Bot {
    pub fn new(
        rules: Rules,
        templates: Templates,
        handlers: Handlers,
        log: MessageLog,
        deadline: Duration,
        outbox_wake: Arc<tokio::sync::Notify>,
        public_url: &str,
    ) -> Bot {
        Bot {
            rules,
            templates: Arc::new(templates),
            handlers,
            log,
            inflight: Mutex::new(HashMap::new()),
            deadline,
            instance: crate::store::instance_id(),
            outbox_wake,
            public_url: public_url.into(),
            checkout: Arc::new(crate::config::CheckoutConfig::default()),
        }
    }

    /// The checkout configuration handlers see (see [`handlers::HandlerCtx::checkout`]).
    pub fn with_checkout(mut self, checkout: crate::config::CheckoutConfig) -> Bot {
        self.checkout = Arc::new(checkout);
        self
    }

    pub fn instance(&self) -> &str {
        &self.instance
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
        let rule = self.rules.route(&msg);
        if let Some(Action::Handler(_)) = rule.map(|r| &r.action) {
            return self.handle_claimed(msg, key, raw_xml, encrypted, received).await;
        }
        // A pure reply: compute it, then log message and answer in one write.
        let started = Instant::now();
        let msg = Arc::new(msg);
        let (outcome, reply_xml) = self.act(rule, &msg);
        let record = Outcome {
            outcome: outcome.to_owned(),
            reply_xml: reply_xml.clone(),
            rule: rule.map(|r| r.name.clone()),
            handled_us: started.elapsed().as_micros() as i64,
        };
        let inbound = self.inbound(&msg, key.clone(), raw_xml, encrypted, received, Some(record));
        match self.logged(received, self.log.insert(inbound)).await? {
            Claim::Claimed(_) => Ok(Arc::new(Answer { reply_xml, outcome: outcome.to_owned(), duplicate: false })),
            Claim::Duplicate => {
                metrics::counter!("wxoa_webhook_duplicates_total", "where" => "stored").increment(1);
                let msg = Arc::try_unwrap(msg).unwrap_or_else(|m| (*m).clone());
                self.follow(&key, msg, received).await.map(Arc::new)
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
        outcome: Option<Outcome>,
    ) -> Inbound {
        Inbound {
            dedup_key: key,
            openid: msg.openid.clone(),
            msg_type: msg.msg_type.clone(),
            event: msg.event().map(str::to_owned),
            event_key: msg.event_key().map(str::to_owned),
            msg_id: msg.msg_id().map(str::to_owned),
            create_time: msg.create_time,
            encrypted,
            raw_xml,
            received_at: now_ms() - received.elapsed().as_millis() as i64,
            claimed_by: self.instance.clone(),
            outcome,
        }
    }

    /// The claim-first path for handlers, which may have side effects.
    async fn handle_claimed(
        self: &Arc<Self>,
        msg: Message,
        key: String,
        raw_xml: String,
        encrypted: bool,
        received: Instant,
    ) -> Result<Arc<Answer>, BotError> {
        // Either wait for the call already handling this key here, or register ours.
        let registered = {
            let mut inflight = self.inflight.lock().unwrap();
            match inflight.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        let tx = match registered {
            Ok(tx) => tx,
            Err(mut rx) => {
                metrics::counter!("wxoa_webhook_duplicates_total", "where" => "in_flight").increment(1);
                let first = rx.wait_for(Option::is_some).await.map(|shared| shared.clone());
                return match first {
                    Ok(Some(result)) => result.map(|a| Arc::new(Answer { duplicate: true, ..(*a).clone() })),
                    _ => Err(BotError("first call for this message failed".into())),
                };
            }
        };
        // The work runs in its own task: a dropped connection must not abandon a claimed message.
        let bot = self.clone();
        let task = tokio::spawn(async move {
            let result = bot.claim_and_run(msg, key.clone(), raw_xml, encrypted, received).await.map(Arc::new);
            let _ = tx.send(Some(result.clone()));
            bot.inflight.lock().unwrap().remove(&key);
            result
        });
        task.await.map_err(|e| BotError(format!("handler task failed: {e}")))?
    }

    async fn claim_and_run(
        self: &Arc<Self>,
        msg: Message,
        key: String,
        raw_xml: String,
        encrypted: bool,
        received: Instant,
    ) -> Result<Answer, BotError> {
        let inbound = self.inbound(&msg, key.clone(), raw_xml, encrypted, received, None);
        match self.logged(received, self.log.insert(inbound)).await? {
            Claim::Claimed(id) => self.run(id, msg, received).await,
            Claim::Duplicate => {
                metrics::counter!("wxoa_webhook_duplicates_total", "where" => "stored").increment(1);
                self.follow(&key, msg, received).await
            }
        }
    }

    /// Answers a retry from the first call's record, waiting (until our deadline) while the
    /// first call is still running; takes the message over if its owner went quiet.
    async fn follow(self: &Arc<Self>, key: &str, msg: Message, received: Instant) -> Result<Answer, BotError> {
        let stale_after = self.deadline.as_millis() as i64 + 1000;
        loop {
            let stored: Option<Stored> = self.logged(received, self.log.find(key)).await?;
            let Some(stored) = stored else {
                return Err(BotError("claimed message vanished".into()));
            };
            if let Some(o) = stored.outcome {
                return Ok(Answer { reply_xml: o.reply_xml, outcome: o.outcome, duplicate: true });
            }
            if now_ms() - stored.claimed_at > stale_after
                && self.logged(received, self.log.take_over(&stored, &self.instance)).await?
            {
                tracing::warn!(message_id = stored.id, from = %stored.claimed_by, "taking over a message whose handler went quiet");
                return self.run(stored.id, msg, received).await;
            }
            if received.elapsed() >= self.deadline {
                return Ok(Answer { reply_xml: None, outcome: "pending".into(), duplicate: true });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Acts on a message we own (claimed, or taken over), then records the answer.
    async fn run(self: &Arc<Self>, id: i64, msg: Message, received: Instant) -> Result<Answer, BotError> {
        let started = Instant::now();
        let msg = Arc::new(msg);
        let rule = self.rules.route(&msg);
        let (outcome, reply_xml) = match rule.map(|r| &r.action) {
            Some(Action::Handler(name)) => {
                let handler = self.handlers.get(name).expect("validated at load").clone();
                let ctx = HandlerCtx {
                    msg: msg.clone(),
                    store: self.log.store().clone(),
                    templates: self.templates.clone(),
                    public_url: self.public_url.clone(),
                    checkout: self.checkout.clone(),
                };
                let mut task = tokio::spawn(handler(ctx));
                let remaining = self.deadline.saturating_sub(received.elapsed());
                let (outcome, reply) = match tokio::time::timeout(remaining, &mut task).await {
                    Ok(Ok(result)) => self.settle(result),
                    Ok(Err(e)) => self.settle(Err(format!("handler {name} panicked: {e}"))),
                    Err(_) => {
                        self.defer(id, msg.clone(), name.clone(), task);
                        ("deferred", None)
                    }
                };
                (outcome, reply.map(|r| r.to_xml(&msg.openid, &msg.to_user_name, now_ms() / 1000)))
            }
            _ => self.act(rule, &msg),
        };
        let record = Outcome {
            outcome: outcome.to_owned(),
            reply_xml: reply_xml.clone(),
            rule: rule.map(|r| r.name.clone()),
            handled_us: started.elapsed().as_micros() as i64,
        };
        self.logged(received, self.log.complete(id, record)).await?;
        Ok(Answer { reply_xml, outcome: outcome.to_owned(), duplicate: false })
    }

    /// The message log's `write`, bounded by when this message must be answered: the reply
    /// deadline plus [`LOG_MARGIN`], and never past [`ANSWER_BY`]. A database that cannot
    /// commit by then (locked by another process, a disk stalling) gets a prompt 503 — WeChat
    /// retries, and a retry finds whatever did commit — rather than an answer WeChat no longer
    /// waits for.
    async fn logged<T>(
        &self,
        received: Instant,
        write: impl std::future::Future<Output = Result<T, crate::store::messages::LogError>>,
    ) -> Result<T, BotError> {
        let by = (self.deadline + LOG_MARGIN).min(ANSWER_BY);
        match tokio::time::timeout(by.saturating_sub(received.elapsed()), write).await {
            Ok(result) => result.map_err(|e| BotError(e.to_string())),
            Err(_) => {
                metrics::counter!("wxoa_message_log_timeouts_total").increment(1);
                Err(BotError(format!("the message log did not commit within {} ms of receipt", by.as_millis())))
            }
        }
    }

    /// The outcome and reply document of a pure action (anything but a handler).
    fn act(&self, rule: Option<&rules::Rule>, msg: &Arc<Message>) -> (&'static str, Option<String>) {
        let (outcome, reply) = match rule.map(|r| &r.action) {
            None | Some(Action::Nothing) => ("nothing", None),
            Some(Action::Text { template }) => self.settle(self.render_text(template, msg)),
            Some(Action::Inline { kind, fields, articles }) => {
                self.settle(self.render_inline(kind, fields, articles, msg))
            }
            Some(Action::Handler(_)) => unreachable!("handlers are not pure"),
        };
        (outcome, reply.map(|r| r.to_xml(&msg.openid, &msg.to_user_name, now_ms() / 1000)))
    }

    fn settle(&self, result: Result<Option<Reply>, String>) -> (&'static str, Option<Reply>) {
        match result {
            Ok(Some(reply)) => match reply.validate() {
                Ok(()) => ("replied", Some(reply)),
                Err(e) => {
                    tracing::warn!(error = %e, "handler produced an invalid reply; answering success");
                    ("failed", None)
                }
            },
            Ok(None) => ("nothing", None),
            Err(e) => {
                tracing::error!(error = %e, "handler failed; answering success");
                ("failed", None)
            }
        }
    }

    /// Lets a late handler finish and queues its reply as a customer-service message (deduped by
    /// message, so a taken-over message cannot queue it twice).
    fn defer(
        self: &Arc<Self>,
        id: i64,
        msg: Arc<Message>,
        name: String,
        task: tokio::task::JoinHandle<handlers::HandlerResult>,
    ) {
        metrics::counter!("wxoa_webhook_deferred_total").increment(1);
        let bot = self.clone();
        tokio::spawn(async move {
            let reply = match task.await {
                Ok(Ok(Some(reply))) if reply.validate().is_ok() => reply,
                Ok(Ok(_)) => return,
                Ok(Err(e)) => return tracing::error!(handler = %name, error = %e, "late handler failed"),
                Err(e) => return tracing::error!(handler = %name, error = %e, "late handler panicked"),
            };
            let Some(message) = CustomMessage::from_reply(&reply) else { return };
            let payload = CustomMessageJob { touser: msg.openid.clone(), message };
            let job = NewJob::new(crate::jobs::Kind::CustomMessage, payload, format!("late:{id}"));
            match outbox::enqueue(bot.log.store(), &job).await {
                Ok(_) => bot.outbox_wake.notify_one(),
                Err(e) => {
                    tracing::error!(handler = %name, openid = %crate::mask(&msg.openid), error = %e, "late reply could not be queued")
                }
            }
        });
    }

    fn render_text(&self, template: &str, msg: &Arc<Message>) -> Result<Option<Reply>, String> {
        let text = self.templates.render(template, msg).map_err(|e| format!("template {template}: {e}"))?;
        // An empty text reply would show followers an error; say nothing instead.
        Ok(Reply::text(text).ok())
    }

    fn render_inline(
        &self,
        kind: &str,
        fields: &[(String, String)],
        articles: &[[String; 4]],
        msg: &Arc<Message>,
    ) -> Result<Option<Reply>, String> {
        let get = |field: &str| -> Result<String, String> {
            match fields.iter().find(|(f, _)| f == field) {
                Some((_, name)) => self.templates.render(name, msg).map_err(|e| format!("{field}: {e}")),
                None => Ok(String::new()),
            }
        };
        let reply = match kind {
            "text" => return Ok(Reply::text(get("content")?).ok()),
            "image" => Reply::Image { media_id: get("media_id")? },
            "voice" => Reply::Voice { media_id: get("media_id")? },
            "video" => {
                Reply::Video { media_id: get("media_id")?, title: get("title")?, description: get("description")? }
            }
            "music" => Reply::Music {
                title: get("title")?,
                description: get("description")?,
                music_url: get("music_url")?,
                hq_music_url: get("hq_music_url")?,
                thumb_media_id: get("thumb_media_id")?,
            },
            "news" => {
                let mut list = Vec::with_capacity(articles.len());
                for names in articles {
                    let r = |i: usize| self.templates.render(&names[i], msg).map_err(|e| e.to_string());
                    list.push(Article { title: r(0)?, description: r(1)?, url: r(2)?, pic_url: r(3)? });
                }
                Reply::news(list).map_err(|e| e.to_string())?
            }
            "transfer_customer_service" => {
                let kf = get("kf_account")?;
                Reply::TransferCustomerService { kf_account: (!kf.is_empty()).then_some(kf) }
            }
            other => return Err(format!("unknown reply kind {other}")),
        };
        Ok(Some(reply))
    }
}
