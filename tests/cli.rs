//! The `wxoa` binary as a user runs it: config errors, `serve` + `replay --expect` against the
//! recorded fixtures, `fixtures export` back into replayable fixtures, graceful SIGTERM, a log
//! without colour codes when it is not a terminal.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wxoa");

fn config_text(listen: &str, db_url: &str) -> String {
    format!(
        r#"[server]
listen = "{listen}"
[wechat]
app_id = "{APP_ID}"
app_secret = "secret"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
mode = "safe"
[database]
url = "{db_url}"
[bot]
routes = "{routes}"
templates = "{templates}"
[h5]
session_secret = "cli-test-session-secret-0123456789"
pages = "{pages}"
[notices]
file = "{notices}"
templates = "{notice_templates}"
"#,
        routes = repo().join("config/routes.toml").display(),
        templates = repo().join("templates/replies").display(),
        pages = repo().join("templates/pages").display(),
        notices = repo().join("config/notices.toml").display(),
        notice_templates = repo().join("templates/notices").display(),
    )
}

fn wxoa(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_are_one_clear_line() {
    let dir = temp_dir("cfg");
    let good = config_text("127.0.0.1:0", &format!("sqlite://{}/x.db", dir.display()));
    let short_key = good.replace(AES_KEY, &AES_KEY[..42]);
    // Broken routes on a port that is taken: the routes are what is reported.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broken_routes = dir.join("routes.toml");
    std::fs::write(&broken_routes, "[[rule]]\nname = \"x\"\nhandler = \"no_such_handler\"\n").unwrap();
    let broken = config_text(&taken.local_addr().unwrap().to_string(), &format!("sqlite://{}/x.db", dir.display()))
        .replace(&repo().join("config/routes.toml").display().to_string(), &broken_routes.display().to_string());
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "short-key.toml",
            &short_key,
            &[],
            "wechat.encoding_aes_key: bad EncodingAESKey: must be 43 characters, got 42",
        ),
        ("good.toml", &good, &[("WXOA_WECHAT__TOKEN", "")], "wechat.token is missing"),
        ("good.toml", &good, &[("WXOA_WECHAT__MODE", "secure")], "[wechat]: unknown variant `secure`"),
        ("typo.toml", &good.replace("[server]", "[sever]"), &[], "unknown section [sever]"),
        ("missing.toml", "", &[], "cannot read"),
        ("broken-routes.toml", &broken, &[], "unknown handler \"no_such_handler\""),
    ];
    for (name, text, env, want) in cases {
        let path = dir.join(name);
        if *name != "missing.toml" {
            std::fs::write(&path, text).unwrap();
        }
        let (code, _, stderr) = wxoa(&["serve", "--config", path.to_str().unwrap()], env);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr:?} should contain {want:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: one line: {stderr:?}");
        assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    }
    // `dev` checks them before the port too.
    let taken_addr = taken.local_addr().unwrap().to_string();
    let broken = dir.join("broken-routes.toml");
    let (code, _, stderr) = wxoa(&["dev", "--config", broken.to_str().unwrap(), "--listen", &taken_addr], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("unknown handler \"no_such_handler\""), "{stderr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn serve_replay_export_and_graceful_stop() {
    let dir = temp_dir("cli");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join("wxoa.toml");
    std::fs::write(&config, config_text(&addr, &format!("sqlite://{}/wxoa.db", dir.display()))).unwrap();
    let config = config.to_str().unwrap().to_owned();

    let mut server = Command::new(BIN)
        .args(["serve", "--config", &config])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(&addr, 30, String::new);
    let stores = repo().join("tests/fixtures/stores.csv");
    let (code, out, err) = wxoa(&["stores", "import", "--config", &config, stores.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("5 stores imported"), "{out}");

    // Every recorded fixture, signed and encrypted, against the golden replies.
    let inbound = repo().join("tests/fixtures/inbound");
    let replies = repo().join("tests/fixtures/replies");
    let (code, stdout, stderr) =
        wxoa(&["replay", "--config", &config, "--expect", replies.to_str().unwrap(), inbound.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let n = count_files(&inbound);
    assert!(stdout.contains(&format!("{n} passed, 0 failed")), "{stdout}");

    // A golden reply that does not match makes replay fail.
    let wrong = dir.join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::write(wrong.join("text_help.xml"), "success").unwrap();
    let (code, stdout, _) = wxoa(
        &[
            "replay",
            "--config",
            &config,
            "--expect",
            wrong.to_str().unwrap(),
            inbound.join("text_help.xml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("differs"), "{stdout}");

    // Logged traffic back into fixtures, which replay against their recorded replies.
    let exported = dir.join("exported");
    let (code, stdout, stderr) = wxoa(
        &[
            "fixtures",
            "export",
            "--config",
            &config,
            "--since",
            "1h",
            "--openid",
            "oVx4Jt5u2Qk9ZcXyWbA1nPq0RsTu",
            "--limit",
            "5",
            exported.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("5 fixture(s)"), "{stdout}");
    assert_eq!(count_files(&exported.join("inbound")), 5);
    let (code, stdout, _) = wxoa(
        &[
            "replay",
            "--config",
            &config,
            "--expect",
            exported.join("replies").to_str().unwrap(),
            exported.join("inbound").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}");
    let (code, _, stderr) =
        wxoa(&["fixtures", "export", "--config", &config, "--since", "someday", exported.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");

    // SIGTERM: a clean stop, exit 0, and no secrets or full openids in the log.
    Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    let out = server.wait_with_output_timeout(Duration::from_secs(20));
    assert!(out.0, "exited 0 on SIGTERM: {}", out.1);
    assert!(out.1.contains("stopped"), "{}", out.1);
    // Not a terminal: the log carries no colour codes (tests/simulator.rs checks a log file).
    assert!(out.1.contains("wxoa serving") && !out.1.contains('\x1b'), "{:?}", out.1);
    for secret in [TOKEN, AES_KEY, "oVx4Jt5u2Qk9ZcXyWbA1nPq0RsTu"] {
        assert!(!out.1.contains(secret), "log leaks {secret}: {}", out.1);
    }
}

trait WaitTimeout {
    fn wait_with_output_timeout(&mut self, timeout: Duration) -> (bool, String);
}

impl WaitTimeout for std::process::Child {
    fn wait_with_output_timeout(&mut self, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait().unwrap() {
                let mut log = String::new();
                use std::io::Read;
                self.stderr.take().unwrap().read_to_string(&mut log).unwrap();
                return (status.success(), log);
            }
            if Instant::now() > deadline {
                let _ = self.kill();
                return (false, "did not stop in time".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `wxoa fake-wechat` as its own process, and `wxoa menu check | sync | show` against it.
#[test]
fn menu_check_sync_show_against_the_fake_wechat() {
    let dir = temp_dir("menu");
    let fake_addr = format!("127.0.0.1:{}", free_port());
    let mut text = config_text("127.0.0.1:0", &format!("sqlite://{}/wxoa.db", dir.display()));
    text = text.replace("[database]", &format!("api_base = \"http://{fake_addr}\"\n[database]"));
    let config = dir.join("wxoa.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut fake = Command::new(BIN)
        .args(["fake-wechat", "--config", &config, "--listen", &fake_addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&fake_addr).is_err() {
        assert!(Instant::now() < deadline, "fake did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A command finding no database says so, and creates none; `wxoa migrate` creates it.
    let (code, _, err) = wxoa(&["menu", "show", "--config", &config], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no database at") && err.contains("`wxoa serve` or `wxoa migrate` creates it"), "{err}");
    assert!(!dir.join("wxoa.db").exists(), "nothing created");
    let (code, out, err) = wxoa(&["migrate", "--config", &config], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("database ready (sqlite): schema version"), "{out}");

    let menu = repo().join("config/menu.toml");
    let menu = menu.to_str().unwrap();
    // --config is global: before the command, after it, or after its arguments.
    let (code, out, err) = wxoa(&["--config", &config, "menu", "sync", "--file", menu, "--dry-run"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ 会员 Member"), "{out}");
    let (code, out, err) = wxoa(&["menu", "sync", "--file", menu, "--dry-run", "--config", &config], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ 会员 Member"), "{out}");
    let (code, out, err) = wxoa(&["menu", "sync", "--config", &config, "--file", menu, "--dry-run"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ 会员 Member"), "{out}");
    let (code, out, err) = wxoa(&["menu", "show", "--config", &config], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("会员"), "dry run pushed nothing: {out}");
    let (code, out, err) = wxoa(&["menu", "sync", "--config", &config, "--file", menu], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pushed"), "{out}");
    let (_, out, _) = wxoa(&["menu", "show", "--config", &config], &[]);
    assert!(out.contains("积分 Balance") && out.contains("\"key\": \"balance\""), "{out}");
    let (code, out, _) = wxoa(&["menu", "sync", "--config", &config, "--file", menu], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("already matches"), "{out}");

    // A store's QR code through the API.
    let stores = repo().join("tests/fixtures/stores.csv");
    assert_eq!(wxoa(&["stores", "import", "--config", &config, stores.to_str().unwrap()], &[]).0, 0);
    let (code, out, err) = wxoa(&["stores", "qrcode", "--config", &config, "21"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Nanjing Road Flagship (scene store_21): https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="),
        "{out}"
    );
    let (code, _, err) = wxoa(&["stores", "qrcode", "--config", &config, "99"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no store 99"), "{err}");

    let bad = dir.join("bad-menu.toml");
    std::fs::write(&bad, "[[button]]\nname = \"Far too long a name\"\ntype = \"view\"\nurl = \"example.com\"\n")
        .unwrap();
    let (code, out, _) = wxoa(&["menu", "check", "--file", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 2, "one line per problem: {out}");
    let _ = fake.kill();
    let _ = fake.wait();
}

/// `wxoa campaign create` and `update` clean an article's HTML like the API and the console
/// (tests/campaigns.rs): what the database holds has no script, no handler and no `javascript:`
/// link.
#[test]
fn campaigns_from_the_cli_are_cleaned_too() {
    let dir = temp_dir("cli-campaign");
    let db = format!("sqlite://{}/wxoa.db", dir.display());
    let config = dir.join("wxoa.toml");
    std::fs::write(&config, config_text("127.0.0.1:0", &db)).unwrap();
    let config = config.to_str().unwrap();
    let file = dir.join("campaign.json");
    let campaign = |content: &str| {
        serde_json::json!({ "name": "CLI launch", "articles": [{ "title": "Tonight", "content": content }] })
            .to_string()
    };
    std::fs::write(
        &file,
        campaign("<p onclick=\"x()\">Hi<script>alert(1)</script></p><a href=\"javascript:go()\">a</a>"),
    )
    .unwrap();
    let (code, out, err) = wxoa(&["migrate", "--config", config], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = wxoa(&["campaign", "create", "--config", config, file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let content = || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = wxoa::store::Store::connect(&db, 1).await.unwrap();
            let c = wxoa::campaigns::find(&store, "CLI launch").await.unwrap().unwrap();
            c.articles[0].content.clone()
        })
    };
    assert_eq!(content(), "<p>Hi</p><a rel=\"noopener noreferrer\">a</a>");
    std::fs::write(&file, campaign("<h2>v2</h2><img src=\"x.png\" onerror=\"alert(1)\">")).unwrap();
    let (code, out, err) = wxoa(&["campaign", "update", "--config", config, "CLI launch", file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(content(), "<h2>v2</h2><img>");
}

/// `serve` on a public address with the shipped sample secrets refuses to start, naming each
/// one and how to make a real one; on loopback it starts and warns about each.
#[test]
fn serve_refuses_the_sample_secrets_on_a_public_address() {
    let dir = temp_dir("samples");
    let db = format!("sqlite://{}/wxoa.db", dir.display());
    let env = [("WXOA_SERVER__LISTEN", "0.0.0.0:0"), ("WXOA_DATABASE__URL", db.as_str())];
    let started = Instant::now();
    let (code, out, err) = wxoa(&["serve", "--config", "config/default.toml"], &env);
    assert_ne!(code, 0, "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let line = err.lines().find(|l| l.contains("refusing to serve on 0.0.0.0:0")).unwrap_or_else(|| panic!("{err}"));
    for key in [
        "wechat.app_secret",
        "wechat.token",
        "wechat.encoding_aes_key",
        "h5.session_secret",
        "checkout.secret",
        "shop.secret",
        "crm.secret",
        "admin.tokens (use a token of your own, stored as `wxoa admin hash-token TOKEN` prints it)",
    ] {
        assert!(line.contains(key), "{key} named: {line}");
    }
    assert!(line.contains("`openssl rand -hex 32`"), "{line}");
    assert!(!Path::new(&dir.join("wxoa.db")).exists(), "nothing created before the refusal");

    // Loopback: it starts, with one warning a sample.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let log = dir.join("serve.log");
    let child = Command::new(BIN)
        .args(["serve", "--config", "config/default.toml"])
        .envs([("WXOA_SERVER__LISTEN", listen.as_str()), ("WXOA_DATABASE__URL", db.as_str())])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _serve = KillOnDrop(child);
    wait_healthy(&listen, 20, || std::fs::read_to_string(&log).unwrap_or_default());
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.lines().filter(|l| l.contains("a sample secret from config/default.toml is in force")).count();
    assert_eq!(warnings, 8, "{text}");
}
