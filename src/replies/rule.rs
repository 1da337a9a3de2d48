//! A console reply as a rule: its fields checked, the rule it becomes, a message it takes (to
//! render it before it is stored), and the routing it joins.

use super::{Answer, Error, Match, ReplyInput, Stored};
use crate::bot::Routing;
use crate::bot::rules::{ArticleSpec, Keywords, MatchSpec, RuleSpec};
use crate::text::check_line;
use crate::wechat::message::Message;
use std::sync::Arc;

/// The rule name a stored reply routes under (never one of the file's: they have no colon
/// prefix of ours).
pub fn rule_name(name: &str) -> String {
    format!("console:{name}")
}

fn is_http(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// Checks a reply's fields; the error names the field.
pub fn check(input: &ReplyInput) -> Result<(), Error> {
    check_line("name", &input.name, 1, 64)?;
    if input.name.trim() != input.name {
        return Err(Error::Invalid("name: without surrounding spaces".into()));
    }
    if !(-1000..=1000).contains(&input.priority) {
        return Err(Error::Invalid("priority: -1000 to 1000".into()));
    }
    match &input.matching {
        Match::Keyword(words) => {
            if words.is_empty() || words.len() > 50 {
                return Err(Error::Invalid("match.keyword: 1 to 50 keywords".into()));
            }
            for w in words {
                check_line("match.keyword: a keyword", w, 1, 64)?;
                if w.trim().is_empty() {
                    return Err(Error::Invalid("match.keyword: a keyword must not be blank".into()));
                }
            }
        }
        Match::Exact(s) | Match::Prefix(s) => check_line("match", s, 1, 200)?,
        Match::Regex(re) => {
            check_line("match.regex", re, 1, 256)?;
        }
        Match::Click(key) => {
            // WeChat's menu keys are at most 128 bytes.
            if key.is_empty() || key.len() > 128 || key.chars().any(char::is_control) {
                return Err(Error::Invalid("match.click: a menu key of 1 to 128 bytes".into()));
            }
        }
    }
    match &input.reply {
        Answer::Text(t) => {
            if t.trim().is_empty() {
                return Err(Error::Invalid("reply.text: must not be empty".into()));
            }
            // WeChat's passive text reply takes 2048 bytes.
            if t.len() > 2048 {
                return Err(Error::Invalid(format!("reply.text: at most 2048 bytes (got {})", t.len())));
            }
        }
        Answer::News(articles) => {
            if articles.is_empty() || articles.len() > crate::wechat::reply::MAX_ARTICLES {
                return Err(Error::Invalid(format!(
                    "reply.news: 1 to {} articles",
                    crate::wechat::reply::MAX_ARTICLES
                )));
            }
            for (i, a) in articles.iter().enumerate() {
                check_line(&format!("reply.news[{i}].title"), &a.title, 1, 64)?;
                crate::text::check_len(&format!("reply.news[{i}].description"), &a.description, 0, 120)?;
                if !is_http(&a.url) || a.url.len() > 1024 {
                    return Err(Error::Invalid(format!("reply.news[{i}].url: an http(s) URL of at most 1024 bytes")));
                }
                if !a.pic_url.is_empty() && (!is_http(&a.pic_url) || a.pic_url.len() > 1024) {
                    return Err(Error::Invalid(format!(
                        "reply.news[{i}].pic_url: an http(s) URL of at most 1024 bytes"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The rule a reply becomes.
pub(super) fn rule_spec(name: &str, priority: i64, matching: &Match, reply: &Answer) -> RuleSpec {
    let mut spec = RuleSpec { name: rule_name(name), priority, ..Default::default() };
    let table =
        |exact: Option<&str>, prefix: Option<&str>, keyword: Option<&[String]>, regex: Option<&str>| MatchSpec::Table {
            exact: exact.map(str::to_owned),
            prefix: prefix.map(str::to_owned),
            keyword: keyword.map(|k| Keywords::Many(k.to_vec())),
            regex: regex.map(str::to_owned),
        };
    match matching {
        Match::Keyword(words) => spec.text = Some(table(None, None, Some(words), None)),
        Match::Exact(s) => spec.text = Some(table(Some(s), None, None, None)),
        Match::Prefix(s) => spec.text = Some(table(None, Some(s), None, None)),
        Match::Regex(s) => spec.text = Some(table(None, None, None, Some(s))),
        Match::Click(key) => {
            spec.msg_type = Some("event".into());
            spec.event = Some("CLICK".into());
            spec.event_key = Some(MatchSpec::Exact(key.clone()));
        }
    }
    match reply {
        Answer::Text(t) => {
            spec.reply = Some("text".into());
            spec.content = Some(t.clone());
        }
        Answer::News(articles) => {
            spec.reply = Some("news".into());
            spec.articles = articles
                .iter()
                .map(|a| ArticleSpec {
                    title: a.title.clone(),
                    description: a.description.clone(),
                    url: a.url.clone(),
                    pic_url: a.pic_url.clone(),
                })
                .collect();
        }
    }
    spec
}

/// A message that `matching` takes (for checking a reply renders, and for its preview when no
/// sample is given).
pub fn sample(matching: &Match, text: Option<&str>) -> Message {
    let esc = |s: &str| s.replace("]]>", "]]]]><![CDATA[>");
    let head = "<xml><ToUserName><![CDATA[gh_preview]]></ToUserName>\
                <FromUserName><![CDATA[oPREVIEW0000000000000000000]]></FromUserName><CreateTime>1700000000</CreateTime>";
    let xml = match (matching, text) {
        (Match::Click(key), _) => format!(
            "{head}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
             <EventKey><![CDATA[{}]]></EventKey></xml>",
            esc(key)
        ),
        (m, given) => {
            let said = match (given, m) {
                (Some(t), _) => t.to_owned(),
                (None, Match::Keyword(w)) => w.first().cloned().unwrap_or_default(),
                (None, Match::Exact(s) | Match::Prefix(s)) => s.clone(),
                _ => "preview".into(),
            };
            format!(
                "{head}<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{}]]></Content>\
                 <MsgId>1</MsgId></xml>",
                esc(&said)
            )
        }
    };
    Message::parse(&xml).expect("a well-formed sample")
}

/// The routing of `base` with these replies (the enabled ones) among its rules.
pub fn routing(base: &Routing, replies: &[Stored]) -> Result<Routing, crate::bot::ReplyRuleError> {
    let specs =
        replies.iter().filter(|r| r.enabled).map(|r| rule_spec(&r.name, r.priority, &r.matching, &r.reply)).collect();
    base.with(specs)
}

/// Builds `input` into `base` alone and renders it for a message it matches: the reason it
/// would fail to answer, if it would.
pub fn try_build(base: &Routing, input: &ReplyInput, text: Option<&str>) -> Result<(Routing, Message), Error> {
    let spec = rule_spec(&input.name, input.priority, &input.matching, &input.reply);
    let routing = base.with(vec![spec])?;
    let msg = sample(&input.matching, text);
    let name = rule_name(&input.name);
    let rule = routing.rules.iter().find(|r| r.name == name).expect("just built");
    crate::bot::render(&routing, rule, &Arc::new(msg.clone())).map_err(|e| Error::Invalid(format!("reply: {e}")))?;
    Ok((routing, msg))
}
