//! A small, bounded reader for WeChat's XML.
//!
//! Everything WeChat posts is one `<xml>` root holding flat elements, with a few nested groups
//! (`ScanCodeInfo`, `SendPicsInfo/PicList/item`, `SendLocationInfo`, mass-send `ResultList`),
//! read into an ordered list of `(path, text)` leaves (a nested leaf's path joins its ancestors
//! with `/`: `ScanCodeInfo/ScanType`). Anything that could make a parser do unbounded work or
//! reach outside the document is refused: a DOCTYPE (and so any entity declaration), processing
//! instructions, unknown entities, deep nesting, too many elements, oversized values.
//!
//! [`parse`] reads the common shape — a root holding only leaves, each one CDATA section or plain
//! text — with a direct scan ([`parse_flat`]), handing anything else (a declaration, comment,
//! entity, nesting, attributes, an empty-element tag, a carriage return, a limit reached) to the
//! general reader. The scan accepts only documents the reader reads to the same leaves
//! (`flat_scan_agrees_with_the_reader`): a shortcut, not a second dialect. Why: the reader cost
//! ~15,000 instructions and ~14 allocations a webhook call for its two documents.

use quick_xml::Reader;
use quick_xml::events::Event;

pub const MAX_DEPTH: usize = 6;
pub const MAX_FIELDS: usize = 512;
pub const MAX_VALUE_LEN: usize = 32 * 1024;
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    Malformed(String),
    DocType,
    NotWeChatXml,
    TooDeep,
    TooMany,
    TooLong(String),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::Malformed(why) => write!(f, "malformed XML: {why}"),
            XmlError::DocType => f.write_str("DOCTYPE and processing instructions are not allowed"),
            XmlError::NotWeChatXml => f.write_str("root element must be <xml>"),
            XmlError::TooDeep => write!(f, "XML nested deeper than {MAX_DEPTH} levels"),
            XmlError::TooMany => write!(f, "XML has more than {MAX_FIELDS} elements"),
            XmlError::TooLong(name) => write!(f, "element {name} is too long"),
        }
    }
}

impl std::error::Error for XmlError {}

/// The leaves of a WeChat XML document, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first leaf at `path`.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, v)| v.as_str())
    }

    /// Every leaf at `path` (repeated `item`s).
    pub fn all<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(p, _)| p == path).map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(p, v)| (p.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses one `<xml>…</xml>` document.
pub fn parse(xml: &str) -> Result<Fields, XmlError> {
    match parse_flat(xml) {
        Some(fields) => Ok(fields),
        None => parse_general(xml),
    }
}

/// The end of a CDATA section, searched with a finder built once (here and by
/// [`super::reply::cdata`], which splits a value around it).
pub(crate) static CDATA_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new("]]>"));

/// A document of the common shape, read by a direct scan: `<xml>`, then leaves `<Name>` with
/// one CDATA section or plain text (no `<`, `&` or `>`) and `</Name>`, ASCII whitespace between
/// them, `</xml>`. `None` for anything else, which [`parse_general`] then reads (or refuses).
fn parse_flat(xml: &str) -> Option<Fields> {
    let b = xml.as_bytes();
    // XML reads a carriage return as a line feed: leave that to the reader.
    if memchr::memchr(b'\r', b).is_some() {
        return None;
    }
    let ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n') {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if !b[i..].starts_with(b"<xml>") {
        return None;
    }
    i += "<xml>".len();
    let mut fields = Vec::with_capacity(12);
    loop {
        i = ws(i);
        let rest = &b[i..];
        if rest.starts_with(b"</xml>") {
            return (ws(i + "</xml>".len()) == b.len()).then_some(Fields(fields));
        }
        // `<Name>`: a name of ASCII letters, digits and `_`, not starting with a digit.
        if rest.first() != Some(&b'<') || !rest.get(1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
            return None;
        }
        let name_len = 1 + rest[2..].iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))?;
        if name_len > MAX_NAME_LEN || rest[1 + name_len] != b'>' || fields.len() == MAX_FIELDS {
            return None;
        }
        let name = &xml[i + 1..i + 1 + name_len];
        i += name_len + 2;
        let value = if b[i..].starts_with(b"<![CDATA[") {
            let start = i + "<![CDATA[".len();
            let len = CDATA_END.find(&b[start..])?;
            i = start + len + "]]>".len();
            &xml[start..start + len]
        } else {
            let len = memchr::memchr3(b'<', b'&', b'>', &b[i..])?;
            if b[i + len] != b'<' {
                return None;
            }
            i += len;
            &xml[i - len..i]
        };
        // `</Name>`, the same name.
        let close = &b[i..];
        let closes = close.len() > name_len + 2
            && close.starts_with(b"</")
            && &close[2..2 + name_len] == name.as_bytes()
            && close[2 + name_len] == b'>';
        if !closes || value.len() > MAX_VALUE_LEN {
            return None;
        }
        i += name_len + "</>".len();
        fields.push((name.to_owned(), value.to_owned()));
    }
}

