//! Mass sends: `message/mass/sendall` (to everyone who follows, or a tag's members),
//! `message/mass/send` (2 to 10,000 openids), `preview`, `get` and `delete`. Counted as WeChat
//! counts them (see [`crate::fake::followers`]); a repeated `clientmsgid` is 45065 with the
//! first send's msg_id (45066 within a minute); MASSSENDJOBFINISH follows with the figures.
//! `delete` takes down an `mpnews` or `mpvideo` send (40008 for any other type, 40059 for a
//! msg_id it never sent or an article it does not have), one article (`article_idx` from 1)
//! or all of them (0 or absent); `get` then answers `DELETE`.

use super::{Answer, Req, ok};
use crate::fake::FakeWeChat;
use serde_json::{Value, json};

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    let body = req.body;
    match api {
        "message/mass/sendall" | "message/mass/send" => send(fake, api, body),
        "message/mass/preview" => {
            let mut s = fake.0.state.lock().unwrap();
            fake.follower(&mut s, body["touser"].as_str())?;
            ok()
        }
        "message/mass/get" => {
            let id = body["msg_id"].as_i64().ok_or((47001, "data format error"))?;
            let s = fake.0.state.lock().unwrap();
            let status = match s.mass_sent.get(&id) {
                Some(m) if m.deleted.len() >= m.articles => "DELETE",
                _ => "SEND_SUCCESS",
            };
            Ok(json!({ "msg_id": id, "msg_status": status }))
        }
        "message/mass/delete" => delete(fake, body),
        _ => Err((404, "no such API in the fake")),
    }
}

/// Who a successful mass send or preview reached, for the call record (at most 10,000).
pub(super) fn reached(fake: &FakeWeChat, path: &str, body: &Value, answer: Option<&Value>) -> Option<Vec<String>> {
    match path {
        "/cgi-bin/message/mass/preview" => body["touser"].as_str().map(|o| vec![o.to_owned()]),
        "/cgi-bin/message/mass/sendall" | "/cgi-bin/message/mass/send" => {
            let id = answer?["msg_id"].as_i64()?;
            fake.0.state.lock().unwrap().mass_reached.remove(&id)
        }
        _ => None,
    }
}

fn send(fake: &FakeWeChat, api: &str, body: &Value) -> Answer {
    let msgtype = body["msgtype"].as_str().unwrap_or_default();
    if body[msgtype].is_null() {
        return Err((47001, "data format error"));
    }
    if msgtype == "mpnews" && body["mpnews"]["media_id"].as_str().is_none_or(|m| !m.starts_with("DRAFT_")) {
        return Err((40007, "invalid media_id"));
    }
    let mut s = fake.0.state.lock().unwrap();
    // Whom it aims at: the list, everyone who follows, or the tag's members.
    let targets: Vec<String> = if api.ends_with("/send") {
        let to = body["touser"].as_array().ok_or((47001, "data format error"))?;
        if to.len() < 2 || to.len() > 10_000 {
            return Err((40130, "invalid openid list size, at least two openid"));
        }
        to.iter().filter_map(Value::as_str).map(str::to_owned).collect()
    } else if body["filter"]["is_to_all"].as_bool() == Some(true) {
        s.followers.subscribed().map(|(o, _)| o.clone()).collect()
    } else {
        let tag = body["filter"]["tag_id"].as_i64().ok_or((40050, "invalid tag id"))?;
        if !s.tags.contains_key(&tag) {
            return Err((40050, "invalid tag id"));
        }
        s.followers.with_tag(tag).map(|(o, _)| o.clone()).collect()
    };
    if let Some(id) = body["clientmsgid"].as_str()
        && let Some(&(prev, at)) = s.clientmsgids.get(id)
    {
        if fake.now_ms() - at < s.knobs.clientmsgid_retry_ms.unwrap_or(60_000) {
            return Err((45066, "clientmsgid retry too fast, please wait 1 minute"));
        }
        return Ok(json!({ "errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": prev, "msg_data_id": prev }));
    }
    let msg_id = fake.next_id();
    let articles = match msgtype {
        "mpnews" => s
            .drafts
            .get(body["mpnews"]["media_id"].as_str().unwrap_or_default())
            .and_then(Value::as_array)
            .map_or(1, Vec::len),
        _ => 1,
    };
    s.mass_sent.insert(msg_id, crate::fake::SentMass { msgtype: msgtype.to_owned(), articles, ..Default::default() });
    if let Some(id) = body["clientmsgid"].as_str() {
        s.clientmsgids.insert(id.to_owned(), (msg_id, fake.now_ms()));
    }
    let (total, sent) =
        s.followers.mass_send(targets.iter().map(String::as_str), china_month(fake), fake.now_ms() / 1000);
    if targets.len() <= 10_000 {
        let reached = targets.into_iter().filter(|o| s.followers.get(o).is_some_and(|f| f.subscribed)).collect();
        s.mass_reached.insert(msg_id, reached);
    }
    drop(s);
    finished(fake, msg_id, total, sent);
    Ok(json!({ "errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id, "msg_data_id": msg_id }))
}

/// `message/mass/delete`: `{"msg_id": n, "article_idx": k}`.
fn delete(fake: &FakeWeChat, body: &Value) -> Answer {
    let id = body["msg_id"].as_i64().ok_or((40059, "invalid msg id"))?;
    let idx = match &body["article_idx"] {
        Value::Null => 0,
        v => v.as_u64().ok_or((47001, "data format error"))? as usize,
    };
    let mut s = fake.0.state.lock().unwrap();
    let sent = s.mass_sent.get_mut(&id).ok_or((40059, "invalid msg id"))?;
    if sent.msgtype != "mpnews" && sent.msgtype != "mpvideo" {
        return Err((40008, "invalid message type"));
    }
    if idx > sent.articles {
        return Err((40059, "invalid msg id"));
    }
    if idx == 0 {
        sent.deleted.extend(1..=sent.articles);
    } else {
        sent.deleted.insert(idx);
    }
    ok()
}

/// MASSSENDJOBFINISH with WeChat's figures: `total` aimed at, `sent` after its filtering (who
/// left, who already had this month's four); nothing fails in the fake.
fn finished(fake: &FakeWeChat, msg_id: i64, total: i64, sent: i64) {
    let counts = format!(
        "<Status><![CDATA[send success]]></Status><TotalCount>{total}</TotalCount><FilterCount>{sent}</FilterCount>\
         <SentCount>{sent}</SentCount><ErrorCount>0</ErrorCount>"
    );
    fake.finish_event("oFAKEMASSSENDER0000000000000", "MASSSENDJOBFINISH", msg_id, counts);
}

/// The calendar month in China (`yyyymm`), which WeChat's four-a-month limit counts in.
fn china_month(fake: &FakeWeChat) -> i32 {
    use chrono::Datelike;
    let t = crate::clock::china_time(fake.now_ms());
    t.year() * 100 + t.month() as i32
}
