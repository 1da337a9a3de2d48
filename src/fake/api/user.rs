//! Followers: `user/info` (no nickname or avatar since 2021), `user/info/batchget` (1 to 100:
//! 40032 otherwise), and `user/get`, the list of who follows, 10,000 a page: `next_openid`
//! continues after the last openid returned, and a page past the end is empty with an empty
//! `next_openid`.

use super::{Answer, Req, valid_openid};
use crate::fake::{FakeWeChat, State};
use serde_json::{Value, json};

/// Openids per `user/get` page.
pub const PAGE: usize = 10_000;

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    let now = fake.now_secs();
    match api {
        "user/info" => {
            let mut s = fake.0.state.lock().unwrap();
            let openid = req.query.get("openid").filter(|o| valid_openid(o)).ok_or((40003, "invalid openid"))?;
            s.followers.seen(openid, now);
            Ok(user_json(&s, openid))
        }
        "user/info/batchget" => {
            let mut s = fake.0.state.lock().unwrap();
            let list = req.body["user_list"].as_array().ok_or((47001, "data format error"))?;
            if list.is_empty() || list.len() > 100 {
                return Err((40032, "invalid openid list size"));
            }
            let mut users = Vec::with_capacity(list.len());
            for u in list {
                let openid = u["openid"].as_str().filter(|o| valid_openid(o)).ok_or((40003, "invalid openid"))?;
                s.followers.seen(openid, now);
                users.push(user_json(&s, openid));
            }
            Ok(json!({ "user_info_list": users }))
        }
        "user/get" => {
            let s = fake.0.state.lock().unwrap();
            let after = req.query.get("next_openid").map(String::as_str).unwrap_or("");
            let page = s.followers.page(after, PAGE);
            let total = s.followers.subscribed_count();
            let next = page.last().map(|o| o.as_str()).unwrap_or("").to_owned();
            if page.is_empty() {
                return Ok(json!({ "total": total, "count": 0, "next_openid": "" }));
            }
            Ok(json!({ "total": total, "count": page.len(), "data": { "openid": page }, "next_openid": next }))
        }
        _ => Err((404, "no such API in the fake")),
    }
}

/// `user/info` for `openid` as WeChat answers it (no nickname or avatar since 2021).
pub(super) fn user_json(s: &State, openid: &str) -> Value {
    let Some(f) = s.followers.get(openid).filter(|f| f.subscribed) else {
        return json!({ "subscribe": 0, "openid": openid });
    };
    let tags: Vec<i64> = f.tags.iter().copied().collect();
    json!({ "subscribe": 1, "openid": openid, "language": "zh_CN", "subscribe_time": f.subscribe_time,
            "remark": f.remark, "groupid": 0, "tagid_list": tags, "subscribe_scene": f.scene,
            "qr_scene": 0, "qr_scene_str": f.qr_scene_str })
}
