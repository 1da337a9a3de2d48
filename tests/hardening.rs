//! `wxoa serve` as a process against hostile and unlucky clients: thousands of slow-header and
//! idle connections while `/healthz` must stay fast, a webhook body trickled in, a connection
//! cap, a shutdown with stalled clients, SIGTERM the moment the server first answers (50 times,
//! both cores busy), and debug logs that name routes, not URIs.

mod common;

use common::serve::*;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxoa::wechat::envelope::Mode;

/// Whether the server has closed `s` (a read sees the end within `within`).
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_cannot_exhaust_the_server() {
    wxoa::http::server::raise_fd_limit().unwrap();
    let dir = temp_dir("slow");
    let serve = Serve::spawn(&dir, |c| c.server.header_read_timeout_secs = 5);
    let addr = serve.addr.clone();
    wait_answering(&addr, &serve).await;

    // 1,500 connections that send half a request head and then nothing …
    let mut slow = Vec::new();
    for _ in 0..1500 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow:").await.unwrap();
        slow.push(s);
    }
    // … and 2,000 kept alive after one request, doing nothing.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        idle.push(s);
    }
    // A new client is still answered at once.
    let mut times = Vec::new();
    for _ in 0..20 {
        let (status, took) = healthz(&addr).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "with 3,500 connections held: {}", serve.log());
        times.push(took);
    }
    times.sort();
    // Printed for the README (`cargo test --release --test hardening -- --nocapture`).
    eprintln!("/healthz with 3,500 connections held: median {:?}, slowest {:?}", times[10], times[19]);
    assert!(times[10] < Duration::from_millis(100), "median /healthz {:?} (all: {times:?})", times[10]);
    assert!(times[19] < Duration::from_millis(500), "slowest /healthz {:?}", times[19]);

    // The header-read timeout closes both kinds (5 s from when each began to wait).
    assert!(closed_by_server(&mut slow[0], Duration::from_secs(8)).await, "a slow head is cut off");
    assert!(closed_by_server(&mut idle[0], Duration::from_secs(8)).await, "an idle connection is closed");
    let mut still_open = 0;
    for s in slow.iter_mut().chain(idle.iter_mut()).skip(1).step_by(50) {
        if !closed_by_server(s, Duration::from_millis(500)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "every held connection was closed after the timeout");
    assert_eq!(healthz(&addr).await.0, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_trickled_in_is_cut_off_at_the_header_timeout() {
    let dir = temp_dir("slowbody");
    let serve = Serve::spawn(&dir, |c| c.server.header_read_timeout_secs = 2);
    let addr = serve.addr.clone();
    wait_answering(&addr, &serve).await;
    // The head and ten of the two hundred bytes it announces, then nothing: the body's read is
    // bounded by the same timeout as the head's (no timer is set when the body came with it).
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    s.write_all(
        b"POST /wechat?signature=x&timestamp=1&nonce=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n<xml><ToUs",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"too slow") {
        match tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("no answer to a stalled body: {other:?} after {:?}; {}", started.elapsed(), serve.log()),
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nrequest body too slow"), "{text}");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(4), "answered after {took:?}");
    // The server is fine, and a whole request on a new connection is answered as before.
    assert_eq!(healthz(&addr).await.0, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_not_queued() {
    let dir = temp_dir("cap");
    let serve = Serve::spawn(&dir, |c| c.server.max_connections = 50);
    let addr = serve.addr.clone();
    wait_answering(&addr, &serve).await;
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s);
    }
    // The 51st is closed at once, and the process is fine.
    let (status, took) = healthz(&addr).await;
    assert_eq!(status, "", "refused at the cap");
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while healthz(&addr).await.0 != "HTTP/1.1 200 OK" {
        assert!(Instant::now() < deadline, "answers again once connections close: {}", serve.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connections a stopped `serve` (one that accepts nothing) lets complete within 300 ms each,
/// out of `tries` made at once.
async fn completed_while_stopped(serve: &Serve, tries: usize) -> (usize, Vec<TcpStream>) {
    let pid = serve.child.as_ref().unwrap().id() as i32;
    // SAFETY: signals a child process this test owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let attempts: Vec<_> = (0..tries)
        .map(|_| {
            let addr = serve.addr.clone();
            tokio::spawn(
                async move { tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await },
            )
        })
        .collect();
    let mut connected = Vec::new();
    for a in attempts {
        if let Ok(Ok(s)) = a.await.unwrap() {
            connected.push(s);
        }
    }
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    (connected.len(), connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accept_queue_is_server_listen_backlog_long() {
    // A server that is not accepting (stopped, or busy at a flood's start) leaves connections to
    // the kernel's queue: it completes `backlog + 1` of them and drops the other SYNs, which their
    // clients resend only after a second.
    let dir = temp_dir("backlog");
    let serve = Serve::spawn(&dir, |c| c.server.listen_backlog = 4);
    wait_answering(&serve.addr, &serve).await;
    let (n, mut queued) = completed_while_stopped(&serve, 40).await;
    assert_eq!(n, 5, "a backlog of 4 queues 5 connections: {}", serve.log());
    // Those queued are served once the server runs again.
    for s in &mut queued {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut head = [0u8; 15];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK");
    }
    drop(serve);

    // The default (1024) takes a burst of 200 whole.
    let dir = temp_dir("backlog-default");
    let serve = Serve::spawn(&dir, |_| {});
    wait_answering(&serve.addr, &serve).await;
    let (n, _) = completed_while_stopped(&serve, 200).await;
    assert_eq!(n, 200, "the default backlog queues a burst of 200: {}", serve.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_stalled_clients_exits_within_the_grace() {
    let dir = temp_dir("grace");
    let mut serve = Serve::spawn(&dir, |c| {
        c.server.shutdown_grace_secs = 2;
        c.server.header_read_timeout_secs = 60;
    });
    let addr = serve.addr.clone();
    wait_answering(&addr, &serve).await;
    let mut stalled = Vec::new();
    for i in 0..21 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        // Half of them stall in the head, the rest in a body they promised.
        let stall: &[u8] = if i % 2 == 0 {
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
        };
        s.write_all(stall).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let exited = tokio::task::spawn_blocking(move || {
        let r = serve.terminate(Duration::from_secs(10));
        (r, serve.log())
    })
    .await
    .unwrap();
    let (Some((took, ok)), log) = exited else { panic!("still running 10 s after SIGTERM") };
    assert!(ok, "exit 0: {log}");
    eprintln!("SIGTERM with 21 stalled clients and a 2 s grace: exited after {took:?}");
    assert!(took < Duration::from_millis(3500), "exited {took:?} after SIGTERM with a 2 s grace: {log}");
    assert!(log.contains("closing connections still open after the shutdown grace"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_the_moment_it_answers_is_never_lost() {
    let dir = temp_dir("signal");
    // Both cores kept busy meanwhile, as on a loaded machine.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for run in 0..50 {
        let serve = Serve::spawn(&dir, |c| c.server.shutdown_grace_secs = 2);
        let addr = serve.addr.clone();
        wait_answering(&addr, &serve).await;
        let result = tokio::task::spawn_blocking(move || {
            let mut serve = serve;
            let r = serve.terminate(Duration::from_secs(10));
            (r, serve.log())
        })
        .await
        .unwrap();
        match result {
            (Some((took, true)), _) => {
                assert!(took < Duration::from_secs(3), "run {run}: {took:?}");
                slowest = slowest.max(took);
            }
            (other, log) => panic!("run {run}: {other:?}: {log}"),
        }
    }
    eprintln!("SIGTERM the moment /healthz first answers, 50 runs, both cores busy: slowest exit {slowest:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
}

/// A handler past its deadline whose process is killed (-9) before it delivers: the deferred
/// outcome committed with its late-reply job, so the restarted server runs the handler again
/// from the log and the follower gets the reply once. On PostgreSQL, where another session's
/// lock on the `followers` table holds the `welcome_store` handler past the deadline while the
/// message log goes on committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_reply_survives_kill_9() {
    let Some(_) = postgres_url() else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI runs this on PostgreSQL");
        eprintln!("note: no PostgreSQL; the kill -9 test of late replies is skipped");
        return;
    };
    let db = Db::new(Backend::Postgres).await;
    let dir = temp_dir("late");
    let mut config = test_config(&db, Mode::Safe);
    let fake = start_fake(&mut config).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.server.listen = format!("127.0.0.1:{port}");
    config.campaigns.enabled = false;
    config.bot.reply_deadline_ms = 500;
    config.bot.late_takeover_secs = 2;
    config.outbox.poll_ms = 50;
    let store = wxoa::store::Store::open_migrated(&db.url, 2, wxoa::store::Create::Always).await.unwrap();
    wxoa::stores::import(&store, &std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap())
        .await
        .unwrap();
    let mut first = Serve::with_config(&dir, &config);
    let addr = first.addr.clone();
    wait_answering(&addr, &first).await;

    // Another session locks the followers table: the store welcome cannot record its follower.
    let wxoa::store::Pool::Postgres(pool) = &store.pool else { unreachable!() };
    let mut holder = pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE followers IN ACCESS EXCLUSIVE MODE").execute(&mut *holder).await.unwrap();

    let follow = format!(
        "<xml><ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName><FromUserName><![CDATA[oLate9]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>\
         <EventKey><![CDATA[qrscene_store_21]]></EventKey></xml>",
        store.now_ms() / 1000
    );
    let http = reqwest::Client::new();
    let started = Instant::now();
    let url = format!("http://{addr}/wechat");
    let answer = wxoa::fake::post(&http, &config.envelope(), &url, &follow, store.clock.now_secs()).await;
    assert!(matches!(answer, Ok((200, None))), "success at the deadline: {answer:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    let (outcome, late): (Option<String>, i64) = sqlx::query_as(
        "SELECT m.outcome, (SELECT COUNT(*) FROM jobs WHERE kind = 'late_reply' AND state = 'queued') \
         FROM inbound_messages m WHERE m.openid = 'oLate9'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((outcome.as_deref(), late), (Some("deferred"), 1), "deferred, with its late reply queued");

    // kill -9 while the handler waits, then the lock goes and a new process starts.
    let mut child = first.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut *holder).await.unwrap();
    drop(holder);
    let second = Serve::with_config(&dir, &config);
    wait_answering(&addr, &second).await;
    let delivered =
        eventually(20, || fake.calls_to("/cgi-bin/message/custom/send").iter().any(|c| c.body["touser"] == "oLate9"))
            .await;
    assert!(delivered, "the late reply arrived after the restart: {}", second.log());
    let sent: Vec<_> =
        fake.calls_to("/cgi-bin/message/custom/send").into_iter().filter(|c| c.body["touser"] == "oLate9").collect();
    assert_eq!(sent.len(), 1, "once");
    assert!(sent[0].body["text"]["content"].as_str().unwrap().contains("Welcome to Nanjing Road Flagship"), "{sent:?}");
    // The fake records the call before the job's outcome commits: wait for the commit.
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        let result: Option<String> =
            sqlx::query_scalar("SELECT result FROM jobs WHERE kind = 'late_reply'").fetch_one(pool).await.unwrap();
        if result.is_some() || Instant::now() > deadline {
            break result;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(result.as_deref(), Some("late reply sent (handler run again)"));
    drop(second);
    store.close().await;
    db.drop_db().await;
}

/// At debug level every routed request is logged in a span naming its route, never its URI:
/// an OAuth callback's `code` and `state`, and an openid in a path, stay out of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_name_routes_not_uris() {
    let dir = temp_dir("debug-log");
    let db = Db::sqlite_in(&dir);
    let mut config = test_config(&db, Mode::Safe);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.server.listen = format!("127.0.0.1:{port}");
    config.campaigns.enabled = false;
    config.outbox.enabled = false;
    let mut serve = Serve::with_env(&dir, &config, &[("RUST_LOG", "debug")]);
    let addr = serve.addr.clone();
    wait_answering(&addr, &serve).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let callback = http
        .get(format!("http://{addr}/h5/oauth/callback?code=CODESECRET4711&state=STATESECRET0815"))
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status().as_u16(), 400, "an unknown state is refused");
    let member = http
        .get(format!("http://{addr}/api/v1/members/oLogSecretOpenid42"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(member.status().as_u16(), 404);
    let log = tokio::task::spawn_blocking(move || {
        serve.terminate(Duration::from_secs(10));
        serve.log()
    })
    .await
    .unwrap();
    assert!(log.contains(r#"route="/h5/oauth/callback""#), "{log}");
    assert!(log.contains(r#"route="/api/v1/members/{key}""#), "{log}");
    for secret in ["CODESECRET4711", "STATESECRET0815", "oLogSecretOpenid42"] {
        assert!(!log.contains(secret), "{secret} in the debug log:\n{log}");
    }
}

/// `[log] format = "json"`: each line is one JSON object, and the lines of a request carry its
/// span — the caller's `X-Request-Id` (echoed) or one made, and on the webhook the MsgId and
/// the masked openid; no full openid and no secret is written. `/metrics` is served on
/// `server.metrics_listen`, and on the public port only to the bearer of the metrics token.
#[tokio::test]
async fn json_logs_follow_each_request_and_metrics_are_not_public() {
    use wxoa::config::LogFormat;
    let dir = temp_dir("json-log");
    let db = Db::sqlite_in(&dir);
    let mut config = test_config(&db, Mode::Safe);
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.server.listen = format!("127.0.0.1:{}", free());
    let metrics_addr = format!("127.0.0.1:{}", free());
    config.server.metrics_listen = metrics_addr.clone();
    config.server.metrics_token = wxoa::secret::Secret::new("metrics-token-0123456789");
    config.log.format = LogFormat::Json;
    config.log.level = "info,wxoa=debug".into();
    config.campaigns.enabled = false;
    config.outbox.enabled = false;
    let mut serve = Serve::with_config(&dir, &config);
    let addr = serve.addr.clone();
    wait_answering(&addr, &serve).await;
    let http = reqwest::Client::new();
    let openid = "oJsonLogOpenid4711Secret";
    let envelope = config.envelope();
    let webhook = |msg_id: u64, request_id: Option<&str>| {
        // `serve` runs on the system clock.
        let now = wxoa::clock::Clock::system().now_secs();
        let (query, body) =
            envelope.wrap(&text_message(openid, msg_id, "hello"), now, &wxoa::wechat::envelope::random_nonce());
        let mut req = http.post(format!("http://{addr}/wechat?{query}")).body(body);
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(webhook(424242, Some("trace-4711")).await, "trace-4711", "a caller's id is kept and echoed");
    let made = webhook(424243, None).await;
    assert!(made.contains('-') && made != "trace-4711", "{made}");
    let replaced = webhook(424244, Some("not an id; <script>")).await;
    assert_ne!(replaced, "not an id; <script>");
    let member = http
        .get(format!("http://{addr}/api/v1/members/{openid}"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-request-id", "api-0815")
        .send()
        .await
        .unwrap();
    assert_eq!(member.status().as_u16(), 404);
    assert_eq!(member.headers()["x-request-id"], "api-0815");

    // Metrics: the private address serves them and nothing else; the public port wants the token.
    let get = |url: String, token: Option<&'static str>| {
        let mut req = http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, text) = get(format!("http://{metrics_addr}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(text.contains("wxoa_webhook_answered_total"), "{text}");
    assert_eq!(get(format!("http://{metrics_addr}/healthz"), None).await.0, 404);
    assert_eq!(get(format!("http://{addr}/metrics"), None).await, (401, "a metrics token is required".into()));
    assert_eq!(get(format!("http://{addr}/metrics"), Some("metrics-token-wrong-guess")).await.0, 401);
    let (status, text) = get(format!("http://{addr}/metrics"), Some("metrics-token-0123456789")).await;
    assert_eq!(status, 200);
    assert!(text.contains("wxoa_webhook_answered_total"), "{text}");

    let log = tokio::task::spawn_blocking(move || {
        serve.terminate(Duration::from_secs(10));
        serve.log()
    })
    .await
    .unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let span_of = |id: &str| {
        lines
            .iter()
            .filter_map(|l| l["spans"].as_array()?.iter().find(|s| s["request_id"] == id).cloned())
            .next()
            .unwrap_or_else(|| panic!("no line of request {id}:\n{log}"))
    };
    let first = span_of("trace-4711");
    assert_eq!((first["name"].as_str(), first["msg_id"].as_i64()), (Some("webhook"), Some(424242)), "{first}");
    assert_eq!(first["openid"].as_str(), Some(wxoa::mask(openid).as_str()));
    assert_eq!(span_of(&made)["msg_id"], 424243);
    assert_eq!(span_of("api-0815")["route"], "/api/v1/members/{key}");
    for secret in [
        openid,
        ADMIN_TOKEN,
        "metrics-token-0123456789",
        config.wechat.token.expose(),
        config.wechat.encoding_aes_key.expose(),
        config.wechat.app_secret.expose(),
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
