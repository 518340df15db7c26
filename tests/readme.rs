//! The README's Quickstart, run as printed: every command a newcomer copies must work on a fresh
//! Herald (no date that has passed, no secret the server does not know, no error answer).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shell blocks from `## Quickstart` up to the next top-level section.
fn quickstart_blocks() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("## Quickstart").expect("a Quickstart section");
    let end = readme[start..].find("\n## Commands").map_or(readme.len(), |e| start + e);
    let mut script = String::new();
    let mut inside = false;
    for line in readme[start..end].lines() {
        match (inside, line.trim_start()) {
            (false, l) if l.starts_with("```sh") => inside = true,
            (true, l) if l.starts_with("```") => inside = false,
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_quickstart_works_as_printed() {
    let script = quickstart_blocks();
    assert!(script.contains("token admin") && script.contains("/revoke"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let api = format!("127.0.0.1:{port}");
    let bin = env!("CARGO_BIN_EXE_herald");
    let _server = Server(
        Command::new(bin)
            .args(["serve", "--listen", &api])
            .env("HERALD_DATA_DIR", dir.path())
            .env_remove("HERALD_SECRET")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&api).is_err() {
        assert!(Instant::now() < deadline, "herald did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("H", bin)
        .env("API", &api)
        .env("HERALD_DATA_DIR", dir.path())
        .env_remove("HERALD_SECRET")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Quickstart failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains(r#""error""#), "a Quickstart command was refused:\n{stdout}");
    for expected in [
        r#"{"upserted":3}"#,
        r#""status":"scheduled""#,
        "系统维护通知",
        r#""status":"revoked""#,
        "imported 1",
        "VIP weekend",
    ] {
        assert!(stdout.contains(expected), "expected {expected} in:\n{stdout}\n{stderr}");
    }
}
