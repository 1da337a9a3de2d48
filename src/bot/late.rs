//! Late replies: a handler that misses the reply deadline is answered `success`, and its
//! reply follows as a customer-service message. The `deferred` outcome commits with a
//! late-reply job due `bot.late_takeover_secs` later; the finished handler turns that job into
//! its message, and a job that comes due anyway (the process died) runs the handler again from
//! the logged message. So no reply is lost to a crash between the deadline and the handler's
//! end, and handlers must be safe to run twice.

use super::handlers::HandlerResult;
use super::rules::Action;
use super::{Bot, CatchPanic};
use crate::jobs::Kind;
use crate::jobs::worker::{CustomMessageJob, JobCtx, SendError, Sent};
use crate::store::messages::JobRow;
use crate::wechat::client::message::CustomMessage;
use crate::wechat::message::Message;
use std::sync::Arc;
use std::time::Duration;

/// The late-reply job's payload.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LateReplyJob {
    message_id: i64,
}

/// The dedupe key of a message's late-reply job (and of the reply it becomes).
fn late_key(message_id: i64) -> String {
    format!("late:{message_id}")
}

impl Bot {
    /// The late-reply job of message `id`, committed with its `deferred` outcome.
    pub(super) fn late_job(&self, id: i64) -> JobRow {
        JobRow {
            kind: Kind::LateReply.as_str(),
            payload: serde_json::json!(LateReplyJob { message_id: id }).to_string(),
            dedupe_key: late_key(id),
            run_at: self.now_ms() + self.late_takeover.as_millis() as i64,
        }
    }

    /// A deferred handler finished: its reply turns the late-reply job into a customer-service
    /// message due now (or, with nothing to send, the job is done) — unless the job was taken
    /// over meanwhile (this process was too slow), which then sends the reply instead.
    pub(super) async fn deliver_late(&self, id: i64, openid: &str, handler: &str, result: HandlerResult) {
        let store = self.log.store();
        let message = match result {
            Ok(Some(reply)) if reply.validate().is_ok() => CustomMessage::from_reply(&reply),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(handler, error = %e, "late handler failed");
                None
            }
        };
        let changed = match message {
            Some(message) => {
                let payload = serde_json::json!(CustomMessageJob { touser: openid.to_owned(), message }).to_string();
                crate::jobs::outbox::become_due(store, &late_key(id), Kind::CustomMessage, &payload).await
            }
            None => crate::jobs::outbox::finish_queued(store, &late_key(id), "no late reply").await,
        };
        match changed {
            Ok(true) => self.outbox_wake.notify_one(),
            Ok(false) => tracing::info!(message_id = id, "late reply: the job was taken over"),
            Err(e) => {
                tracing::error!(message_id = id, openid = %crate::mask(openid), error = %e, "late reply not queued; its job will run the handler again")
            }
        }
    }

    /// The late-reply job ([`Kind::LateReply`]), run when it comes due: its handler did not
    /// turn it into a reply in time — the process died, or was slow — so the handler runs again
    /// from the logged message and its reply is sent now.
    pub async fn late_reply(self: Arc<Self>, ctx: JobCtx, payload: String) -> Sent {
        let job: LateReplyJob = crate::jobs::worker::payload(&payload)?;
        let raw: Option<String> = crate::with_pool!(&ctx.store, pool => sqlx::query_scalar(
            "SELECT raw_xml FROM inbound_messages WHERE id = $1").bind(job.message_id).fetch_optional(pool).await)
        .map_err(SendError::Db)?;
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Some("skipped: the message is no longer in the log".into()));
        };
        let msg = Message::parse(&raw).map_err(|e| SendError::Bad(format!("logged message: {e}")))?;
        let handler = match self.routing().rules.route(&msg).map(|r| &r.action) {
            Some(Action::Handler(h)) => self.handlers.get(h).cloned(),
            _ => None,
        };
        let Some(handler) = handler else { return Ok(Some("skipped: no handler routes it now".into())) };
        let openid = msg.openid.clone();
        let run = CatchPanic(handler(self.handler_ctx(Arc::new(msg))));
        let result = match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(result) => result.and_then(|r| r),
            Err(_) => return Err(SendError::Bad("the handler ran again and missed 30 s".into())),
        };
        match result {
            Ok(Some(reply)) if reply.validate().is_ok() => match CustomMessage::from_reply(&reply) {
                Some(message) => {
                    ctx.client.custom_send(&openid, &message).await.map_err(SendError::Api)?;
                    Ok(Some("late reply sent (handler run again)".into()))
                }
                None => Ok(Some("no late reply".into())),
            },
            Ok(_) => Ok(Some("no late reply".into())),
            Err(e) => Err(SendError::Bad(format!("handler: {e}"))),
        }
    }
}
