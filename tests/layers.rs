//! The layering check: every `crate::…` path in `src/` must point at its own layer or one
//! below, and no import circle may join two modules. The layers, lowest first:
//!
//! | layer | modules |
//! |---|---|
//! | 0 leaf | `clock`, `store`, `secret`, `stored`, `text` (and the crate root's helpers) |
//! | 1 protocol | `wechat` |
//! | 2 config | `config` |
//! | 3 domain | `bot`, `campaigns`, `members`, `bookings`, `jobs`, `shop`, `stores`, `notices`, `menu`, `fake`, `crm`, `audiences`, `followers`, `replies`, `retention`, `privacy` |
//! | 4 state | `state` |
//! | 5 handlers | `http`, `h5`, `admin`, `error`, `campaigns::api`, `shop::api`, `shop::landing`, `crm::api`, `audiences::api`, … (every `*::api`) |
//! | 6 wiring | `app`, `dev`, `tools` |
//! | 7 command line | `cli` |
//!
//! Run it alone with `cargo test --test layers`; `.ci/run` runs it first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of a module path (its segments after `crate`), and the unit a circle is judged
/// by (a top-level module, or a `*::api`-like handler file inside a domain module).
fn layer(path: &[&str]) -> Option<(u8, String)> {
    let top = *path.first()?;
    let second = path.get(1).copied().unwrap_or("");
    let handler_files = ["api", "landing"];
    if handler_files.contains(&second) && !["http", "admin", "h5"].contains(&top) {
        return Some((5, format!("{top}::{second}")));
    }
    let l = match top {
        "clock" | "store" | "secret" | "stored" | "text" => 0,
        "wechat" => 1,
        "config" => 2,
        "bot" | "campaigns" | "members" | "bookings" | "jobs" | "shop" | "stores" | "notices" | "menu" | "fake"
        | "crm" | "audiences" | "followers" | "replies" | "retention" | "privacy" | "reload" => 3,
        "state" => 4,
        "http" | "h5" | "admin" | "error" => 5,
        "app" | "dev" | "tools" => 6,
        "cli" => 7,
        _ => return None,
    };
    Some((l, top.to_owned()))
}

/// `src/a/b.rs` → `["a", "b"]`; `src/a/mod.rs` → `["a"]`; `src/lib.rs` → `[]`.
fn module_of(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (doc links name modules without importing them).
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every `crate::a::b…` path in `code`, as its segments; `use crate::a::{b, c}` gives `a` (and
/// `a::b`, `a::c` for the handler files a module may hold).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(at) = code[i..].find("crate::") {
        let start = i + at;
        let preceded_ok = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b'$');
        i = start + "crate::".len();
        if !preceded_ok {
            continue;
        }
        let rest = &code[i..];
        let mut segs = Vec::new();
        let mut tail = rest;
        loop {
            let n = tail.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
            if n == 0 {
                break;
            }
            segs.push(tail[..n].to_owned());
            tail = &tail[n..];
            match tail.strip_prefix("::") {
                Some(t) => tail = t,
                None => break,
            }
        }
        if tail.starts_with('{') {
            // A group: each member is a further segment.
            let inner = &tail[1..tail.find('}').unwrap_or(tail.len())];
            for member in inner.split(',') {
                let name: String =
                    member.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    let mut p = segs.clone();
                    p.push(name);
                    out.push(p);
                }
            }
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

#[test]
fn every_import_points_down_and_no_circle_joins_two_modules() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Which file's which path makes each edge, to say how a circle closes.
    let mut why: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut unknown = BTreeSet::new();
    for file in &files {
        let module = module_of(file, &src);
        let segs: Vec<&str> = module.iter().map(String::as_str).collect();
        // lib.rs and main.rs are the map and the entry: they may name anything.
        let Some((from_layer, from_unit)) = (if segs.is_empty() { None } else { layer(&segs) }) else {
            if !segs.is_empty() {
                unknown.insert(module.join("::"));
            }
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&code(&text)) {
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some((to_layer, to_unit)) = layer(&p) else { continue };
            if to_layer > from_layer {
                violations.push(format!(
                    "{} (layer {from_layer}) uses crate::{} (layer {to_layer})",
                    file.strip_prefix(&src).unwrap().display(),
                    p.join("::")
                ));
            }
            if to_unit != from_unit {
                let cause = format!("{} uses crate::{}", file.strip_prefix(&src).unwrap().display(), p.join("::"));
                why.entry((from_unit.clone(), to_unit.clone())).or_insert(cause);
                edges.entry(from_unit.clone()).or_default().insert(to_unit);
            }
        }
    }
    assert!(unknown.is_empty(), "modules without a layer (add them to tests/layers.rs): {unknown:?}");
    violations.sort();
    violations.dedup();
    // Circles between modules: strongly connected components of more than one unit.
    let circles = components(&edges).into_iter().filter(|c| c.len() > 1).collect::<Vec<_>>();
    let mut closing = Vec::new();
    for c in &circles {
        for ((from, to), cause) in &why {
            if c.contains(from) && c.contains(to) {
                closing.push(format!("{from} → {to}: {cause}"));
            }
        }
    }
    assert!(
        violations.is_empty() && circles.is_empty(),
        "layering violations:\n  {}\nimport circles between modules: {circles:?}, made of:\n  {}",
        violations.join("\n  "),
        closing.join("\n  ")
    );
}

