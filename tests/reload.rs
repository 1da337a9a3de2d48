//! Reloading the files without a restart, against `wxoa serve` as a process: a changed reply
//! template, a new routing rule and a changed console page are in force after SIGHUP (and after
//! `POST /api/v1/reload`); a broken routes file is refused with one log line naming it — by
//! SIGHUP and by the API (422) — and the server keeps answering with the set it had.

mod common;

use common::serve::*;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[tokio::test]
async fn sighup_and_the_api_reload_the_files_and_a_broken_one_changes_nothing() {
    let dir = temp_dir("reload");
    let (routes, replies, admin_pages) = (dir.join("routes.toml"), dir.join("replies"), dir.join("admin"));
    std::fs::copy(repo().join("config/routes.toml"), &routes).unwrap();
    copy_dir(&repo().join("templates/replies"), &replies);
    copy_dir(&repo().join("templates/admin"), &admin_pages);
    let mut serve = Serve::spawn(&dir, |c| {
        c.bot.routes = routes.clone();
        c.bot.templates = replies.clone();
        c.admin.pages = admin_pages.clone();
    });
    let addr = serve.addr.clone();
    wait_answering(&addr, &serve).await;
    let config: wxoa::config::Config =
        toml::from_str(&std::fs::read_to_string(dir.join("wxoa.toml")).unwrap()).unwrap();
    let envelope = config.envelope();
    let http = reqwest::Client::new();
    let mut msg_id = 500_000u64;
    let mut ask = async |text: &str| {
        msg_id += 1;
        let now = wxoa::clock::Clock::system().now_secs(); // `serve` runs on the system clock
        let xml = text_message("oReload0000001", msg_id, text);
        let (query, body) = envelope.wrap(&xml, now, &wxoa::wechat::envelope::random_nonce());
        let resp = http.post(format!("http://{addr}/wechat?{query}")).body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let reply = envelope.unwrap_reply(&resp.text().await.unwrap()).unwrap().unwrap_or_default();
        reply.split("<Content><![CDATA[").nth(1).and_then(|c| c.split("]]>").next()).unwrap_or("").to_owned()
    };
    let login = async || http.get(format!("http://{addr}/admin/login")).send().await.unwrap().text().await.unwrap();
    let hangup = |serve: &Serve| {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(serve.child.as_ref().unwrap().id() as i32, libc::SIGHUP) };
    };

    let help_before = ask("help").await;
    assert!(help_before.contains("I can help with"), "{help_before}");
    let fallback = ask("reloadtest").await;
    assert!(!fallback.contains("Reloaded"), "{fallback}");
    assert!(!login().await.contains("reload-marker-4711"));

    // A changed template, a new rule with a new template, a changed console page; then SIGHUP.
    std::fs::write(replies.join("help.j2"), "Reloaded help for {{ openid }}").unwrap();
    std::fs::write(replies.join("reloaded.j2"), "Reloaded rule").unwrap();
    let mut text = std::fs::read_to_string(&routes).unwrap();
    text.push_str(
        "\n[[rule]]\nname = \"reloaded\"\npriority = 200\nmsg_type = \"text\"\ntext = \"reloadtest\"\ntemplate = \"reloaded.j2\"\n",
    );
    std::fs::write(&routes, &text).unwrap();
    let page = std::fs::read_to_string(admin_pages.join("login.html")).unwrap();
    let marked = page.replace("<h1>登录 Sign in</h1>", "<h1>登录 Sign in</h1><!-- reload-marker-4711 -->");
    assert_ne!(marked, page);
    std::fs::write(admin_pages.join("login.html"), marked).unwrap();
    hangup(&serve);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask("reloadtest").await != "Reloaded rule" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ask("help").await, "Reloaded help for oReload0000001");
    assert!(login().await.contains("reload-marker-4711"), "the console page was reloaded");

    // A broken routes file: refused by SIGHUP with one line naming it, and by the API.
    std::fs::write(&routes, "[[rule]]\nname = \"broken\"\ntemplate = \"nope.j2\"\n[[[").unwrap();
    hangup(&serve);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !serve.log().contains("SIGHUP: reload refused") {
        assert!(Instant::now() < deadline, "no refusal logged:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refusals: Vec<String> =
        serve.log().lines().filter(|l| l.contains("reload refused")).map(str::to_owned).collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains(&routes.display().to_string()), "the line names the file: {}", refusals[0]);
    assert_eq!(ask("reloadtest").await, "Reloaded rule", "the running set stays");
    assert_eq!(ask("help").await, "Reloaded help for oReload0000001");

    let reload = async |token: &str| {
        let resp = http.post(format!("http://{addr}/api/v1/reload")).bearer_auth(token).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, serde_json::from_str::<serde_json::Value>(&resp.text().await.unwrap()).unwrap())
    };
    assert_eq!(reload(MARKETING_TOKEN).await.0, 403);
    let (status, body) = reload(ADMIN_TOKEN).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("routes"), "{body}");
    assert_eq!(ask("reloadtest").await, "Reloaded rule");

    // Fixed (the shipped file again): the API reloads it, and the new rule is gone.
    std::fs::copy(repo().join("config/routes.toml"), &routes).unwrap();
    assert_eq!(reload(ADMIN_TOKEN).await, (200, serde_json::json!({ "reloaded": true })));
    assert_eq!(ask("reloadtest").await, fallback);
    let log = tokio::task::spawn_blocking(move || {
        serve.terminate(Duration::from_secs(10));
        serve.log()
    })
    .await
    .unwrap();
    assert!(log.contains("SIGHUP: files reloaded") && log.contains("files reloaded"), "{log}");
}
