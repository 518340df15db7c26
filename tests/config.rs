//! Settings as a user gives them to the binary: a bad value stops it naming the setting, a TOML
//! file is honoured and overridden by the environment, an unknown key in it is refused by name.

use std::path::Path;
use std::process::{Command, Output};

/// `herald` with none of the caller's `HERALD_*` variables, only `env`.
fn herald(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("HERALD_")) {
        command.env_remove(var);
    }
    command.args(args).envs(env.iter().copied()).output().expect("herald runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bad_value_stops_herald_naming_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let out = herald(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("HERALD_DATA_DIR", data), ("HERALD_MAX_CONNECTIONS", Path::new("lots"))],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HERALD_MAX_CONNECTIONS: not a number: \"lots\""), "{}", stderr(&out));
    let out = herald(&["serve", "--request-timeout", "0s"], &[("HERALD_DATA_DIR", data)]);
    assert!(stderr(&out).contains("--request-timeout: must be longer than 0s"), "{}", stderr(&out));
    // Checked at start whatever the command: a typo never waits for the role that reads it.
    let out = herald(&["migrate"], &[("HERALD_DATA_DIR", data), ("HERALD_SEARCH_URL", Path::new("search:9200"))]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HERALD_SEARCH_URL: unknown backend \"search:9200\""), "{}", stderr(&out));
    assert!(!data.join("herald.db").exists(), "nothing was started");
}

#[test]
fn a_settings_file_is_honoured_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env) = (dir.path().join("from-file"), dir.path().join("from-env"));
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, format!("data-dir = {:?}\nmax-connections = 5\n", from_file.to_str().unwrap())).unwrap();

    let out = herald(&["migrate", "--config", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(from_file.join("herald.db").exists(), "the file's data-dir was used");

    let out = herald(&["migrate"], &[("HERALD_CONFIG", &file), ("HERALD_DATA_DIR", &from_env)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(from_env.join("herald.db").exists(), "HERALD_DATA_DIR beats the file");

    // A bad value in the file is named with the file.
    std::fs::write(&file, "header-timeout = \"soon\"\n").unwrap();
    let out = herald(&["migrate", "--config", file.to_str().unwrap()], &[("HERALD_DATA_DIR", &from_env)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("header-timeout in {}: ", file.display())), "{}", stderr(&out));
}

#[test]
fn an_unknown_key_in_the_settings_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nmax_connection = 5\n").unwrap();
    let out = herald(&["serve", "--config", file.to_str().unwrap()], &[("HERALD_DATA_DIR", dir.path())]);
    assert!(!out.status.success());
    let says = stderr(&out);
    assert!(
        says.contains(&file.display().to_string()) && says.contains("unknown setting \"max_connection\""),
        "{says}"
    );
}
