//! The `mock` binary: announces each instance, serves it, and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use http::{Method, Request, StatusCode};
use http_body_util::Full;

use crate::support::client;

#[tokio::test]
async fn binary_serves_named_instances_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--name",
            "eus",
            "--instances",
            "2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mock starts");
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(2)
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap()
    .unwrap();

    for (index, line) in lines.iter().enumerate() {
        let prefix = format!("mock eus-{index} listening on ");
        let url = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line}"));
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{url}/openai/v1/models"))
            .body(Full::default())
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["x-mock-backend"],
            format!("eus-{index}").as_str()
        );
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
