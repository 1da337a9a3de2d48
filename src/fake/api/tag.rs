//! Tags, with WeChat's documented limits: at most 100 tags an account (45056), a name of at
//! most 30 bytes (45158) and unique (45157); tags 0, 1 and 2 are WeChat's own and cannot be
//! changed (45058); a tag with over 100,000 followers cannot be deleted (45057).
//! `tags/members/batchtagging|batchuntagging` take 1 to 50 openids (40032), an unknown tag is
//! 45159, a follower of another account (or one who left) 40003, and a follower may hold at
//! most 20 tags (45059). `user/tag/get` lists a tag's followers 10,000 a page, `next_openid`
//! as `user/get`; `tags/getidlist` a follower's tags.

use super::{Answer, Req, ok, valid_openid};
use crate::fake::FakeWeChat;
use serde_json::{Value, json};

pub const MAX_TAGS: usize = 100;
pub const MAX_NAME_BYTES: usize = 30;
pub const MAX_TAGS_PER_FOLLOWER: usize = 20;
pub const MAX_BATCH: usize = 50;
/// A tag with more followers than this cannot be deleted through the API.
pub const MAX_DELETABLE: usize = 100_000;
/// The tag ids WeChat keeps for itself (2 is the star group, listed by `tags/get`).
pub const RESERVED: [i64; 3] = [0, 1, 2];

fn name_of(body: &Value) -> Result<&str, (i64, &'static str)> {
    let name = body["tag"]["name"].as_str().ok_or((47001, "data format error"))?;
    if name.trim().is_empty() {
        return Err((47001, "data format error"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err((45158, "tag name too long"));
    }
    Ok(name)
}

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    let body = req.body;
    let mut s = fake.0.state.lock().unwrap();
    match api {
        "tags/create" => {
            let name = name_of(body)?;
            if s.tags.values().any(|n| n == name) {
                return Err((45157, "tag name duplicate"));
            }
            if s.tags.keys().filter(|id| !RESERVED.contains(id)).count() >= MAX_TAGS {
                return Err((45056, "too many tags now, no need to add new"));
            }
            let id = s.next_tag_id;
            s.next_tag_id += 1;
            s.tags.insert(id, name.to_owned());
            Ok(json!({ "tag": { "id": id, "name": name } }))
        }
        "tags/get" => {
            let tags: Vec<Value> = s
                .tags
                .iter()
                .map(|(id, name)| json!({ "id": id, "name": name, "count": s.followers.tag_count(*id) }))
                .collect();
            Ok(json!({ "tags": tags }))
        }
        "tags/update" => {
            let id = body["tag"]["id"].as_i64().ok_or((47001, "data format error"))?;
            let name = name_of(body)?;
            if RESERVED.contains(&id) {
                return Err((45058, "can't modify sys tag"));
            }
            if !s.tags.contains_key(&id) {
                return Err((45159, "invalid tag id"));
            }
            if s.tags.iter().any(|(other, n)| *other != id && n == name) {
                return Err((45157, "tag name duplicate"));
            }
            s.tags.insert(id, name.to_owned());
            ok()
        }
        "tags/delete" => {
            let id = body["tag"]["id"].as_i64().ok_or((47001, "data format error"))?;
            if RESERVED.contains(&id) {
                return Err((45058, "can't modify sys tag"));
            }
            if !s.tags.contains_key(&id) {
                return Err((45159, "invalid tag id"));
            }
            if s.followers.tag_count(id) > MAX_DELETABLE {
                return Err((45057, "can't delete the tag that has too many fans"));
            }
            s.tags.remove(&id);
            s.followers.forget_tag(id);
            ok()
        }
        "tags/members/batchtagging" | "tags/members/batchuntagging" => {
            let tagid = body["tagid"].as_i64().ok_or((47001, "data format error"))?;
            let openids = body["openid_list"].as_array().ok_or((47001, "data format error"))?;
            if openids.is_empty() || openids.len() > MAX_BATCH {
                return Err((40032, "invalid openid_list size"));
            }
            if !s.tags.contains_key(&tagid) || RESERVED.contains(&tagid) {
                return Err((45159, "invalid tag id"));
            }
            let tagging = api.ends_with("batchtagging");
            let mut list = Vec::with_capacity(openids.len());
            // All checked first: WeChat refuses the batch, and nobody is half-tagged.
            for o in openids {
                let openid = o.as_str().filter(|o| valid_openid(o)).ok_or((40003, "invalid openid"))?;
                if !s.followers.is_subscribed(openid) {
                    return Err((40003, "invalid openid"));
                }
                if tagging
                    && s.followers
                        .get(openid)
                        .is_some_and(|f| !f.tags.contains(&tagid) && f.tags.len() >= MAX_TAGS_PER_FOLLOWER)
                {
                    return Err((45059, "has too many tags"));
                }
                list.push(openid);
            }
            let now = fake.now_secs();
            for openid in list {
                let tags = &mut s.followers.seen(openid, now).tags;
                if tagging {
                    tags.insert(tagid);
                } else {
                    tags.remove(&tagid);
                }
            }
            ok()
        }
        "tags/getidlist" => {
            let openid = fake.follower(&mut s, body["openid"].as_str())?;
            let ids: Vec<i64> = s.followers.get(&openid).map(|f| f.tags.iter().copied().collect()).unwrap_or_default();
            Ok(json!({ "tagid_list": ids }))
        }
        "user/tag/get" => {
            let tagid = body["tagid"].as_i64().ok_or((47001, "data format error"))?;
            if !s.tags.contains_key(&tagid) {
                return Err((45159, "invalid tag id"));
            }
            let after = body["next_openid"].as_str().unwrap_or("");
            let page: Vec<&String> = s
                .followers
                .with_tag(tagid)
                .map(|(o, _)| o)
                .filter(|o| after.is_empty() || o.as_str() > after)
                .take(super::user::PAGE)
                .collect();
            let next = page.last().map(|o| o.as_str()).unwrap_or("");
            Ok(json!({ "count": page.len(), "data": { "openid": page }, "next_openid": next }))
        }
        _ => Err((404, "no such API in the fake")),
    }
}
