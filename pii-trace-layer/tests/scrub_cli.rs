//! The `scrub` binary, as CI and operators run it.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

fn scrub(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scrub"))
        .args(args)
        .env("GUARDRAILS_PSEUDONYM_KEY", "cli-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn jsonl_is_scrubbed_and_stays_jsonl() {
    let input = concat!(
        r#"{"event":"user.login","email":"ann@example.com","ip":"203.0.113.9"}"#,
        "\n",
        r#"{"event":"api.request","status":200,"route":"/api/health"}"#,
        "\n",
        r#"{"body":{"password":"hunter2","user_id":42}}"#,
        "\n",
    );
    let out = scrub(&[], input.as_bytes());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    for leaked in ["ann@example.com", "203.0.113.9", "hunter2", ":42"] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
    assert!(text.contains("/api/health"));
}

#[test]
fn check_exits_1_on_pii_with_a_summary_and_0_on_clean_input() {
    let dirty = scrub(
        &["--check"],
        b"mail ann@example.com\ncard 4111 1111 1111 1111\nok\n",
    );
    assert_eq!(dirty.status.code(), Some(1));
    let summary = String::from_utf8(dirty.stdout).unwrap();
    assert_eq!(
        summary.trim(),
        "scrub: 3 lines, 2 findings: email=1 credit_card=1"
    );

    let clean = scrub(
        &["--check"],
        b"GET /api/health 200 3ms\norder 4111111111111112\n",
    );
    assert_eq!(clean.status.code(), Some(0));
    assert!(
        String::from_utf8(clean.stdout)
            .unwrap()
            .contains("no sensitive data found")
    );
}

#[test]
fn invalid_utf8_and_very_long_lines_are_handled() {
    let mut input = b"bad \xff\xfe bytes bob@example.org\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 3 << 20));
    input.extend_from_slice(b" tail carol@example.org\n");
    let out = scrub(&[], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("bob@example.org") && !text.contains("carol@example.org"));
    assert!(text.starts_with("bad \u{fffd}\u{fffd} bytes [email]\n"));
}

#[test]
fn config_file_adds_rules_and_bad_ones_exit_2() {
    let dir = std::env::temp_dir();
    let good = dir.join(format!("scrub-cli-{}.toml", std::process::id()));
    std::fs::write(
        &good,
        "mask_ips = true\n[[rules]]\nname = \"ticket\"\npattern = \"TCK-[0-9]{5}\"\n",
    )
    .unwrap();
    let out = scrub(
        &["--config", good.to_str().unwrap()],
        b"TCK-12345 from 203.0.113.77\n",
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "[ticket] from 203.0.113.0/24\n"
    );

    std::fs::write(&good, "unknown_key = 1\n").unwrap();
    let out = scrub(&["--config", good.to_str().unwrap()], b"x\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_key"));
    std::fs::remove_file(good).unwrap();

    assert_eq!(scrub(&["--nope"], b"").status.code(), Some(2));
}

#[test]
fn a_pem_key_across_lines_keeps_the_line_count_and_leaves_no_body() {
    let body = [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        "q2VmZWxsb3dvcmxkc2VjcmV0a2V5bWF0ZXJpYWxoZXJlZm9yeW91",
    ];
    let input = format!(
        "ts=1 msg=loading key\r\n-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----\nts=2 msg=done email=ann@example.com\nno newline at the end",
        body[0], body[1]
    );
    let out = scrub(&[], input.as_bytes());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.matches('\n').count(),
        input.matches('\n').count(),
        "{text}"
    );
    assert_eq!(text.matches("\r\n").count(), 1, "CRLF kept: {text}");
    for line in body {
        assert!(!text.contains(&line[..16]), "{text}");
    }
    assert!(!text.contains("ann@example.com"), "{text}");
    assert!(text.ends_with("no newline at the end"), "{text}");
}
