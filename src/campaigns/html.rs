//! An article body's HTML, cleaned to what a WeChat article shows, on every way in.
//!
//! The body comes from the console's editor, the API and the CLI and goes out in an `mpnews`
//! draft and the console's preview, so it is cleaned here, in the domain, where no entry point can
//! skip it — by [ammonia] (an HTML5 parser, then an allow-list), not a hand-made filter, so markup
//! is parsed the way a browser parses it. The allow-list is what WeChat's article editor produces:
//! * blocks `p`, `br`, `h1`–`h4`, `blockquote`, `ul`/`ol`/`li`, `section`; inline `strong`/`b`,
//!   `em`/`i`, `u`, `s`, `span`;
//! * `a` with `href` and `title`, `img` with `src` and `alt`: absolute `http`/`https` URLs only
//!   (`rel="noopener noreferrer"` added; WeChat shows only images it hosts, via `media/uploadimg`);
//! * `style` on `p`, `span`, `section` and `h1`–`h4`, keeping only `color`, `background-color`
//!   and `text-align` (the editor's alignment; no property that can load anything).
//!
//! Everything else goes: `script` and `style` elements with their content, other elements
//! (their text stays), every other attribute (`on*` handlers, `class`, `id`), comments, and URLs
//! with any other scheme (`javascript:`, `data:`) or none (relative ones).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Elements that may carry a `style` (with [`STYLE_PROPERTIES`] only).
const STYLED: [&str; 7] = ["p", "span", "section", "h1", "h2", "h3", "h4"];
/// The CSS properties a `style` keeps.
const STYLE_PROPERTIES: [&str; 3] = ["color", "background-color", "text-align"];

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let tags = [
        "p",
        "br",
        "h1",
        "h2",
        "h3",
        "h4",
        "blockquote",
        "ul",
        "ol",
        "li",
        "section",
        "strong",
        "b",
        "em",
        "i",
        "u",
        "s",
        "span",
        "a",
        "img",
    ];
    let mut attributes: HashMap<&str, HashSet<&str>> = HashMap::new();
    attributes.insert("a", HashSet::from(["href", "title"]));
    attributes.insert("img", HashSet::from(["src", "alt"]));
    for tag in STYLED {
        attributes.insert(tag, HashSet::from(["style"]));
    }
    let mut b = ammonia::Builder::empty();
    b.tags(HashSet::from(tags))
        .tag_attributes(attributes)
        .clean_content_tags(HashSet::from(["script", "style"]))
        .url_schemes(HashSet::from(["http", "https"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .filter_style_properties(HashSet::from(STYLE_PROPERTIES))
        .strip_comments(true);
    b
});

/// `html` with everything outside the allow-list removed.
pub fn clean(html: &str) -> String {
    if html.is_empty() {
        return String::new();
    }
    CLEANER.clean(html).to_string()
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn keeps_what_articles_use() {
        let body = "<h2>新品</h2><p style=\"text-align:center\">A <strong>bold</strong> <em>line</em></p>\
                    <ul><li>one</li></ul><blockquote>q</blockquote>\
                    <img src=\"https://mmbiz.qpic.cn/a/0\" alt=\"cover\">";
        assert_eq!(clean(body), body);
        assert_eq!(
            clean("<a href=\"https://example.com/x\">x</a>"),
            "<a href=\"https://example.com/x\" rel=\"noopener noreferrer\">x</a>"
        );
    }

    #[test]
    fn removes_what_runs_or_loads() {
        assert_eq!(clean("<p>a<script>alert(1)</script>b</p>"), "<p>ab</p>");
        assert_eq!(clean("<img src=\"x.png\" onerror=\"alert(1)\">"), "<img>");
        assert_eq!(
            clean("<a href=\"javascript:alert(1)\" onclick=\"x()\">go</a>"),
            "<a rel=\"noopener noreferrer\">go</a>"
        );
        assert_eq!(clean("<img src=\"data:image/png;base64,AAAA\">"), "<img>");
        assert_eq!(
            clean("<p style=\"color: red; background-image: url(https://x/y)\" class=\"c\">t</p>"),
            "<p style=\"color:red\">t</p>"
        );
        assert_eq!(clean("<iframe src=\"https://x\"></iframe><!-- c --><div>d</div>"), "d");
        assert_eq!(clean("<style>p{}</style><svg><script>1</script></svg>t"), "t");
        // Cleaning what was cleaned changes nothing (an article saved twice stays the same).
        let once = clean("<p style=\"text-align: center;\" onclick=\"x\">a &amp; b<a href=\"http://x.cn\">l</a></p>");
        assert_eq!(clean(&once), once);
    }
}
