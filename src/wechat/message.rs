//! Inbound messages and events, as WeChat posts them to the webhook.
//!
//! Every message starts with the same header — `ToUserName` (our account's original id),
//! `FromUserName` (the follower's openid), `CreateTime` (unix seconds) and `MsgType` — and the
//! rest depends on `MsgType`: `text`, `image`, `voice`, `video`, `shortvideo`, `location`,
//! `link`, or `event`, where `Event` names the kind of event. We read the header first, then the
//! body for that type. A type or event we do not know is kept raw (`Unknown`) rather than
//! refused: WeChat adds event types over time, and a 500 would only make it retry.

use super::xml::{self, Fields, XmlError};

/// Longest openid / account id we accept (real ones are 28 and 15 characters).
const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Xml(XmlError),
    Missing(&'static str),
    Invalid(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Xml(e) => e.fmt(f),
            ParseError::Missing(name) => write!(f, "missing <{name}>"),
            ParseError::Invalid(name) => write!(f, "invalid <{name}>"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<XmlError> for ParseError {
    fn from(e: XmlError) -> Self {
        ParseError::Xml(e)
    }
}

/// One inbound message or event.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `ToUserName`: the Official Account's original id (`gh_…`).
    pub to_user_name: String,
    /// `FromUserName`: the follower's openid.
    pub openid: String,
    /// `CreateTime`, unix seconds.
    pub create_time: i64,
    /// `MsgType` as sent (a type wxoa does not model keeps its name).
    pub msg_type: MsgType,
    pub body: Body,
    /// Every leaf of the document, for templates and for types we do not model.
    pub fields: Fields,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Text {
        content: String,
        msg_id: i64,
        biz_msg_menu_id: Option<String>,
    },
    Image {
        pic_url: String,
        media_id: String,
        msg_id: i64,
    },
    Voice {
        media_id: String,
        format: String,
        recognition: Option<String>,
        msg_id: i64,
    },
    Video {
        media_id: String,
        thumb_media_id: String,
        msg_id: i64,
    },
    ShortVideo {
        media_id: String,
        thumb_media_id: String,
        msg_id: i64,
    },
    Location {
        location_x: f64,
        location_y: f64,
        scale: i64,
        label: String,
        msg_id: i64,
    },
    Link {
        title: String,
        description: String,
        url: String,
        msg_id: i64,
    },
    Event(Event),
    /// A `MsgType` we do not model; its fields are in [`Message::fields`].
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new follower. `scene` is the `EventKey` without its `qrscene_` prefix when the follow
    /// came from scanning a parametric QR code, with that code's `Ticket`.
    Subscribe {
        scene: Option<String>,
        ticket: Option<String>,
    },
    Unsubscribe,
    /// An existing follower scanned a parametric QR code.
    Scan {
        scene: String,
        ticket: Option<String>,
    },
    /// Periodic location report (when the account asks for it).
    Location {
        latitude: f64,
        longitude: f64,
        precision: f64,
    },
    Click {
        key: String,
    },
    View {
        url: String,
        menu_id: Option<String>,
    },
    ScancodePush {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    ScancodeWaitmsg {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    PicSysphoto {
        key: String,
        pics: Vec<String>,
    },
    PicPhotoOrAlbum {
        key: String,
        pics: Vec<String>,
    },
    PicWeixin {
        key: String,
        pics: Vec<String>,
    },
    LocationSelect {
        key: String,
        location_x: f64,
        location_y: f64,
        scale: i64,
        label: String,
        poiname: Option<String>,
    },
    ViewMiniprogram {
        page_path: String,
        menu_id: Option<String>,
    },
    /// `Status` is `success`, `failed:user block` or `failed: system failed`.
    TemplateSendJobFinish {
        msg_id: i64,
        status: String,
    },
    MassSendJobFinish {
        msg_id: i64,
        status: String,
        total_count: i64,
        filter_count: i64,
        sent_count: i64,
        error_count: i64,
    },
    /// An `Event` we do not model; its fields are in [`Message::fields`].
    Unknown {
        event: String,
    },
}

/// A message's type, as routing rules name it (`msg_type = "text"`). A type wxoa does not model
/// is `Other` with WeChat's name for it, so a rule can still route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgType {
    Text,
    Image,
    Voice,
    Video,
    ShortVideo,
    Location,
    Link,
    Event,
    Other(String),
}

// WeChat's names (`text`, `shortvideo`, `event`, …), as the message log stores them.
crate::stored_as!(open MsgType {
    Text => "text",
    Image => "image",
    Voice => "voice",
    Video => "video",
    ShortVideo => "shortvideo",
    Location => "location",
    Link => "link",
    Event => "event",
} else Other);

impl Event {
    /// WeChat's `Event` name for this event (`subscribe`, `SCAN`, `CLICK`, …).
    pub fn name(&self) -> &str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Scan { .. } => "SCAN",
            Event::Location { .. } => "LOCATION",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::ScancodePush { .. } => "scancode_push",
            Event::ScancodeWaitmsg { .. } => "scancode_waitmsg",
            Event::PicSysphoto { .. } => "pic_sysphoto",
            Event::PicPhotoOrAlbum { .. } => "pic_photo_or_album",
            Event::PicWeixin { .. } => "pic_weixin",
            Event::LocationSelect { .. } => "location_select",
            Event::ViewMiniprogram { .. } => "view_miniprogram",
            Event::TemplateSendJobFinish { .. } => "TEMPLATESENDJOBFINISH",
            Event::MassSendJobFinish { .. } => "MASSSENDJOBFINISH",
            Event::Unknown { event } => event,
        }
    }

    /// Whether this is one of WeChat's own reports (see [`is_platform_report`]).
    pub fn is_platform_report(&self) -> bool {
        is_platform_report(self.name())
    }

    /// The parametric QR code's scene: of a follow by scanning one (`qrscene_` already
    /// stripped) or of a scan while following.
    pub fn scene(&self) -> Option<&str> {
        match self {
            Event::Subscribe { scene, .. } => scene.as_deref(),
            Event::Scan { scene, .. } => Some(scene),
            _ => None,
        }
    }
}

impl Message {
    /// The message's type (its body is that type's, or [`Body::Unknown`] for `Other`).
    pub fn kind(&self) -> &MsgType {
        &self.msg_type
    }

    /// The event, for an event.
    pub fn as_event(&self) -> Option<&Event> {
        match &self.body {
            Body::Event(e) => Some(e),
            _ => None,
        }
    }

    /// What a follower said: a text's content, or a voice message's recognised speech.
    pub fn said(&self) -> Option<&str> {
        match &self.body {
            Body::Text { content, .. } => Some(content),
            Body::Voice { recognition: Some(r), .. } => Some(r),
            _ => None,
        }
    }

    /// Parses a plaintext message document.
    pub fn parse(xml: &str) -> Result<Message, ParseError> {
        let fields = xml::parse(xml)?;
        Self::from_fields(fields)
    }

    pub fn from_fields(fields: Fields) -> Result<Message, ParseError> {
        let to_user_name = id(&fields, "ToUserName")?;
        let openid = id(&fields, "FromUserName")?;
        let create_time = int(&fields, "CreateTime")?;
        let msg_type = MsgType::parse(required(&fields, "MsgType")?);
        let f = &fields;
        let body = match msg_type {
            MsgType::Text => Body::Text {
                content: required(f, "Content")?.to_owned(),
                msg_id: msg_id(f)?,
                biz_msg_menu_id: optional(f, "bizmsgmenuid"),
            },
            MsgType::Image => Body::Image {
                pic_url: text(f, "PicUrl"),
                media_id: required(f, "MediaId")?.to_owned(),
                msg_id: msg_id(f)?,
            },
            MsgType::Voice => Body::Voice {
                media_id: required(f, "MediaId")?.to_owned(),
                format: text(f, "Format"),
                recognition: optional(f, "Recognition"),
                msg_id: msg_id(f)?,
            },
            MsgType::Video | MsgType::ShortVideo => {
                let media_id = required(f, "MediaId")?.to_owned();
                let thumb_media_id = text(f, "ThumbMediaId");
                let msg_id = msg_id(f)?;
                if msg_type == MsgType::Video {
                    Body::Video { media_id, thumb_media_id, msg_id }
                } else {
                    Body::ShortVideo { media_id, thumb_media_id, msg_id }
                }
            }
            MsgType::Location => Body::Location {
                location_x: float(f, "Location_X")?,
                location_y: float(f, "Location_Y")?,
                scale: int_or_zero(f, "Scale")?,
                label: text(f, "Label"),
                msg_id: msg_id(f)?,
            },
            MsgType::Link => Body::Link {
                title: text(f, "Title"),
                description: text(f, "Description"),
                url: required(f, "Url")?.to_owned(),
                msg_id: msg_id(f)?,
            },
            MsgType::Event => Body::Event(parse_event(f)?),
            MsgType::Other(_) => Body::Unknown,
        };
        Ok(Message { to_user_name, openid, create_time, msg_type, body, fields })
    }

    /// `Event` for events.
    pub fn event(&self) -> Option<&str> {
        match self.body {
            Body::Event(_) => self.fields.get("Event"),
            _ => None,
        }
    }

    /// `EventKey` for events that carry one.
    pub fn event_key(&self) -> Option<&str> {
        match self.body {
            Body::Event(_) => self.fields.get("EventKey"),
            _ => None,
        }
    }

    /// `MsgId` (or the job-finish events' `MsgID`) as the integer WeChat sends: `" 123 "`,
    /// `"000123"` and `"123"` are one id. A type we do not model whose id is not a number has
    /// none.
    pub fn msg_id(&self) -> Option<i64> {
        match &self.body {
            Body::Text { msg_id, .. }
            | Body::Image { msg_id, .. }
            | Body::Voice { msg_id, .. }
            | Body::Video { msg_id, .. }
            | Body::ShortVideo { msg_id, .. }
            | Body::Location { msg_id, .. }
            | Body::Link { msg_id, .. } => Some(*msg_id),
            Body::Event(_) => integer_field(&self.fields, "MsgID"),
            Body::Unknown => integer_field(&self.fields, "MsgId").or_else(|| integer_field(&self.fields, "MsgID")),
        }
    }

    /// The key WeChat's retries of this message share. Messages carry a `MsgId`; events do not
    /// (job-finish events carry `MsgID`, which names the job, not the delivery), so for events
    /// WeChat's advice is `FromUserName + CreateTime`, to which we add the event and its key so
    /// two different taps in the same second stay distinct.
    pub fn dedup_key(&self) -> String {
        match &self.body {
            Body::Event(_) => format!(
                "e:{}:{}:{}:{}:{}",
                self.openid,
                self.create_time,
                self.fields.get("Event").unwrap_or(""),
                self.fields.get("EventKey").unwrap_or(""),
                self.msg_id().map(|id| id.to_string()).unwrap_or_default(),
            ),
            _ => match self.msg_id() {
                Some(id) => format!("m:{id}"),
                None => format!("u:{}:{}:{}", self.openid, self.create_time, self.msg_type),
            },
        }
    }
}

fn parse_event(f: &Fields) -> Result<Event, ParseError> {
    let event = required(f, "Event")?;
    let key = || text(f, "EventKey");
    let pics = || f.all("SendPicsInfo/PicList/item/PicMd5Sum").map(str::to_owned).collect();
    let ev = match event {
        "subscribe" => {
            let scene = f.get("EventKey").and_then(|k| k.strip_prefix("qrscene_")).map(str::to_owned);
            Event::Subscribe { scene, ticket: optional(f, "Ticket") }
        }
        "unsubscribe" => Event::Unsubscribe,
        "SCAN" => Event::Scan { scene: key(), ticket: optional(f, "Ticket") },
        "LOCATION" => Event::Location {
            latitude: float(f, "Latitude")?,
            longitude: float(f, "Longitude")?,
            precision: float_or_zero(f, "Precision")?,
        },
        "CLICK" => Event::Click { key: required(f, "EventKey")?.to_owned() },
        "VIEW" => Event::View { url: required(f, "EventKey")?.to_owned(), menu_id: optional(f, "MenuId") },
        "scancode_push" | "scancode_waitmsg" => {
            let key = key();
            let scan_type = text(f, "ScanCodeInfo/ScanType");
            let scan_result = text(f, "ScanCodeInfo/ScanResult");
            if event == "scancode_push" {
                Event::ScancodePush { key, scan_type, scan_result }
            } else {
                Event::ScancodeWaitmsg { key, scan_type, scan_result }
            }
        }
        "pic_sysphoto" => Event::PicSysphoto { key: key(), pics: pics() },
        "pic_photo_or_album" => Event::PicPhotoOrAlbum { key: key(), pics: pics() },
        "pic_weixin" => Event::PicWeixin { key: key(), pics: pics() },
        "location_select" => Event::LocationSelect {
            key: key(),
            location_x: float(f, "SendLocationInfo/Location_X")?,
            location_y: float(f, "SendLocationInfo/Location_Y")?,
            scale: int_or_zero(f, "SendLocationInfo/Scale")?,
            label: text(f, "SendLocationInfo/Label"),
            poiname: optional(f, "SendLocationInfo/Poiname"),
        },
        "view_miniprogram" => Event::ViewMiniprogram { page_path: key(), menu_id: optional(f, "MenuId") },
        "TEMPLATESENDJOBFINISH" => Event::TemplateSendJobFinish { msg_id: int(f, "MsgID")?, status: text(f, "Status") },
        "MASSSENDJOBFINISH" => Event::MassSendJobFinish {
            msg_id: int(f, "MsgID")?,
            status: text(f, "Status"),
            total_count: int_or_zero(f, "TotalCount")?,
            filter_count: int_or_zero(f, "FilterCount")?,
            sent_count: int_or_zero(f, "SentCount")?,
            error_count: int_or_zero(f, "ErrorCount")?,
        },
        other => Event::Unknown { event: other.to_owned() },
    };
    Ok(ev)
}

fn required<'a>(f: &'a Fields, name: &'static str) -> Result<&'a str, ParseError> {
    f.get(name).ok_or(ParseError::Missing(name))
}

fn optional(f: &Fields, name: &str) -> Option<String> {
    f.get(name).filter(|v| !v.is_empty()).map(str::to_owned)
}

fn text(f: &Fields, name: &str) -> String {
    f.get(name).unwrap_or_default().to_owned()
}

fn id(f: &Fields, name: &'static str) -> Result<String, ParseError> {
    let v = required(f, name)?;
    if v.is_empty() || v.len() > MAX_ID_LEN {
        return Err(ParseError::Invalid(name));
    }
    Ok(v.to_owned())
}

fn int(f: &Fields, name: &'static str) -> Result<i64, ParseError> {
    required(f, name)?.trim().parse().map_err(|_| ParseError::Invalid(name))
}

fn int_or_zero(f: &Fields, name: &'static str) -> Result<i64, ParseError> {
    match f.get(name).map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v.parse().map_err(|_| ParseError::Invalid(name)),
    }
}

