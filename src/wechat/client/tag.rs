//! Follower tags: create, rename, delete, list, tag and untag followers (up to 50 a call), a
//! follower's tags, a tag's followers. WeChat's limits that can be known before calling are
//! checked here (a name of 1 to 30 bytes, 1 to 50 openids a batch); the rest come back as its
//! errcodes: 45157 (name taken), 45056 (100 tags already), 45058 (tags 0–2 are WeChat's own),
//! 45057 (over 100,000 followers: cannot be deleted), 45059 (a follower's 20 tags), 45159
//! (no such tag), 40003 (not a follower of this account).

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

/// A tag's name must be 1 to 30 bytes (UTF-8: ten Chinese characters).
pub const MAX_TAG_NAME_BYTES: usize = 30;
/// Followers tagged or untagged in one call.
pub const MAX_TAG_BATCH: usize = 50;
/// Tags an account may have, and one follower may hold.
pub const MAX_TAGS: usize = 100;
pub const MAX_TAGS_PER_FOLLOWER: usize = 20;

fn check_name(name: &str) -> Result<(), CallError> {
    if name.trim().is_empty() || name.len() > MAX_TAG_NAME_BYTES {
        return Err(CallError::Invalid(format!("a tag name is 1 to {MAX_TAG_NAME_BYTES} bytes, got {}", name.len())));
    }
    Ok(())
}

impl Client {
    pub async fn tag_create(&self, name: &str) -> Result<Tag, CallError> {
        check_name(name)?;
        #[derive(Deserialize)]
        struct Answer {
            tag: Tag,
        }
        self.post::<_, Answer>(Family::Tag, "/cgi-bin/tags/create", &json!({ "tag": { "name": name } }))
            .await
            .map(|a| a.tag)
    }

    pub async fn tag_rename(&self, id: i64, name: &str) -> Result<(), CallError> {
        check_name(name)?;
        let body = json!({ "tag": { "id": id, "name": name } });
        self.post::<_, Ack>(Family::Tag, "/cgi-bin/tags/update", &body).await.map(|_| ())
    }

    pub async fn tag_delete(&self, id: i64) -> Result<(), CallError> {
        self.post::<_, Ack>(Family::Tag, "/cgi-bin/tags/delete", &json!({ "tag": { "id": id } })).await.map(|_| ())
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
        if openids.is_empty() || openids.len() > MAX_TAG_BATCH {
            return Err(CallError::Invalid(format!(
                "tagging takes 1 to {MAX_TAG_BATCH} openids, got {}",
                openids.len()
            )));
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
