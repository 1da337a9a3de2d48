//! `wxoa serve` as a child process (for tests of signals, kill -9 and restarts), with its
//! config written to a file the way an operator would.

use super::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_wxoa");

/// A `wxoa serve` process, killed when dropped.
pub struct Serve {
    pub child: Option<Child>,
    pub addr: String,
    pub log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Serve {
    /// Starts `serve` with the test config (SQLite in `dir`) as changed by `tweak`; returns once
    /// it is listening, without waiting for it to answer.
    pub fn spawn(dir: &std::path::Path, tweak: impl FnOnce(&mut wxoa::config::Config)) -> Serve {
        let db = Db::sqlite_in(dir);
        let mut config = test_config(&db, Mode::Safe);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        config.server.listen = format!("127.0.0.1:{port}");
        config.campaigns.enabled = false;
        config.outbox.enabled = false;
        tweak(&mut config);
        Serve::with_config(dir, &config)
    }

    /// Starts `serve` with exactly `config` (its `server.listen` a free port).
    pub fn with_config(dir: &std::path::Path, config: &wxoa::config::Config) -> Serve {
        Serve::with_env(dir, config, &[])
    }

    /// As [`Serve::with_config`], with these environment variables set (`RUST_LOG`, …).
    pub fn with_env(dir: &std::path::Path, config: &wxoa::config::Config, env: &[(&str, &str)]) -> Serve {
        let port = config.server.listen.rsplit(':').next().unwrap();
        let file = dir.join("wxoa.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let log = dir.join(format!("serve-{port}-{}.log", wxoa::clock::Clock::system().now_ms()));
        let child = Command::new(BIN)
            .args(["serve", "--config", file.to_str().unwrap()])
            .envs(env.iter().copied())
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve { child: Some(child), addr: config.server.listen.clone(), log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then how long until it exited, and whether with 0 (None: not within `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<(Duration, bool)> {
        let child = self.child.as_mut().unwrap();
        let sent = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        while sent.elapsed() < within {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some((sent.elapsed(), status.success()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// One `GET /healthz` on a new connection: its status line and how long it took.
pub async fn healthz(addr: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut s = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        _ => return ("no connection".into(), started.elapsed()),
    };
    let _ = s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    (text.lines().next().unwrap_or("").to_owned(), started.elapsed())
}

pub async fn wait_answering(addr: &str, serve: &Serve) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while healthz(addr).await.0 != "HTTP/1.1 200 OK" {
        assert!(Instant::now() < deadline, "serve did not answer: {}", serve.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