/// The sibling modules `code` (in a child of `parent`) names: `super::x` and `crate::<parent>::x`
/// paths, and the members of `super::{…}` groups, that are one of `siblings`.
fn sibling_uses(code: &str, parent: &[String], siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut prefixes = vec!["super::".to_owned()];
    if !parent.is_empty() {
        prefixes.push(format!("crate::{}::", parent.join("::")));
    }
    for prefix in &prefixes {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix.as_str()).map(|i| from + i) {
            let preceded_ok = at == 0 || {
                let b = code.as_bytes()[at - 1];
                !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            };
            from = at + prefix.len();
            let rest = &code[from..];
            if !preceded_ok {
                continue;
            }
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|m| m.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
                    .collect()
            } else {
                vec![rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()]
            };
            out.extend(names.into_iter().filter(|n| siblings.contains(n)));
        }
    }
    out
}

/// Inside a module, its files depend one way: no two files (or sub-directories) of one module
/// use each other, directly or round a longer circle. What both need goes to the module's
/// `mod.rs` (or a file both use).
#[test]
fn the_file_check_sees_siblings_in_every_form() {
    let siblings: BTreeSet<String> = ["a", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
    let code = "use super::{a, Item};\nsuper::c::run();\ncrate::m::d::X;\nsuper::super::e::Y;\ncrate::other::e::Z;";
    let got = sibling_uses(code, &["m".to_owned()], &siblings);
    assert_eq!(got, ["a", "c", "d"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
}

#[test]
fn no_circle_joins_two_files_of_a_module() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Each module's children: its `x.rs` files and `x/` directories.
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file, &src);
        if let Some((last, parent)) = module.split_last() {
            children.entry(parent.to_vec()).or_default().insert(last.clone());
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file, &src);
        let Some((me, parent)) = module.split_last() else { continue };
        let siblings = &children[parent];
        let text = code(&std::fs::read_to_string(file).unwrap());
        let prefix = if parent.is_empty() { String::new() } else { format!("{}::", parent.join("::")) };
        for used in sibling_uses(&text, parent, siblings) {
            if &used != me {
                edges.entry(format!("{prefix}{me}")).or_default().insert(format!("{prefix}{used}"));
            }
        }
    }
    let circles: Vec<Vec<String>> = components(&edges).into_iter().filter(|c| c.len() > 1).collect();
    assert!(circles.is_empty(), "files of one module that use each other: {circles:?}");
}

/// Tarjan's strongly connected components.
fn components(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        t.index.insert(v.to_owned(), t.next);
        t.low.insert(v.to_owned(), t.next);
        t.next += 1;
        t.stack.push(v.to_owned());
        t.on.insert(v.to_owned());
        let succ: Vec<String> = t.edges.get(v).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for w in succ {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                c.push(w);
                if done {
                    break;
                }
            }
            c.sort();
            t.out.push(c);
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: Vec<String> = edges.keys().cloned().collect();
    for v in nodes {
        if !t.index.contains_key(&v) {
            visit(&mut t, &v);
        }
    }
    t.out
}

#[test]
fn the_check_sees_what_it_should() {
    let paths =
        crate_paths("use crate::store::{Store, now_ms};\nlet x = crate::h5::session::mac(a); $crate::store::Tx");
    assert!(paths.contains(&vec!["store".to_owned(), "Store".to_owned()]));
    assert!(paths.contains(&vec!["h5".to_owned(), "session".to_owned(), "mac".to_owned()]));
    assert_eq!(paths.iter().filter(|p| p[0] == "store").count(), 3, "{paths:?}");
    assert_eq!(layer(&["campaigns", "api"]).unwrap().0, 5);
    assert_eq!(layer(&["campaigns", "schedule"]).unwrap().0, 3);
    assert_eq!(layer(&["h5", "api"]).unwrap(), (5, "h5".to_owned()));
    let mut e = BTreeMap::new();
    e.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    e.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert!(components(&e).iter().any(|c| c.len() == 2));
}
