//! `wxoa replay`: post recorded plaintext messages to a running server exactly as WeChat would
//! (signed, and encrypted unless in plain mode), read the reply as WeChat would (verify and
//! decrypt), print it, and with `--expect DIR` compare it to the golden reply `DIR/<name>.xml`.
//!
//! A golden reply is the plaintext reply document, or the single word `success` for "no reply".
//! `CreateTime` is normalised before comparing, since a reply carries the time it was made.
//!
//! Each fixture is sent as a *new* message: its `MsgId` and `CreateTime` are replaced by fresh
//! values ([`freshen`]), because the server answers a message it has seen before with the reply
//! it logged the first time (WeChat's retries). Replaying recorded ids would make a second run
//! show the first run's answers, whatever changed in between (stores imported, a template
//! edited). `--keep-ids` sends them as recorded, to watch deduplication at work.

use crate::text::Failure;
use crate::wechat::envelope::Envelope;
use std::path::{Path, PathBuf};

/// The result of replaying one fixture.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub name: String,
    pub status: u16,
    /// The decrypted reply document, `None` for `success`.
    pub reply: Option<String>,
}

impl Replayed {
    /// The reply as a golden file holds it.
    pub fn golden(&self) -> String {
        self.reply.clone().unwrap_or_else(|| crate::wechat::reply::SUCCESS.to_owned())
    }
}

/// Expands files and directories (their `*.xml`, sorted) into fixture paths.
pub fn fixture_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| format!("{}: {e}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "xml"))
                .collect();
            files.sort();
            out.extend(files);
        } else if input.is_file() {
            out.push(input.clone());
        } else {
            return Err(Failure(format!("{}: no such file or directory", input.display())));
        }
    }
    Ok(out)
}

/// Replaces the digits of every `<CreateTime>` with `0`, and trims.
pub fn normalize(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc.trim();
    while let Some(i) = rest.find("<CreateTime>") {
        let after = &rest[i + "<CreateTime>".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..i]);
        out.push_str("<CreateTime>0");
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// `xml` with its `<CreateTime>` set to `create_time` and its `<MsgId>` (if it has one) to
/// `msg_id`: the same message, sent anew. Job-finish events keep their `MsgID` (the id of the
/// send they report, not of the message); their fresh `CreateTime` makes them new.
pub fn freshen(xml: &str, create_time: i64, msg_id: u64) -> String {
    let xml = replace_leaf(xml, "CreateTime", &create_time.to_string());
    replace_leaf(&xml, "MsgId", &msg_id.to_string())
}

/// Replaces the text of the first `<name>…</name>` (case-sensitive, so `MsgId` is not `MsgID`).
fn replace_leaf(xml: &str, name: &str, value: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let Some(start) = xml.find(&open).map(|i| i + open.len()) else { return xml.to_owned() };
    let Some(len) = xml[start..].find(&close) else { return xml.to_owned() };
    format!("{}{value}{}", &xml[..start], &xml[start + len..])
}

/// Replays every fixture (anew unless `keep_ids`, see [`freshen`]); prints each reply and, with
/// `expect`, whether it matches. Returns whether everything succeeded (and matched).
pub async fn run(
    envelope: &Envelope,
    url: &str,
    expect: Option<&Path>,
    inputs: &[PathBuf],
    keep_ids: bool,
) -> Result<bool, Failure> {
    let files = fixture_paths(inputs)?;
    if files.is_empty() {
        return Err("no fixtures given".into());
    }
    let client = reqwest::Client::new();
    let (mut passed, mut failed) = (0, 0);
    // One second apart and ending now, as if sent one after another; MsgIds in WeChat's
    // 19-digit range, unique per millisecond and fixture.
    let now_ms = crate::clock::Clock::system().now_ms();
    let first_second = now_ms / 1000 - files.len() as i64;
    for (i, file) in files.iter().enumerate() {
        let name = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let xml = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let xml =
            if keep_ids { xml } else { freshen(&xml, first_second + i as i64 + 1, now_ms as u64 * 10_000 + i as u64) };
        let result = crate::fake::post(&client, envelope, url, &xml, now_ms / 1000).await;
        let reply = match result {
            Ok((status, reply)) => Replayed { name: name.clone(), status, reply },
            Err(e) => {
                println!("✗ {name}: {e}");
                failed += 1;
                continue;
            }
        };
        println!("── {name}\n{}", reply.golden());
        if let Some(dir) = expect {
            let golden_path = dir.join(format!("{name}.xml"));
            match std::fs::read_to_string(&golden_path) {
                Ok(want) if normalize(&want) == normalize(&reply.golden()) => {
                    println!("✓ {name} matches {}", golden_path.display());
                    passed += 1;
                }
                Ok(want) => {
                    println!(
                        "✗ {name} differs from {}:\n  expected: {}\n  got:      {}",
                        golden_path.display(),
                        normalize(&want),
                        normalize(&reply.golden())
                    );
                    failed += 1;
                }
                Err(e) => {
                    println!("✗ {name}: no golden reply {}: {e}", golden_path.display());
                    failed += 1;
                }
            }
        } else {
            passed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalize_blanks_create_time() {
        assert_eq!(
            super::normalize(" <xml><CreateTime>1700000000</CreateTime><A>1</A></xml>\n"),
            "<xml><CreateTime>0</CreateTime><A>1</A></xml>"
        );
        assert_eq!(super::normalize("success"), "success");
    }

    #[test]
    fn freshen_replaces_create_time_and_msg_id_only() {
        let xml = "<xml><CreateTime>1</CreateTime><MsgId>2</MsgId><Content><![CDATA[<MsgId>]]></Content></xml>";
        assert_eq!(
            super::freshen(xml, 1700000000, 42),
            "<xml><CreateTime>1700000000</CreateTime><MsgId>42</MsgId><Content><![CDATA[<MsgId>]]></Content></xml>"
        );
        // A job-finish event's MsgID names the send it reports: kept.
        let event = "<xml><CreateTime>1</CreateTime><MsgID>7</MsgID></xml>";
        assert_eq!(super::freshen(event, 5, 42), "<xml><CreateTime>5</CreateTime><MsgID>7</MsgID></xml>");
    }
}
