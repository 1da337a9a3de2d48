//! What the push and preview forms let staff pick by name instead of typing ids: WeChat tags
//! (each segment's, and the account's own from `tags/get`), test followers (the follower
//! directory's remark, or a masked openid), and which of the campaign's articles to send.
//!
//! A page never carries a follower's openid: a test follower is picked by a key (`f12`, the
//! directory's id; `t0`, the first of `campaigns.test_openids`) that the server turns back into
//! the openid when the form comes back.

use super::error::{Error, Invalid};
use crate::state::AppState;
use minijinja::context;
use std::collections::HashMap;
use std::time::Duration;

/// How long a page waits for WeChat (its tag list, test followers' remarks) before doing without.
const WECHAT_WAIT: Duration = Duration::from_secs(3);
/// Directory followers offered as test followers (besides the configured ones).
const TESTERS: i64 = 50;

/// Every value of `key` in a URL-encoded form (checkboxes with one name), in order.
pub(super) fn repeated(raw: &[u8], key: &str) -> Vec<String> {
    form_urlencoded::parse(raw).filter(|(k, _)| k == key).map(|(_, v)| v.into_owned()).collect()
}

/// What the console calls tags and segments by, so a push reads "标签 tag VIP (100)" rather
/// than a bare number.
#[derive(Default)]
pub(super) struct Names {
    pub tags: HashMap<i64, String>,
    pub segments: HashMap<i64, String>,
}

/// The segments' names (and their tags'), from the database only.
pub(super) async fn names(app: &AppState) -> Result<Names, sqlx::Error> {
    let mut names = Names::default();
    for g in crate::audiences::list(&app.store).await? {
        if let Some(tag) = g.tag_id {
            names.tags.insert(tag, g.name.clone());
        }
        names.segments.insert(g.id, g.name);
    }
    Ok(names)
}

/// The names one push's audience needs: the database's, and WeChat's tag list only when the
/// push goes to a tag no segment names (so a page about one push waits on WeChat only then).
pub(super) async fn names_for(
    app: &AppState,
    audience: &crate::campaigns::schedule::Audience,
) -> Result<Names, sqlx::Error> {
    let names = names(app).await?;
    match audience {
        crate::campaigns::schedule::Audience::Tag { tag_id } if !names.tags.contains_key(tag_id) => {
            Ok(tags(app).await?.2)
        }
        _ => Ok(names),
    }
}

/// The tags a push may go to, named: each segment's tag (`分组 Segment: name`) and WeChat's own
/// list; `false` when WeChat's list could not be had (the segments' still are); and every name
/// known.
pub(super) async fn tags(app: &AppState) -> Result<(Vec<minijinja::Value>, bool, Names), sqlx::Error> {
    let mut names = names(app).await?;
    let mut out = Vec::new();
    let mut by_segment: Vec<(&i64, &String)> = names.tags.iter().collect();
    by_segment.sort();
    for (id, name) in by_segment {
        out.push(context! { id, name => format!("分组 Segment: {name}") });
    }
    let listed = match tokio::time::timeout(WECHAT_WAIT, app.client.tag_list()).await {
        Ok(Ok(list)) => {
            for t in list {
                if let std::collections::hash_map::Entry::Vacant(e) = names.tags.entry(t.id) {
                    out.push(context! { id => t.id, name => format!("{} · {} 人 followers", t.name, t.count) });
                    e.insert(t.name);
                }
            }
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "console: WeChat's tag list (tags/get) failed; segments' tags only");
            false
        }
        Err(_) => {
            tracing::warn!("console: WeChat's tag list (tags/get) did not answer in time; segments' tags only");
            false
        }
    };
    Ok((out, listed, names))
}