/// `name` as an integer, when it is there and is one.
fn integer_field(f: &Fields, name: &str) -> Option<i64> {
    f.get(name).and_then(|v| v.trim().parse().ok())
}

fn msg_id(f: &Fields) -> Result<i64, ParseError> {
    int(f, "MsgId")
}

fn float(f: &Fields, name: &'static str) -> Result<f64, ParseError> {
    let v: f64 = required(f, name)?.trim().parse().map_err(|_| ParseError::Invalid(name))?;
    if !v.is_finite() {
        return Err(ParseError::Invalid(name));
    }
    Ok(v)
}

fn float_or_zero(f: &Fields, name: &'static str) -> Result<f64, ParseError> {
    match f.get(name).map(str::trim) {
        None | Some("") => Ok(0.0),
        Some(_) => float(f, name),
    }
}

/// WeChat's own reports, lower-case: delivered as events "from" a follower (a template
/// message's recipient) or from a system sender, they are no one's activity — they create no
/// follower, move no "last interaction" and show in no follower's history.
pub const PLATFORM_REPORTS: &[&str] =
    &["masssendjobfinish", "templatesendjobfinish", "publishjobfinish", "subscribe_msg_sent_event"];

/// Whether an `Event` name is one of [`PLATFORM_REPORTS`] (in any case).
pub fn is_platform_report(event: &str) -> bool {
    PLATFORM_REPORTS.iter().any(|r| r.eq_ignore_ascii_case(event))
}

