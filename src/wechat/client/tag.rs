//! Follower tags: create, list, tag and untag followers (up to 50 a call), a follower's tags,
//! a tag's followers.

use super::user::FollowerPage;
use super::{Ack, CallError, Client, Family};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub count: i64,
}

impl Client {
    pub async fn tag_create(&self, name: &str) -> Result<Tag, CallError> {
        #[derive(Deserialize)]
        struct Answer {
            tag: Tag,
        }
        self.post::<_, Answer>(Family::Tag, "/cgi-bin/tags/create", &json!({ "tag": { "name": name } }))
            .await
            .map(|a| a.tag)
    }

    pub async fn tag_list(&self) -> Result<Vec<Tag>, CallError> {
        #[derive(Deserialize)]
        struct Answer {
            tags: Vec<Tag>,
        }
        self.get::<Answer>(Family::Tag, "/cgi-bin/tags/get", &[]).await.map(|a| a.tags)
    }

    /// Tags (or with `untag`, untags) up to 50 followers.
    pub async fn tag_members(&self, tagid: i64, openids: &[&str], untag: bool) -> Result<(), CallError> {
        if openids.is_empty() || openids.len() > 50 {
            return Err(CallError::Invalid(format!("tagging takes 1 to 50 openids, got {}", openids.len())));
        }
        let path = if untag { "/cgi-bin/tags/members/batchuntagging" } else { "/cgi-bin/tags/members/batchtagging" };
        self.post::<_, Ack>(Family::Tag, path, &json!({ "openid_list": openids, "tagid": tagid })).await.map(|_| ())
    }

    /// The tag ids of one follower.
    pub async fn tags_of(&self, openid: &str) -> Result<Vec<i64>, CallError> {
        #[derive(Deserialize)]
        struct Answer {
            tagid_list: Vec<i64>,
        }
        self.post::<_, Answer>(Family::Tag, "/cgi-bin/tags/getidlist", &json!({ "openid": openid }))
            .await
            .map(|a| a.tagid_list)
    }

    /// Followers with a tag, after `next_openid`.
    pub async fn tag_followers(&self, tagid: i64, next_openid: &str) -> Result<FollowerPage, CallError> {
        self.post(Family::Tag, "/cgi-bin/user/tag/get", &json!({ "tagid": tagid, "next_openid": next_openid })).await
    }
}