/// Any document, with the general reader.
fn parse_general(xml: &str) -> Result<Fields, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut fields = Vec::with_capacity(12);
    // Open elements below the root, and whether each has child elements.
    let mut stack: Vec<(String, bool)> = Vec::with_capacity(4);
    let mut text = String::new();
    let mut seen_root = false;
    let mut root_closed = false;
    let mut elements = 0usize;

    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Decl(_) | Event::Comment(_) => {}
            Event::DocType(_) | Event::PI(_) => return Err(XmlError::DocType),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if root_closed {
                    return Err(malformed("content after the root element"));
                }
                let name = std::str::from_utf8(e.name().as_ref()).map_err(malformed)?.to_owned();
                if name.len() > MAX_NAME_LEN {
                    return Err(XmlError::TooLong("name".into()));
                }
                if !seen_root {
                    if name != "xml" {
                        return Err(XmlError::NotWeChatXml);
                    }
                    seen_root = true;
                    if empty {
                        root_closed = true;
                    }
                    continue;
                }
                elements += 1;
                if elements > MAX_FIELDS {
                    return Err(XmlError::TooMany);
                }
                if stack.len() + 2 > MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                if let Some(parent) = stack.last_mut() {
                    parent.1 = true;
                }
                text.clear();
                if empty {
                    fields.push((path_of(&stack, name), String::new()));
                } else {
                    stack.push((name, false));
                }
            }
            Event::End(_) => {
                if root_closed {
                    return Err(malformed("unexpected end tag"));
                }
                match stack.pop() {
                    None => root_closed = true,
                    Some((name, has_children)) => {
                        if !has_children {
                            fields.push((path_of(&stack, name), std::mem::take(&mut text)));
                        }
                        text.clear();
                    }
                }
            }
            Event::Text(e) => {
                let part = e.decode().map_err(malformed)?;
                if !seen_root || root_closed {
                    if part.trim().is_empty() {
                        continue;
                    }
                    return Err(malformed("text outside the root element"));
                }
                push_bounded(&mut text, &part, &stack)?;
            }
            Event::CData(e) => {
                if stack.is_empty() {
                    return Err(malformed("CDATA outside an element"));
                }
                let part = e.decode().map_err(malformed)?;
                push_bounded(&mut text, &part, &stack)?;
            }
            Event::GeneralRef(e) => {
                let ch = match e.resolve_char_ref().map_err(malformed)? {
                    Some(ch) => ch,
                    None => match &*e {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        _ => return Err(malformed("unknown entity")),
                    },
                };
                let mut buf = [0u8; 4];
                push_bounded(&mut text, ch.encode_utf8(&mut buf), &stack)?;
            }
            Event::Eof => break,
        }
    }
    if !seen_root || !root_closed {
        return Err(malformed("unclosed or missing <xml> root"));
    }
    Ok(Fields(fields))
}

fn push_bounded(text: &mut String, part: &str, stack: &[(String, bool)]) -> Result<(), XmlError> {
    if text.len() + part.len() > MAX_VALUE_LEN {
        let name = stack.last().map(|(n, _)| n.clone()).unwrap_or_default();
        return Err(XmlError::TooLong(name));
    }
    text.push_str(part);
    Ok(())
}