/// A condition for SQL over `inbound_messages`: no row of WeChat's own reports (built once).
pub fn sql_not_a_report() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let names: Vec<String> = PLATFORM_REPORTS.iter().map(|r| format!("'{r}'")).collect();
        format!("NOT (msg_type = 'event' AND LOWER(COALESCE(event, '')) IN ({}))", names.join(", "))
    });
    &SQL
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(body: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[oFollower]]></FromUserName>\
             <CreateTime>1700000000</CreateTime>{body}</xml>"
        )
    }

    #[test]
    fn header_is_required_and_bounded() {
        let cases: &[(&str, ParseError)] = &[
            (
                "<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
                ParseError::Missing("ToUserName"),
            ),
            (
                "<xml><ToUserName>g</ToUserName><FromUserName>o</FromUserName><CreateTime>x</CreateTime><MsgType>text</MsgType></xml>",
                ParseError::Invalid("CreateTime"),
            ),
            (
                "<xml><ToUserName>g</ToUserName><FromUserName></FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
                ParseError::Invalid("FromUserName"),
            ),
        ];
        for (xml, want) in cases {
            assert_eq!(Message::parse(xml).unwrap_err(), *want);
        }
        let long = doc("<MsgType>text</MsgType>").replace("oFollower", &"o".repeat(65));
        assert_eq!(Message::parse(&long).unwrap_err(), ParseError::Invalid("FromUserName"));
        assert_eq!(
            Message::parse(&doc("<MsgType>text</MsgType><MsgId>1</MsgId>")).unwrap_err(),
            ParseError::Missing("Content")
        );
    }

    #[test]
    fn dedup_keys() {
        let text = Message::parse(&doc("<MsgType>text</MsgType><Content>hi</Content><MsgId>42</MsgId>")).unwrap();
        assert_eq!(text.dedup_key(), "m:42");
        let click = Message::parse(&doc("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>K</EventKey>")).unwrap();
        assert_eq!(click.dedup_key(), "e:oFollower:1700000000:CLICK:K:");
        let fin = Message::parse(&doc(
            "<MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>7</MsgID><Status>success</Status>",
        ))
        .unwrap();
        assert_eq!(fin.dedup_key(), "e:oFollower:1700000000:TEMPLATESENDJOBFINISH::7");
    }

    #[test]
    fn unknown_types_are_kept_raw() {
        let m = Message::parse(&doc("<MsgType>miniprogrampage</MsgType><Title>t</Title>")).unwrap();
        assert_eq!(m.body, Body::Unknown);
        assert_eq!(m.fields.get("Title"), Some("t"));
        let e = Message::parse(&doc("<MsgType>event</MsgType><Event>poi_check_notify</Event>")).unwrap();
        assert_eq!(e.body, Body::Event(Event::Unknown { event: "poi_check_notify".into() }));
    }
}
