//! The custom menu: `menu/create`, `get`, `delete`, `addconditional`, `delconditional`,
//! `trymatch` (at most 3 buttons).

use super::{Answer, Req, ok};
use crate::fake::FakeWeChat;
use serde_json::json;

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    let body = req.body;
    match api {
        "menu/create" => {
            let buttons = body["button"].as_array().ok_or((47001, "data format error"))?;
            if buttons.is_empty() || buttons.len() > 3 {
                return Err((40016, "invalid button size"));
            }
            fake.0.state.lock().unwrap().menu = Some(json!({ "button": buttons }));
            ok()
        }
        "menu/get" => {
            let s = fake.0.state.lock().unwrap();
            match &s.menu {
                None => Err((46003, "menu no exist")),
                Some(menu) => Ok(json!({ "menu": menu, "conditionalmenu": s.conditional })),
            }
        }
        "menu/delete" => {
            let mut s = fake.0.state.lock().unwrap();
            s.menu = None;
            s.conditional.clear();
            ok()
        }
        "menu/addconditional" => {
            if body["matchrule"].is_null() {
                return Err((47001, "data format error"));
            }
            let id = fake.next_id();
            let mut menu = body.clone();
            menu["menuid"] = json!(id);
            fake.0.state.lock().unwrap().conditional.push(menu);
            Ok(json!({ "menuid": id }))
        }
        "menu/delconditional" => {
            let id = body["menuid"].as_i64().ok_or((47001, "data format error"))?;
            let mut s = fake.0.state.lock().unwrap();
            let before = s.conditional.len();
            s.conditional.retain(|m| m["menuid"].as_i64() != Some(id));
            if s.conditional.len() == before { Err((65301, "no such conditional menu")) } else { ok() }
        }
        "menu/trymatch" => {
            let s = fake.0.state.lock().unwrap();
            let user = body["user_id"].as_str().unwrap_or_default();
            let tags = s.followers.get(user).map(|f| f.tags.clone()).unwrap_or_default();
            let matched = s.conditional.iter().find(|m| {
                m["matchrule"]["tag_id"].as_str().and_then(|t| t.parse::<i64>().ok()).is_some_and(|t| tags.contains(&t))
            });
            match matched.or(s.menu.as_ref()) {
                Some(menu) => Ok(json!({ "button": menu["button"] })),
                None => Err((46003, "menu no exist")),
            }
        }
        _ => Err((404, "no such API in the fake")),
    }
}