/// A leaf's path; a top-level leaf (most of them) keeps its name's allocation.
fn path_of(stack: &[(String, bool)], name: String) -> String {
    if stack.is_empty() {
        return name;
    }
    let mut path = String::with_capacity(stack.iter().map(|(p, _)| p.len() + 1).sum::<usize>() + name.len());
    for (parent, _) in stack {
        path.push_str(parent);
        path.push('/');
    }
    path.push_str(&name);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flat_and_nested_leaves() {
        let xml = "<?xml version=\"1.0\"?><xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
            <CreateTime>12</CreateTime><Content><![CDATA[a]]]]><![CDATA[>b]]></Content>\
            <Esc>x &lt;&amp;&#x4e2d; y</Esc><Empty/>\
            <SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>a1</PicMd5Sum></item>\
            <item><PicMd5Sum>b2</PicMd5Sum></item></PicList></SendPicsInfo></xml>\n";
        let f = parse(xml).unwrap();
        assert_eq!(f.get("ToUserName"), Some("gh_1"));
        assert_eq!(f.get("CreateTime"), Some("12"));
        assert_eq!(f.get("Content"), Some("a]]>b"));
        assert_eq!(f.get("Esc"), Some("x <&中 y"));
        assert_eq!(f.get("Empty"), Some(""));
        assert_eq!(f.get("SendPicsInfo/Count"), Some("2"));
        let md5s: Vec<_> = f.all("SendPicsInfo/PicList/item/PicMd5Sum").collect();
        assert_eq!(md5s, ["a1", "b2"]);
    }

    #[test]
    fn flat_scan_agrees_with_the_reader() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut docs: Vec<String> = vec![
            "<xml></xml>".into(),
            " \n<xml>\t<A>1</A>\n<B><![CDATA[<b> & ]] >]]></B><C></C><D><![CDATA[]]></D></xml>\n".into(),
            "<xml><Content><![CDATA[中文 😀]]></Content><_x9>v</_x9></xml>".into(),
        ];
        for sub in ["inbound", "replies"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                docs.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
            }
        }
        // The scan reads most of the documents itself (the nested events and `success` go to
        // the reader)…
        let scanned = docs.iter().filter(|d| parse_flat(d).is_some()).count();
        let xml = docs.iter().filter(|d| parse_general(d).is_ok()).count();
        assert!(scanned * 5 >= xml * 4, "{scanned} of {xml}");
        // …and every document of another shape goes to the reader.
        for other in [
            "<?xml version=\"1.0\"?><xml><A>1</A></xml>",
            "<xml><!-- c --><A>1</A></xml>",
            "<xml><A>x &amp; y</A></xml>",
            "<xml><A>x > y</A></xml>",
            "<xml><A k=\"v\">1</A></xml>",
            "<xml><A/></xml>",
            "<xml><A><B>1</B></A></xml>",
            "<xml><A>1\r\n2</A></xml>",
            "<xml><A><![CDATA[1]]>2</A></xml>",
            "<xml><A>1</B></xml>",
            "<xml><1A>1</1A></xml>",
            "<xml><A>1</A></xml>x",
            "<xml><A>1</A>",
            "\u{feff}<xml></xml>",
        ] {
            assert_eq!(parse_flat(other), None, "{other}");
        }
        // Whatever the scan reads, the reader reads to the same leaves: every fixture, and
        // copies of it with one character removed or one piece of markup put in, anywhere.
        let inserts = ["<", ">", "&", "/", "]]>", "<![CDATA[", " ", "\r", "<A>", "</A>", "x"];
        let mut compared = 0;
        for doc in &docs {
            let mut variants = vec![doc.clone()];
            for (at, ch) in doc.char_indices() {
                let mut removed = doc.clone();
                removed.replace_range(at..at + ch.len_utf8(), "");
                variants.push(removed);
                for ins in inserts {
                    let mut put = doc.clone();
                    put.insert_str(at, ins);
                    variants.push(put);
                }
            }
            for v in variants {
                if let Some(fields) = parse_flat(&v) {
                    assert_eq!(Ok(fields), parse_general(&v), "{v}");
                    compared += 1;
                }
            }
        }
        assert!(compared > 10_000, "{compared}");
    }

    #[test]
    fn refuses_hostile_or_broken_documents() {
        let deep = format!("<xml>{}x{}</xml>", "<a>".repeat(8), "</a>".repeat(8));
        let many = format!("<xml>{}</xml>", "<a>1</a>".repeat(MAX_FIELDS + 1));
        let long = format!("<xml><a>{}</a></xml>", "x".repeat(MAX_VALUE_LEN + 1));
        let cases: &[(&str, XmlError)] = &[
            ("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><a>&e;</a></xml>", XmlError::DocType),
            ("<?php echo 1 ?><xml/>", XmlError::DocType),
            ("<root><a>1</a></root>", XmlError::NotWeChatXml),
            (&deep, XmlError::TooDeep),
            (&many, XmlError::TooMany),
            (&long, XmlError::TooLong("a".into())),
        ];
        for (xml, want) in cases {
            assert_eq!(parse(xml).unwrap_err(), *want, "{}", &xml[..xml.len().min(60)]);
        }
        for bad in ["", "not xml", "<xml><a>1</b></xml>", "<xml><a>1</a>", "<xml/><xml/>", "<xml><a>&bogus;</a></xml>"]
        {
            assert!(matches!(parse(bad), Err(XmlError::Malformed(_))), "{bad:?} -> {:?}", parse(bad));
        }
    }
}
