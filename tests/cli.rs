//! The command line as a user types it: tokens, import, migrate, and refusing what is not built.

use std::process::{Command, Output};

use herald::auth::{AdminRole, Claims, SecretSettings, TokenSigner};

fn herald(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("HERALD_DATA_DIR", data_dir)
        .env_remove("HERALD_SECRET")
        .env_remove("HERALD_SECRET_PREVIOUS")
        .env_remove("HERALD_SQL_URL")
        .output()
        .expect("herald runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `herald token` signs with the secret the server made in the data dir and says where it is; run
/// where no server ever ran, it refuses instead of inventing a secret no server knows.
#[test]
fn tokens_are_signed_with_the_secret_kept_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let refused = herald(dir.path(), &["token", "admin"]);
    assert!(!refused.status.success());
    let says = String::from_utf8_lossy(&refused.stderr);
    assert!(says.contains("no token secret at") && says.contains("herald serve"), "{says}");
    assert!(!dir.path().join("secret").exists(), "the CLI invented a secret");

    let server = TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
    let admin = herald(dir.path(), &["token", "admin", "--role", "viewer"]);
    assert!(admin.status.success());
    let says = String::from_utf8_lossy(&admin.stderr);
    assert!(says.contains(&dir.path().join("secret").display().to_string()) && says.contains("12h"), "{says}");
    let app = herald(dir.path(), &["token", "app", "--kind", "merchant", "--id", "m-42", "--ttl", "2h"]);
    assert!(app.status.success(), "{}", String::from_utf8_lossy(&app.stderr));
    assert_eq!(server.verify(&stdout(&admin)).unwrap(), Claims::Admin { role: AdminRole::Viewer });
    let claims = server.verify(&stdout(&app)).unwrap();
    assert_eq!(claims.receiver().unwrap().key(), "merchant:m-42");
    let in_three_hours = chrono::Utc::now() + chrono::Duration::hours(3);
    assert!(server.verify_at(&stdout(&app), in_three_hours).is_err(), "--ttl 2h");
    let bad_ttl = herald(dir.path(), &["token", "admin", "--ttl", "forever"]);
    assert!(!bad_ttl.status.success() && String::from_utf8_lossy(&bad_ttl.stderr).contains("--ttl"));
}

/// `herald secret rotate` makes a new secret while tokens signed with the old one keep working.
#[test]
fn rotating_the_secret_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
    let before = stdout(&herald(dir.path(), &["token", "app", "--kind", "rider", "--id", "r1"]));
    assert!(herald(dir.path(), &["secret", "rotate"]).status.success());
    let server = TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
    assert!(server.verify(&before).is_ok(), "a rotation logs nobody out");
    let after = stdout(&herald(dir.path(), &["token", "app", "--kind", "rider", "--id", "r1"]));
    assert_ne!(before, after);
    assert!(server.verify(&after).is_ok());
}

#[test]
fn a_bad_token_request_says_which_argument() {
    let dir = tempfile::tempdir().unwrap();
    let bad = herald(dir.path(), &["token", "app", "--kind", "driver", "--id", "x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--kind"));
}

#[test]
fn import_keeps_good_rows_and_lists_bad_ones_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("r.csv");
    std::fs::write(
        &csv,
        "kind,id,city,groups\nrider,r1,上海,vip;new\nrider,r2,,\ndriver,d1,bj,\nmerchant,m1,bj\nrider,r3,bj,a b\nrider,r4,gz,\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = herald(&data, &["receivers", "import", csv.to_str().unwrap()]);
    assert!(!out.status.success(), "rejected rows make the exit code non-zero");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: city: must not be empty"), "{err}");
    assert!(err.contains("line 4: kind:"), "{err}");
    assert!(err.contains("line 6: groups:"), "{err}");
    assert!(stdout(&out).contains("imported 3 receivers; rejected 3 rows"), "{}", stdout(&out));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ports = herald::startup::embedded_ports(&data).await.unwrap();
        let ids: Vec<_> = ["r1", "r2", "r4"].iter().map(|i| herald_domain::ReceiverId::parse("", i).unwrap()).collect();
        let found = ports.receivers.lookup_receivers(herald_domain::ReceiverKind::Rider, &ids).await.unwrap();
        let found: Vec<_> = found.iter().map(|r| (r.id.to_string(), r.city.to_string(), r.groups_joined())).collect();
        assert_eq!(
            found,
            vec![("r1".into(), "上海".into(), "new;vip".into()), ("r4".into(), "gz".into(), String::new())]
        );
    });
}