/// The followers a preview can go to, by name: `campaigns.test_openids` first (checked; in
/// `wxoa dev`, the simulated followers), then followers from the directory. Each has a key, a
/// label (WeChat's remark — from the directory, or for a configured one it does not name, from
/// WeChat's `user/info/batchget` — else the masked openid) and whether it is checked.
pub(super) async fn testers(app: &AppState) -> Result<Vec<minijinja::Value>, sqlx::Error> {
    let configured = &app.config.campaigns.test_openids;
    let filter = crate::followers::Filter { subscribed: Some(true), ..Default::default() };
    let (directory, _) = crate::followers::list(&app.store, &filter, 0, TESTERS).await?;
    let label = |openid: &str, remark: Option<&str>| match remark.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("{r} ({})", crate::mask(openid)),
        None => crate::mask(openid),
    };
    let known = |openid: &String| directory.iter().find(|f| &f.openid == openid).and_then(|f| f.remark.clone());
    let unnamed: Vec<&str> = configured.iter().filter(|o| known(o).is_none()).map(String::as_str).take(100).collect();
    let mut asked = std::collections::HashMap::new();
    if !unnamed.is_empty() {
        match tokio::time::timeout(WECHAT_WAIT, app.client.user_info_batch(&unnamed)).await {
            Ok(Ok(infos)) => asked.extend(infos.into_iter().map(|u| (u.openid, u.remark))),
            Ok(Err(e)) => tracing::warn!(error = %e, "console: test followers' remarks (user/info/batchget) failed"),
            Err(_) => tracing::warn!("console: test followers' remarks (user/info/batchget) did not answer in time"),
        }
    }
    let mut out = Vec::new();
    for (i, openid) in configured.iter().enumerate() {
        let remark = known(openid).or_else(|| asked.get(openid).cloned());
        out.push(context! { key => format!("t{i}"), label => label(openid, remark.as_deref()), checked => true });
    }
    for f in directory.iter().filter(|f| !configured.contains(&f.openid)) {
        out.push(
            context! { key => format!("f{}", f.id), label => label(&f.openid, f.remark.as_deref()), checked => false },
        );
    }
    Ok(out)
}

/// The openids the picked keys stand for; a key that names nobody is refused
/// ([`Error::Invalid`], which the page shows beside the form).
pub(super) async fn resolve_testers(app: &AppState, keys: &[String]) -> Result<Vec<String>, Error> {
    // Each key may cost a lookup: bounded before any is made (a form can repeat a key).
    let mut unique: Vec<&String> = Vec::new();
    for key in keys {
        if !unique.contains(&key) {
            unique.push(key);
        }
        if unique.len() > crate::campaigns::send::MAX_PREVIEW_RECIPIENTS {
            return Err(Invalid::TooManyTesters(crate::campaigns::send::MAX_PREVIEW_RECIPIENTS).into());
        }
    }
    let mut out = Vec::new();
    for key in unique {
        let openid = match (key.get(..1), key.get(1..).and_then(|n| n.parse::<i64>().ok())) {
            (Some("t"), Some(i)) => {
                usize::try_from(i).ok().and_then(|i| app.config.campaigns.test_openids.get(i)).cloned()
            }
            (Some("f"), Some(id)) => crate::followers::get(&app.store, id).await?.map(|f| f.openid),
            _ => None,
        };
        match openid {
            Some(o) if !out.contains(&o) => out.push(o),
            Some(_) => {}
            None => return Err(Invalid::NoSuchTester(key.clone()).into()),
        }
    }
    Ok(out)
}

/// The articles a form picked (checkboxes `articles`, values 0…): `None` for all of them (the
/// default, which also takes articles added later), or when the form had no article choice.
pub(super) fn chosen_articles(raw: &[u8], count: usize) -> Result<Option<Vec<i64>>, Invalid> {
    if repeated(raw, "articles_shown").is_empty() {
        return Ok(None);
    }
    let picked = repeated(raw, "articles")
        .into_iter()
        .map(|v| v.parse::<i64>().map_err(|_| Invalid::NotAnArticle(v)))
        .collect::<Result<Vec<_>, _>>()?;
    if picked.is_empty() {
        return Err(Invalid::NoArticle);
    }
    let all = picked.len() == count && (0..count as i64).all(|i| picked.contains(&i));
    Ok((!all).then_some(picked))
}

/// The campaign's articles as the forms list them.
pub(super) fn articles(campaign: &crate::campaigns::Campaign) -> Vec<minijinja::Value> {
    campaign.articles.iter().enumerate().map(|(i, a)| context! { index => i, n => i + 1, title => a.title }).collect()
}
