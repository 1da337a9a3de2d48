//! Why a console page answers with something other than itself ([`Error`]), and why a form is
//! refused ([`Invalid`]).
//!
//! Handlers return `Result<Response, Error>` and use `?`. An [`Error`] is a redirect to the
//! login page or a page of its own — a title and a sentence, Chinese first, then English —
//! left for the page layer ([`crate::http::page::render`]) to render as the console's
//! `message.html`, in the console's layout; a database failure is logged and is a 503 "try
//! again" page, never the login form. A refusal a page shows inline (beside the form it was
//! posted from) is caught by its handler before it becomes an [`Error`].

use crate::error::PageError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a console request is answered with something other than its page.
#[derive(Debug)]
pub(super) enum Error {
    /// Not signed in (or the sign-in ended): to the login page.
    SignIn,
    /// A form without this session's token: posted from elsewhere (403).
    ForeignForm,
    /// No such campaign, push, reply, follower…: the sentence saying which (404).
    NotFound(&'static str),
    /// A refusal from a domain that the page does not show inline: its status and reason.
    Refused(StatusCode, String),
    /// A form that does not read (400), where no page shows it inline.
    Invalid(Invalid),
    /// The database (or WeChat) failed: logged, and a 503 page.
    Unavailable(String),
}

pub(super) const NO_CAMPAIGN: &str = "没有这个活动 No such campaign";
pub(super) const NO_ARTICLE: &str = "没有这篇文章 No such article";
pub(super) const NO_PUSH: &str = "没有这个推送 No such push";
pub(super) const NO_REPLY: &str = "没有这条回复 No such reply";
pub(super) const NO_SEGMENT: &str = "没有这个分组 No such segment";
pub(super) const NO_FOLLOWER: &str = "没有这位粉丝 No such follower";

/// The titles of the error pages.
pub(super) const NOT_FOUND: &str = "未找到 Not found";
pub(super) const INVALID_FORM: &str = "表单无效 Invalid form";
pub(super) const NOT_POSSIBLE: &str = "无法完成 Not possible";
pub(super) const FAILED: &str = "系统出错 Something went wrong";
/// What a foreign form is told (the console's forms all carry the session's token).
pub(super) const FOREIGN_FORM: &str = "表单无效，请刷新页面 invalid form; reload the page";
/// What a database failure is told.
pub(super) const TRY_AGAIN: &str = "系统出错，请稍后再试 Something went wrong on our side; please try again.";

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Unavailable(format!("database: {e}"))
    }
}

impl From<Invalid> for Error {
    fn from(why: Invalid) -> Self {
        Error::Invalid(why)
    }
}

impl From<crate::campaigns::Error> for Error {
    fn from(e: crate::campaigns::Error) -> Self {
        use crate::campaigns::Refusal;
        match e {
            crate::campaigns::Error::Refused(r) => {
                let status = match r {
                    Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
                    Refusal::Rule(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    Refusal::NotFound(_) => StatusCode::NOT_FOUND,
                    Refusal::Conflict(_) => StatusCode::CONFLICT,
                };
                Error::Refused(status, r.to_string())
            }
            crate::campaigns::Error::Db(e) => e.into(),
        }
    }
}

impl From<crate::replies::Error> for Error {
    fn from(e: crate::replies::Error) -> Self {
        use crate::replies::Error as E;
        match e {
            E::Invalid(why) => Error::Refused(StatusCode::BAD_REQUEST, why),
            E::NotFound(_) => Error::NotFound(NO_REPLY),
            E::Conflict(why) => Error::Refused(StatusCode::CONFLICT, why),
            E::TooMany(why) => Error::Refused(StatusCode::UNPROCESSABLE_ENTITY, why),
            E::Db(e) => e.into(),
        }
    }
}

impl From<crate::audiences::Error> for Error {
    fn from(e: crate::audiences::Error) -> Self {
        use crate::audiences::Error as E;
        match e {
            E::Invalid(why) => Error::Refused(StatusCode::BAD_REQUEST, why),
            taken @ E::Taken(_) => Error::Refused(StatusCode::CONFLICT, taken.to_string()),
            E::Db(e) => e.into(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let page = match self {
            Error::SignIn => PageError::SignIn("/admin/login".into()),
            Error::ForeignForm => PageError::refused(StatusCode::FORBIDDEN, INVALID_FORM, FOREIGN_FORM),
            Error::NotFound(what) => PageError::refused(StatusCode::NOT_FOUND, NOT_FOUND, what),
            Error::Refused(StatusCode::NOT_FOUND, why) => PageError::refused(StatusCode::NOT_FOUND, NOT_FOUND, why),
            Error::Refused(status, why) => PageError::refused(status, NOT_POSSIBLE, why),
            Error::Invalid(why) => PageError::refused(StatusCode::BAD_REQUEST, INVALID_FORM, why.to_string()),
            Error::Unavailable(why) => {
                tracing::error!(error = %why, "console: database or API failure");
                PageError::refused(StatusCode::SERVICE_UNAVAILABLE, FAILED, TRY_AGAIN)
            }
        };
        page.into_response()
    }
}

/// Why a console form was refused before anything was asked of a domain; shown as it is
/// (beside the form, or on a page of its own).
#[derive(Debug, thiserror::Error)]
pub(super) enum Invalid {
    /// The body is not a URL-encoded form of the page's fields.
    #[error("表单无效 invalid form: {0}")]
    Unreadable(#[from] serde_urlencoded::de::Error),
    #[error("{0:?} 不是推送类型 is not a push type: 请选择 choose mpnews, text, news")]
    NotAPushType(String),
    #[error("{0:?} 不是受众 is not an audience: all, segment, tag, list")]
    NotAnAudience(String),
    #[error("请选择标签 Choose a tag")]
    NoTag,
    #[error("请选择分组 Choose a segment")]
    NoSegment,
    #[error("库存须为整数 Stock must be a whole number")]
    Stock,
    #[error("文章 articles: {0:?} 不是序号 is not an index")]
    NotAnArticle(String),
    #[error("请至少选择一篇文章 Choose at least one article")]
    NoArticle,
    #[error("请至少选择一位测试粉丝 Pick at least one test follower")]
    NoTester,
    #[error("最多 {0} 位测试粉丝 At most {0} test followers")]
    TooManyTesters(usize),
    #[error("没有这位测试粉丝 No such test follower: {0:?}")]
    NoSuchTester(String),
    /// A segment rule's list with something that is not a number in it.
    #[error("{field}: {value:?} 不是数字 is not a number")]
    NotANumber { field: &'static str, value: String },
    #[error("{field}: {value:?} 不是整数 is not a whole number")]
    NotWhole { field: &'static str, value: String },
    #[error("{field}: {value:?} 须为 是/否/不限 is not yes, no or either")]
    NotYesNo { field: &'static str, value: String },
    /// Rules that read but break one of the segment builder's limits (the domain's words).
    #[error("{0}")]
    Rules(String),
    #[error("优先级 priority {0:?} 不是整数 is not a whole number")]
    Priority(String),
    #[error("{0:?} 不是匹配方式 is not a match: keyword, exact, prefix, regex, click")]
    NotAMatch(String),
    #[error("{0:?} 不是回复类型 is not a reply type: text, news")]
    NotAReplyType(String),
    /// The reply form's hidden version field was tampered with (or the page is very old).
    #[error("表单版本无效，请刷新页面 the form's version is not a number; reload the page")]
    Version,
}