/// A receiver named twice is one receiver: written as its last row says and counted once, as the
/// batch endpoint counts it.
#[test]
fn import_counts_a_receiver_named_twice_once() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("r.csv");
    std::fs::write(&csv, "rider,r1,sh,\nrider,r2,sh,\nrider,r1,bj,vip\nmerchant,r1,sh,\n").unwrap();
    let data = dir.path().join("data");
    let out = herald(&data, &["receivers", "import", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("imported 3 receivers; rejected 0 rows"), "{}", stdout(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ports = rt.block_on(herald::startup::embedded_ports(&data)).unwrap();
    let r1 = herald_domain::ReceiverId::parse("", "r1").unwrap();
    let found = rt.block_on(ports.receivers.lookup_receivers(herald_domain::ReceiverKind::Rider, &[r1])).unwrap();
    assert_eq!((found[0].city.to_string(), found[0].groups_joined()), ("bj".to_string(), "vip".to_string()));
}

#[test]
fn migrate_creates_the_stores() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("created the stores in"), "{out:?}");
    for file in ["herald.db", "queue.db", "inbox.db"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    let again = herald(dir.path(), &["migrate"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("are up to date"), "{again:?}");
}

/// `bench fanout --data-dir` measures on that disk: its fresh runs live inside it, and are gone after.
#[test]
fn bench_fanout_runs_inside_the_given_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("bench");
    let results = dir.path().join("results");
    let out = herald(
        &bench,
        &[
            "bench",
            "fanout",
            "--receivers",
            "2000",
            "--cities",
            "4",
            "--poll-connections",
            "2",
            "--out",
            results.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2000 riders, 4 cities"), "{out:?}");
    assert!(bench.is_dir(), "the bench did not use --data-dir");
    assert_eq!(std::fs::read_dir(&bench).unwrap().count(), 0, "the run's data is removed");
    let svg = std::fs::read_to_string(results.join("fanout-latest.svg")).expect("a chart");
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{svg}");
    let latest = std::fs::read_to_string(results.join("fanout-latest.md")).unwrap();
    assert!(latest.contains("| 1 |") && latest.contains("raw limit"), "{latest}");
}

/// `bench fanout --content personal` sends a campaign every read personalises, and says so.
#[test]
fn bench_fanout_sends_personal_content_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let args =
        ["bench", "fanout", "--receivers", "300", "--cities", "3", "--poll-connections", "2", "--content", "personal"];
    let mut args = args.to_vec();
    args.extend(["--out", results.to_str().unwrap()]);
    let out = herald(&dir.path().join("bench"), &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let latest = std::fs::read_to_string(results.join("fanout-latest.md")).unwrap();
    assert!(latest.contains("Content: personal"), "{latest}");
    let json = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json") && !p.to_string_lossy().contains("latest"))
        .expect("a JSON report");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(report["runs"][0]["content"], "personal", "{report}");
}

/// `bench fanout` stops before measuring when a server it needs is not set, naming the setting (or,
/// in a build without the server adapters, the feature to build with).
#[test]
fn bench_fanout_names_the_missing_server() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let run = |extra: &[&str]| {
        let mut args = vec!["bench", "fanout", "--receivers", "10", "--cities", "2", "--poll-connections", "0"];
        args.extend(["--out", results.to_str().unwrap()]);
        args.extend(extra);
        let out = herald(&dir.path().join("bench"), &args);
        assert!(!out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let distributed = run(&["--mode", "distributed"]);
    let expected = if cfg!(feature = "distributed") { "set HERALD_SQL_URL" } else { "--features distributed" };
    assert!(distributed.contains(expected), "{distributed}");
    let peer = run(&["--peer", "naive-mysql"]);
    assert!(peer.contains("--peer naive-mysql writes into HERALD_SQL_URL"), "{peer}");
    assert!(!results.exists(), "nothing was measured");
}

/// Only in a build without the MariaDB adapter: with it, the URL is taken and `serve` runs on.
#[cfg(not(feature = "mariadb"))]
#[test]
fn server_urls_are_refused_until_their_adapters_exist() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HERALD_DATA_DIR", dir.path())
        .env("HERALD_SQL_URL", "mysql://root@127.0.0.1/test")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_SQL_URL is set"));
}

/// The data directory Herald creates is its owner's alone (0700), and so is every file in it (0600):
/// the secret, each store and SQLite's `-wal` and `-shm` companions.
#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("fresh");
    assert!(herald(&dir, &["migrate"]).status.success());
    // The secret is made by the server on its first start.
    TokenSigner::for_server(&SecretSettings::default(), &dir).unwrap();
    assert!(herald(&dir, &["token", "admin"]).status.success());
    let csv = parent.path().join("r.csv");
    std::fs::write(&csv, "kind,id,city,groups\nrider,p1,sh,\n").unwrap();
    assert!(herald(&dir, &["receivers", "import", csv.to_str().unwrap()]).status.success());
    // Open the stores and write, so SQLite's -wal and -shm files exist while they are checked.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ports = runtime.block_on(herald::startup::embedded_ports(&dir)).unwrap();
    let receiver = herald_domain::Receiver::parse_fields("rider", "p2", "sh", "").unwrap();
    runtime.block_on(ports.receivers.upsert_receivers(&[receiver])).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "data dir");
    let mut files: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        files.push(path.file_name().unwrap().to_string_lossy().into_owned());
        let private = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), private, "{}", path.display());
    }
    for expected in ["secret", "herald.db", "herald.db-wal", "herald.db-shm", "queue.db", "inbox.db", "search"] {
        assert!(files.iter().any(|f| f == expected), "{expected} missing among {files:?}");
    }
}
