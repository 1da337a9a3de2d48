//! The README's commands, run as written: `serve` (and `dev`) from the set-up section, then the
//! replay block against it, on a database as new as a fresh clone's. The port and the database
//! are the only things changed (through `WXOA_*` variables, as the README documents), so a
//! copy of the repository's own config is what answers.

mod common;

use common::*;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wxoa");

/// The commands of the README's fenced `sh` block that follows `marker`, one per line, without
/// comments.
fn readme_block(marker: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let at = readme.find(marker).unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("a sh block after the marker") + "```sh\n".len();
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end]
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `cargo run --release -- ARGS` as the binary under test, with `ARGS` split on spaces.
fn as_binary(line: &str) -> Vec<String> {
    let args = line.strip_prefix("cargo run --release -- ").unwrap_or_else(|| panic!("not a wxoa command: {line}"));
    args.split_whitespace().map(str::to_owned).collect()
}

fn run_lines(lines: &[String], env: &[(String, String)]) {
    for line in lines {
        let out = Command::new(BIN)
            .args(as_binary(line))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(repo())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "`{line}` failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        if line.contains(" replay ") {
            let n = std::fs::read_dir(repo().join("tests/fixtures/inbound")).unwrap().count();
            assert!(stdout.contains(&format!("{n} passed, 0 failed")), "{stdout}");
        }
    }
}

#[test]
fn the_readme_replay_passes_against_a_fresh_serve_and_dev() {
    let setup = readme_block("## Set-up on a fresh machine");
    let serve = setup.iter().find(|l| l.ends_with(" serve")).expect("the README starts the server with serve");
    let dev = setup.iter().find(|l| l.ends_with(" dev")).expect("the README names wxoa dev");
    let replay = readme_block("Try it against the running server");
    assert!(replay.iter().any(|l| l.contains(" replay --expect ")), "{replay:?}");

    // Run twice against each: the second run must not be answered from the first one's log.
    for (server, lines) in
        [(serve, replay.clone()), (dev, replay.iter().filter(|l| l.contains(" replay ")).cloned().collect())]
    {
        let dir = temp_dir("readme");
        // `dev` links to itself (its h5.public_url is its own address), so its golden replies
        // hold the README's address: it must listen there, as it does for a reader.
        let addr = if server.ends_with(" dev") {
            if std::net::TcpListener::bind("127.0.0.1:8080").is_err() {
                assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "127.0.0.1:8080 is taken; dev cannot be tried");
                eprintln!("note: 127.0.0.1:8080 is taken; the README replay against dev is skipped");
                continue;
            }
            "127.0.0.1:8080".to_owned()
        } else {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            format!("127.0.0.1:{port}")
        };
        // A database in a directory that does not exist yet, like data/ in a fresh clone.
        let db = format!("sqlite://{}/data/wxoa.db", dir.display());
        let env = vec![("WXOA_SERVER__LISTEN".to_owned(), addr.clone()), ("WXOA_DATABASE__URL".to_owned(), db)];
        let log = dir.join("server.log");
        let mut args = as_binary(server);
        if server.ends_with(" dev") {
            args.extend(["--database".into(), format!("sqlite://{}/data/dev.db", dir.display())]);
            args.extend(["--fixtures".into(), dir.join("fixtures").display().to_string()]);
        }
        let _server = KillOnDrop(
            Command::new(BIN)
                .args(&args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(repo())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_healthy(&addr, 60, || std::fs::read_to_string(&log).unwrap_or_default());
        run_lines(&lines, &env);
        run_lines(&lines, &env);
    }
}
