//! The ops console as served by a real Herald: its files come from the binary with a strict
//! Content-Security-Policy, and its scripts never hand API data to the HTML parser.

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let h = TestHerald::spawn().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let root = client.get(format!("{}/console", h.base)).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(root.headers()["location"], "/console/");
    for (path, kind) in
        [("/console/", "text/html"), ("/console/console.js", "text/javascript"), ("/console/console.css", "text/css")]
    {
        let r = client.get(format!("{}{path}", h.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let policy = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        for rule in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(policy.contains(rule), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{policy}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(!r.text().await.unwrap().is_empty());
    }
    let missing = h.call(reqwest::Method::GET, "/console/secrets.txt", None, None).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, Some("not_found")));
    h.stop().await;
}

/// Text from the API goes in through `textContent` / text nodes only: no script may parse HTML.
#[test]
fn the_console_never_parses_html_from_strings() {
    for (name, source) in [
        ("api.js", include_str!("../console/api.js")),
        ("dom.js", include_str!("../console/dom.js")),
        ("console.js", include_str!("../console/console.js")),
        ("index.html", include_str!("../console/index.html")),
    ] {
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            assert!(!source.contains(sink), "{name} uses {sink}");
        }
        assert!(!source.contains("<script>") && !source.contains(" style=\""), "{name} has inline code or style");
    }
}
