//! Black-box tests of `examples/guarded_service.rs`: the real binary, a real
//! listener on 127.0.0.1, plain HTTP/1.1 over TCP.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The example binary that `cargo test` builds beside the test executables.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target_dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = target_dir
        .join("examples")
        .join(format!("guarded_service{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace --all-features`, which builds examples",
        bin.display()
    );
    bin
}

const JWT_SECRET: &str = "black-box-test-secret-0123456789-abcdefgh";
const WEBHOOK_SECRET: &str = "whsec_black_box_test_0123456789";
const RATELIMIT_KEY: &str = "black-box-rate-limit-key-0123456789-abcdefgh";

fn command() -> Command {
    let mut cmd = Command::new(example_binary());
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("GUARDRAILS_CONFIG")
        // No database unless a test gives one.
        .env_remove("DATABASE_URL")
        .env("GUARDRAILS_JWT_SECRET", JWT_SECRET)
        .env("GUARDRAILS_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("GUARDRAILS_RATELIMIT_KEY", RATELIMIT_KEY)
        .env("GUARDRAILS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("GUARDRAILS__") {
            cmd.env_remove(key);
        }
    }
    // Tests run side by side: each service's metrics on a port of its own.
    cmd.env("GUARDRAILS__MONITOR__METRICS_LISTEN", "127.0.0.1:0");
    cmd
}

struct Running {
    child: Child,
    addr: String,
    metrics_addr: Option<String>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Owned by `Running` at once, so `Drop` reaps it on every path.
        let mut svc = Self {
            child,
            addr: String::new(),
            metrics_addr: None,
            stdout: None,
        };
        let mut stdout = BufReader::new(svc.child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let mut err = String::new();
                svc.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("service exited before listening: {err}");
            }
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if json["message"] == "listening" {
                svc.addr = json["addr"].as_str().unwrap().to_owned();
                svc.metrics_addr = json["metrics_addr"].as_str().map(str::to_owned);
                svc.stdout = Some(stdout);
                return svc;
            }
        }
    }

    /// Sends one request and returns (status, headers, body).
    fn get(&self, path: &str, extra: &str) -> (u16, String, String) {
        self.send("GET", path, extra, "")
    }

    /// `GET /metrics` on the service's metrics listener.
    fn scrape(&self) -> (u16, String, String) {
        let metrics = self.metrics_addr.as_ref().expect("a metrics listener");
        send_to(metrics, "GET", "/metrics", "", "")
    }

    /// Sends one request; returns (status, lower-cased head, body).
    fn send(&self, method: &str, path: &str, extra: &str, body: &str) -> (u16, String, String) {
        send_to(&self.addr, method, path, extra, body)
    }

    fn terminate(&mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        if let Some(stdout) = self.stdout.as_mut() {
            stdout.read_to_string(&mut rest).unwrap();
        }
        (status, rest)
    }
}

/// The service's log lines (every stdout line is one JSON object).
fn log_lines(logs: &str) -> impl Iterator<Item = serde_json::Value> + '_ {
    logs.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
}

/// The log lines of the event `name`, in order.
fn events(logs: &str, name: &str) -> Vec<serde_json::Value> {
    log_lines(logs).filter(|l| l["event"] == name).collect()
}

/// Sends one request to `addr`; returns (status, lower-cased head, body).
fn send_to(addr: &str, method: &str, path: &str, extra: &str, body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave the service running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn health_is_public_json_with_request_id() {
    let mut svc = Running::start(command());
    let (status, head, body) = svc.get("/api/health", "x-request-id: client-id-1\r\n");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-request-id: client-id-1"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ok");

    // Deny by default: an unknown route is not public either.
    let (status, head, body) = svc.get("/nowhere", "x-request-id: bad id\r\n");
    assert_eq!(status, 401);
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], 401);
    let id = json["request_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "malformed client id was replaced by a UUID");

    let (status, logs) = svc.terminate();
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(logs.contains("shutting down"), "{logs}");
    // One api.request line per request, with the id the client got.
    let requests = events(&logs, "api.request");
    assert_eq!(requests.len(), 2, "{logs}");
    assert_eq!(requests[0]["request_id"], "client-id-1");
    assert_eq!(requests[0]["http.route"], "/api/health");
    assert_eq!(requests[0]["http.response.status_code"], 200);
    assert_eq!(requests[1]["request_id"], id);
    assert_eq!(requests[1]["level"], "WARN");
}

#[test]
fn pii_in_a_request_never_reaches_the_logs() {
    let mut svc = Running::start(command());
    let (status, _, _) = svc.get(
        "/api/users/ann@example.com/profile?email=bob%40example.org&token=s3cr3tvalue",
        "User-Agent: tool/1.0 (carol@example.net)\r\nCookie: session=abcdef123456\r\n",
    );
    assert_eq!(status, 401);
    let (_, logs) = svc.terminate();
    for leaked in [
        "ann@example.com",
        "bob%40example.org",
        "s3cr3tvalue",
        "carol@example.net",
        "abcdef123456",
    ] {
        assert!(!logs.contains(leaked), "{leaked} in {logs}");
    }
    assert!(logs.contains("\"event\":\"api.request\""), "{logs}");
}

#[test]
fn bad_config_file_refuses_to_start() {
    let path = std::env::temp_dir().join(format!("guardrails-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[server]\nshutdown_grace = \"10s\"\nlisten = \"0.0.0.0:80\"\n",
    )
    .unwrap();
    let out = command().env("GUARDRAILS_CONFIG", &path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to start"), "{err}");
    assert!(
        err.contains("server.listen") || err.contains("`listen`"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.contains("listening"),
        "no `listening` before a refusal: {out}"
    );
}

#[test]
fn unknown_env_overrides_are_all_named_at_startup() {
    let out = command()
        .env("GUARDRAILS__INTEGRATIONS__WEATHER__URL", "http://x")
        .env("GUARDRAILS__SERVER__GRACE", "5s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "GUARDRAILS__INTEGRATIONS__WEATHER__URL",
        "GUARDRAILS__SERVER__GRACE",
    ] {
        assert!(err.contains(var), "{var} not named: {err}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

#[test]
fn missing_config_file_refuses_to_start() {
    let out = command()
        .env("GUARDRAILS_CONFIG", "/no/such/guardrails.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/guardrails.toml"));
}

#[test]
fn production_profile_lists_every_problem_and_refuses_to_start() {
    let out = command()
        .env("GUARDRAILS__PROFILE", "production")
        .env("GUARDRAILS_JWT_SECRET", "weak")
        .env("GUARDRAILS__CLIENT_IP__TRUSTED_PROXIES", r#"["0.0.0.0/0"]"#)
        .env("GUARDRAILS__SERVER__SHUTDOWN_GRACE", "1h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client_ip.trusted_proxies[0]"), "{err}");
    assert!(err.contains("server.shutdown_grace"), "{err}");
    assert!(
        err.contains("auth.hs256_secret"),
        "the weak/unset JWT secret is refused: {err}"
    );
    assert!(err.contains("auth.issuer"), "{err}");
    assert!(!err.contains(JWT_SECRET), "{err}");
}

/// Runs `examples/mint_token.rs` (built beside the service) with `args`,
/// signing with the service's secret, and returns the token it prints.
fn mint(args: &[&str]) -> String {
    let bin =
        example_binary().with_file_name(format!("mint_token{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(bin)
        .args(args)
        .env("GUARDRAILS_JWT_SECRET", JWT_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn tokens_from_the_mint_tool_pass_the_levels_they_claim() {
    let svc = Running::start(command());
    let user = format!("Authorization: Bearer {}\r\n", mint(&["--sub", "user-1"]));
    let admin = format!(
        "Authorization: Bearer {}\r\n",
        mint(&["--sub", "admin-1", "--mfa", "--admin"])
    );
    let (status, _, body) = svc.get("/api/me", &user);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["subject"],
        "user-1"
    );
    assert_eq!(svc.get("/api/admin/users", &user).0, 403);
    assert_eq!(svc.get("/api/admin/users", &admin).0, 200);
    assert_eq!(svc.get("/api/users/user-1/profile", &admin).0, 200);
    // Without the secret the tool refuses, and says why.
    let bin =
        example_binary().with_file_name(format!("mint_token{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(bin)
        .env_remove("GUARDRAILS_JWT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GUARDRAILS_JWT_SECRET"));
}

fn token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn bearer(claims: serde_json::Value) -> String {
    format!("Authorization: Bearer {}\r\n", token(claims))
}

#[test]
fn auth_routes_enforce_their_levels() {
    let mut svc = Running::start(command());
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let now = jsonwebtoken::get_current_timestamp();
    let user = serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": exp, "role": "authenticated"});
    let admin_mfa = serde_json::json!({
        "sub": "admin-1", "aud": "authenticated", "exp": exp, "aal": "aal2",
        "amr": [{"method": "totp", "timestamp": now - 30}],
        "app_metadata": {"roles": ["admin"]},
    });

    let (status, head, body) = svc.get("/api/me", "");
    assert_eq!(status, 401);
    assert!(
        head.contains("www-authenticate: bearer realm=\"api\""),
        "{head}"
    );
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(body.contains("request_id"), "{body}");

    let (status, _, body) = svc.get("/api/nowhere", &bearer(user.clone()));
    assert_eq!(
        status, 404,
        "authenticated callers get a plain 404 problem: {body}"
    );

    let (status, _, body) = svc.get("/api/me", &bearer(user.clone()));
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["subject"], "user-1");
    assert_eq!(me["assurance_level"], "aal1");

    assert_eq!(
        svc.get("/api/users/user-1/profile", &bearer(user.clone()))
            .0,
        200
    );
    assert_eq!(
        svc.get("/api/users/user-2/profile", &bearer(user.clone()))
            .0,
        403
    );
    assert_eq!(
        svc.get("/api/users/user-2/profile", &bearer(admin_mfa.clone()))
            .0,
        200
    );
    assert_eq!(svc.get("/api/admin/users", &bearer(user.clone())).0, 403);
    assert_eq!(
        svc.get("/api/admin/users", &bearer(admin_mfa.clone())).0,
        200
    );
    assert_eq!(
        svc.send(
            "POST",
            "/api/integrations/gh/credentials",
            &bearer(user),
            ""
        )
        .0,
        403
    );
    assert_eq!(
        svc.send(
            "POST",
            "/api/integrations/gh/credentials",
            &bearer(admin_mfa),
            ""
        )
        .0,
        201
    );

    // The log knows the caller only by pseudonym.
    let (_, logs) = svc.terminate();
    assert!(
        !logs.contains("user-1") && !logs.contains("admin-1"),
        "{logs}"
    );
    let me = events(&logs, "api.request")
        .into_iter()
        .find(|l| l["http.route"] == "/api/me" && l["http.response.status_code"] == 200)
        .expect("an api.request line for /api/me");
    assert!(
        me["enduser.pseudo.id"]
            .as_str()
            .unwrap()
            .starts_with("usr_"),
        "{me}"
    );
}

#[test]
fn stripe_webhook_is_public_but_signature_verified() {
    use hmac::Mac;
    let svc = Running::start(command());
    let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;
    assert_eq!(svc.send("POST", "/api/webhooks/stripe", "", body).0, 400);

    let t = jsonwebtoken::get_current_timestamp();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let header = format!("Stripe-Signature: t={t},v1={sig}\r\n");
    let (status, _, reply) = svc.send("POST", "/api/webhooks/stripe", &header, body);
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply.contains(&format!("\"bytes\":{}", body.len())),
        "the handler got the intact body: {reply}"
    );
    assert_eq!(
        svc.send("POST", "/api/webhooks/stripe", &header, body).0,
        400,
        "replay refused"
    );
}

/// A copy of the example config whose `per_ip` allows `burst` requests.
fn config_with_ip_burst(burst: u32) -> PathBuf {
    config_with(burst, "")
}

/// [`config_with_ip_burst`] with `more` appended.
fn config_with(burst: u32, more: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/guardrails.toml"
    ))
    .unwrap();
    // One request a minute sustained: nothing refills while the test runs.
    let text = text
        .replacen("burst = 100", &format!("burst = {burst}"), 1)
        .replacen("rate = 600", "rate = 1", 1);
    assert!(text.contains(&format!("burst = {burst}")));
    let text = text + more;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "guardrails-rl-{}-{burst}-{n}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn per_ip_limit_applies_before_authentication() {
    let config = config_with_ip_burst(3);
    let svc = Running::start({
        let mut cmd = command();
        cmd.env("GUARDRAILS_CONFIG", &config);
        cmd
    });
    for remaining in [2, 1, 0] {
        let (status, head, _) = svc.get("/api/me", "");
        assert_eq!(status, 401, "unauthenticated, but counted");
        assert!(
            head.contains(&format!("ratelimit: \"per_ip\";r={remaining}")),
            "{head}"
        );
    }
    let (status, head, body) = svc.get("/api/me", "");
    assert_eq!(status, 429, "{body}");
    assert!(head.contains("retry-after: "), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    // Health checks are exempt.
    assert_eq!(svc.get("/api/health", "").0, 200);
    std::fs::remove_file(config).unwrap();
}

#[test]
fn two_replicas_on_redis_share_the_per_ip_quota() {
    let config = config_with_ip_burst(4);
    let prefix = format!("guardrails-test:example:{}", std::process::id());
    let replica = || {
        let mut cmd = command();
        cmd.env("GUARDRAILS_CONFIG", &config)
            .env("GUARDRAILS__RATE_LIMIT__BACKEND", "redis")
            .env("GUARDRAILS__REDIS__KEY_PREFIX", &prefix)
            .env("GUARDRAILS__RATE_LIMIT__ON_REDIS_ERROR", "deny")
            .env("GUARDRAILS__REDIS__TIMEOUT", "1s")
            .env(
                "REDIS_URL",
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            );
        Running::start(cmd)
    };
    let (a, b) = (replica(), replica());
    assert_eq!(a.get("/api/me", "").0, 401);
    assert_eq!(b.get("/api/me", "").0, 401);
    assert_eq!(a.get("/api/me", "").0, 401);
    let (status, head, _) = b.get("/api/me", "");
    assert_eq!(status, 401);
    assert!(
        head.contains("ratelimit: \"per_ip\";r=0"),
        "B saw A's requests: {head}"
    );
    assert_eq!(
        a.get("/api/me", "").0,
        429,
        "the fifth request, on either replica, is over"
    );
    std::fs::remove_file(config).unwrap();
}

#[test]
fn a_shadow_policy_reports_but_never_rejects() {
    let config = config_with(
        100,
        r#"
[[rate_limit.policies]]
name = "per_ip_trial"
key = "client_ip"
rate = 1
period = "1h"
burst = 2
routes = ["/api/"]
mode = "shadow"
"#,
    );
    let mut svc = Running::start({
        let mut cmd = command();
        cmd.env("GUARDRAILS_CONFIG", &config);
        cmd
    });
    for _ in 0..4 {
        let (status, head, body) = svc.get("/api/me", "");
        assert_eq!(status, 401, "never 429 from a shadow policy: {body}");
        assert!(head.contains("ratelimit: \"per_ip\""), "{head}");
        assert!(
            !head.contains("per_ip_trial"),
            "shadow headers are not sent: {head}"
        );
    }
    let (_, logs) = svc.terminate();
    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["event"] == "security.rate_limited")
        .collect();
    assert_eq!(
        events.len(),
        2,
        "requests 3 and 4 would have been refused: {logs}"
    );
    for e in &events {
        assert_eq!(e["policy"], "per_ip_trial", "{e}");
        assert_eq!(e["shadow"], true, "{e}");
        assert_eq!(e["key_type"], "ip", "{e}");
        assert!(e["request_id"].is_string(), "{e}");
        assert!(e["retry_after_s"].as_u64().is_some_and(|s| s > 0), "{e}");
    }
    std::fs::remove_file(config).unwrap();
}

#[test]
fn on_redis_a_request_costs_one_call_per_stage_and_no_raw_id_is_stored() {
    let redis = guardrails_testkit::redis::PrivateRedis::start();
    let svc = Running::start({
        let mut cmd = command();
        cmd.env("GUARDRAILS__RATE_LIMIT__BACKEND", "redis")
            .env("GUARDRAILS__RATE_LIMIT__ON_REDIS_ERROR", "deny")
            .env("GUARDRAILS__REDIS__TIMEOUT", "1s")
            .env("REDIS_URL", redis.url());
        cmd
    });
    let user = format!("Authorization: Bearer {}\r\n", mint(&["--sub", "user-1"]));
    // The first request loads the script.
    assert_eq!(svc.get("/api/me", &user).0, 200);
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..3 {
        let (status, head, body) = svc.get("/api/me", &user);
        assert_eq!(status, 200, "{body}");
        assert!(
            head.contains("\"per_ip\"") && head.contains("\"per_user\""),
            "{head}"
        );
    }
    assert_eq!(
        redis.calls("evalsha") + redis.calls("eval"),
        6,
        "per_ip before auth and per_user after it: two calls a request, no more"
    );
    let keys = redis.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        assert!(
            !key.contains("127.0.0.1") && !key.contains("user-1"),
            "{key}"
        );
    }
    // Without the key, the Redis backend refuses to start.
    let mut cmd = command();
    cmd.env_remove("GUARDRAILS_RATELIMIT_KEY")
        .env("GUARDRAILS__RATE_LIMIT__BACKEND", "redis")
        .env("REDIS_URL", redis.url())
        .stdout(Stdio::null());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rate_limit.redis_key_secret") && err.contains("GUARDRAILS_RATELIMIT_KEY"),
        "{err}"
    );
}

/// A JWKS endpoint on loopback that counts the fetches it answers.
fn jwks_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetches);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while reader.read_line(&mut head).is_ok_and(|n| n > 2) {}
            counter.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"keys":[]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, fetches)
}

#[test]
fn background_tasks_run_and_stop_on_sigterm() {
    use std::sync::atomic::Ordering;
    let (url, fetches) = jwks_endpoint();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/guardrails.toml"
    ))
    .unwrap();
    let text = text.replacen(
        "hs256_secret = { env = \"GUARDRAILS_JWT_SECRET\" }",
        &format!("jwks = {{ url = \"{url}\", ttl = \"2s\", min_refresh_interval = \"1s\" }}"),
        1,
    );
    assert!(text.contains(&url));
    let path = std::env::temp_dir().join(format!("guardrails-jwks-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let mut cmd = command();
    cmd.env("GUARDRAILS_CONFIG", &path);
    let mut svc = Running::start(cmd);

    // The refresh task fetches at startup and every ttl/2, with no request.
    let waited = std::time::Instant::now();
    while fetches.load(Ordering::SeqCst) < 2 && waited.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        fetches.load(Ordering::SeqCst) >= 2,
        "the JWKS refresh ran in the background"
    );

    let (status, rest) = svc.terminate();
    assert!(status.success(), "{status:?}: {rest}");
    let stopped: Vec<serde_json::Value> = log_lines(&rest)
        .filter(|l| l["message"] == "background task stopped")
        .collect();
    let tasks: Vec<&str> = stopped.iter().filter_map(|l| l["task"].as_str()).collect();
    assert_eq!(tasks, ["jwks_refresh", "alert_rules"], "{rest}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn an_in_flight_request_finishes_after_the_shutdown_signal() {
    let mut svc = Running::start(command());
    // A request whose body is still arriving when SIGTERM comes: with a
    // signature header, the webhook layer reads the whole body before it
    // answers. `Expect: 100-continue` makes the server say when it has
    // accepted the connection, read the head and begun reading the body.
    let mut stream = TcpStream::connect(&svc.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = r#"{"id":"evt_1","type":"ping"}"#;
    let (first, rest) = body.split_at(10);
    write!(
        stream,
        "POST /api/webhooks/stripe HTTP/1.1\r\nHost: test\r\nStripe-Signature: t={},v1={}\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n{first}",
        jsonwebtoken::get_current_timestamp(),
        "0".repeat(64),
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut interim = String::new();
    reader.read_line(&mut interim).unwrap();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    reader.read_line(&mut interim).unwrap();
    let pid = svc.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Wait for the service to say it is shutting down (its own log line,
    // not a sleep), then finish the request.
    let stdout = svc.stdout.as_mut().unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "exited before shutting down"
        );
        if line.contains("\"shutting down\"") {
            break;
        }
    }
    stream.write_all(rest.as_bytes()).unwrap();
    let mut raw = String::new();
    reader.read_to_string(&mut raw).unwrap();
    // Answered (400: the signature doesn't match), within the grace period.
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("application/problem+json"), "{raw}");
    let status = svc.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn step_up_challenge_when_configured() {
    let mut cmd = command();
    cmd.env("GUARDRAILS__AUTH__STEP_UP", "challenge");
    let svc = Running::start(cmd);
    let route = "/api/integrations/gh/credentials";
    let now = jsonwebtoken::get_current_timestamp();
    let user = serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": now + 600});
    let (status, head, body) = svc.send("POST", route, &bearer(user), "");
    assert_eq!(status, 401, "{body}");
    assert!(
        head.contains("error=\"insufficient_user_authentication\"")
            && head.contains("acr_values=\"aal2\""),
        "{head}"
    );
    assert!(!head.contains("max_age"), "{head}");
    // MFA an hour ago, the route wants it within `auth.mfa_max_age` (15m).
    let stale = serde_json::json!({
        "sub": "user-1", "aud": "authenticated", "exp": now + 600, "aal": "aal2",
        "amr": [{"method": "totp", "timestamp": now - 3600}],
    });
    let (status, head, _) = svc.send("POST", route, &bearer(stale), "");
    assert_eq!(status, 401);
    assert!(head.contains("max_age=900"), "{head}");
    let fresh = format!(
        "Authorization: Bearer {}\r\n",
        mint(&["--sub", "user-1", "--mfa"])
    );
    assert_eq!(svc.send("POST", route, &fresh, "").0, 201);
}

/// A `Stripe-Signature` header for `body`, signed now with the example's
/// webhook secret.
fn stripe_signature(body: &str) -> String {
    use hmac::Mac;
    let t = jsonwebtoken::get_current_timestamp();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!(
        "Stripe-Signature: t={t},v1={}\r\n",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[test]
fn a_webhook_accepted_by_one_replica_is_refused_by_the_other() {
    let prefix = format!("guardrails-test:webhook:{}", std::process::id());
    let replica = |redis_url: &str| {
        let mut cmd = command();
        cmd.env("GUARDRAILS__AUTH__WEBHOOK__REPLAY_STORE", "redis")
            .env("GUARDRAILS__REDIS__KEY_PREFIX", &prefix)
            .env("GUARDRAILS__REDIS__TIMEOUT", "1s")
            .env("REDIS_URL", redis_url);
        Running::start(cmd)
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let (a, b) = (replica(&url), replica(&url));
    let body = format!(
        r#"{{"id":"evt_{}","type":"invoice.paid"}}"#,
        std::process::id()
    );
    let header = stripe_signature(&body);
    let (status, _, reply) = a.send("POST", "/api/webhooks/stripe", &header, &body);
    assert_eq!(status, 200, "{reply}");
    let (status, _, reply) = b.send("POST", "/api/webhooks/stripe", &header, &body);
    assert_eq!(status, 400, "the other replica refuses the replay: {reply}");
    assert!(reply.contains("verification failed"), "{reply}");
    // A new delivery goes through on either.
    let other = format!(
        r#"{{"id":"evt_{}b","type":"invoice.paid"}}"#,
        std::process::id()
    );
    assert_eq!(
        b.send(
            "POST",
            "/api/webhooks/stripe",
            &stripe_signature(&other),
            &other
        )
        .0,
        200
    );

    // Redis unreachable: refused with 503 and Retry-After (the default
    // `redis_failure = "refuse"`), and logged.
    let mut down = replica("redis://127.0.0.1:1");
    let fresh = format!(
        r#"{{"id":"evt_{}c","type":"invoice.paid"}}"#,
        std::process::id()
    );
    let (status, head, _) = down.send(
        "POST",
        "/api/webhooks/stripe",
        &stripe_signature(&fresh),
        &fresh,
    );
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 30"), "{head}");
    let (_, logs) = down.terminate();
    assert!(
        logs.lines()
            .any(|l| l.contains("integration.backend_failed")
                && l.contains("webhook_replay")
                && l.contains("\"fallback\":\"refuse\"")),
        "{logs}"
    );
}

/// The example with its debug routes (development only), and a user's
/// bearer header.
fn debug_service(extra_env: &[(&str, &str)]) -> (Running, String) {
    let mut cmd = command();
    cmd.env("GUARDRAILS__SERVER__DEBUG_ROUTES", "true");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let user = bearer(serde_json::json!({
        "sub": "user-1", "aud": "authenticated", "exp": exp, "role": "authenticated",
    }));
    (Running::start(cmd), user)
}

#[test]
fn a_panicking_route_answers_500_problem_and_the_next_request_is_served() {
    let (mut svc, user) = debug_service(&[]);
    let (status, head, body) = svc.get("/api/debug/panic", &user);
    assert_eq!(status, 500);
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], 500);
    assert!(json["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        !body.contains("4111") && !body.contains("panicked"),
        "{body}"
    );
    // The service keeps serving.
    assert_eq!(svc.get("/api/me", &user).0, 200);
    let (_, logs) = svc.terminate();
    let panic = events(&logs, "error.panic")
        .into_iter()
        .next()
        .expect("the panic is logged");
    assert_eq!(panic["request_id"], json["request_id"]);
    assert!(
        panic["message"].as_str().unwrap().contains("[card]"),
        "{panic}"
    );
    assert!(!logs.contains("4111"), "the card number reached the logs");
    // Nor stderr: the boundary's panic hook keeps caught panics off it.
    let mut err = String::new();
    svc.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("4111") && !err.contains("panicked"), "{err}");
}

#[test]
fn a_2_mib_body_gets_413_before_the_handler_runs() {
    let (mut svc, user) = debug_service(&[]);
    // Only the head, announcing 2 MiB and waiting for `100 Continue`: the
    // answer comes without the body ever being asked for.
    let mut stream = TcpStream::connect(&svc.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/debug/echo HTTP/1.1\r\nHost: test\r\n{user}Content-Type: application/octet-stream\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        2 * 1024 * 1024
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(!raw.contains("100 Continue"), "{raw}");
    assert!(raw.contains("application/problem+json"), "{raw}");
    assert!(raw.contains("\"max_bytes\":1048576"), "{raw}");
    // A body within the limit reaches the handler.
    let (status, _, body) = svc.send("POST", "/api/debug/echo", &user, &"x".repeat(1000));
    assert_eq!((status, body.as_str()), (200, "{\"bytes\":1000}"));
    let (_, logs) = svc.terminate();
    let reads: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("debug echo read the body"))
        .collect();
    assert_eq!(
        reads.len(),
        1,
        "only the small body reached the handler: {reads:?}"
    );
    assert!(logs.contains("\"event\":\"api.body_too_large\""));
}

#[test]
fn with_max_in_flight_2_the_third_concurrent_slow_request_gets_503() {
    let (mut svc, user) = debug_service(&[("GUARDRAILS__LOAD_SHED__MAX_IN_FLIGHT", "2")]);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let addr = svc.addr.clone();
            let user = user.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                write!(
                    stream,
                    "GET /api/debug/slow?ms=3000 HTTP/1.1\r\nHost: test\r\n{user}Connection: close\r\n\r\n"
                )
                .unwrap();
                let mut raw = String::new();
                stream.read_to_string(&mut raw).unwrap();
                raw
            })
        })
        .collect();
    // Once both handlers have started (their own log lines say so), a
    // third request is shed at once; the probe is exempt and answers.
    let stdout = svc.stdout.as_mut().unwrap();
    let mut started = 0;
    let mut line = String::new();
    while started < 2 {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "exited");
        if line.contains("\"debug slow started\"") {
            started += 1;
        }
    }
    assert_eq!(svc.get("/api/health", "").0, 200, "the probe is never shed");
    let (status, head, body) = svc.get("/api/me", &user);
    assert_eq!(status, 503, "{head}{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(body.contains("\"status\":503"), "{body}");
    for handle in slow {
        let raw = handle.join().unwrap();
        assert!(
            raw.starts_with("HTTP/1.1 200"),
            "the slow ones finish: {raw}"
        );
    }
    // Room again.
    assert_eq!(svc.get("/api/me", &user).0, 200);
    let (_, logs) = svc.terminate();
    assert!(logs.contains("\"event\":\"api.load_shed\""));
}

#[test]
fn a_request_past_its_deadline_gets_504_problem() {
    let (svc, user) = debug_service(&[("GUARDRAILS__TIMEOUT__REQUEST", "500ms")]);
    let (status, head, body) = svc.get("/api/debug/slow?ms=5000", &user);
    assert_eq!(status, 504);
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(body.contains("deadline-exceeded"), "{body}");
    assert_eq!(svc.get("/api/debug/slow?ms=10", &user).0, 200);
}

#[test]
fn debug_routes_are_refused_in_production() {
    let mut cmd = command();
    cmd.env("GUARDRAILS__PROFILE", "production")
        .env("GUARDRAILS__SERVER__DEBUG_ROUTES", "true");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.debug_routes"), "{err}");
}

#[test]
fn a_body_over_axums_2_mib_default_passes_where_the_body_limit_allows_it() {
    let (svc, user) = debug_service(&[("GUARDRAILS__BODY_LIMIT__MAX_BYTES", "4194304")]);
    let body = "x".repeat(3 * 1024 * 1024);
    let (status, _, answer) = svc.send("POST", "/api/debug/echo", &user, &body);
    assert_eq!((status, answer.as_str()), (200, "{\"bytes\":3145728}"));
}

/// A local upstream answering each connection by the next word of
/// `script` (the last repeats): `ok` (200 JSON), or a status code. Returns
/// its URL and the request heads it saw.
fn scripted_upstream(
    script: &'static [&'static str],
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/weather", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heads = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            heads.lock().unwrap().push(head);
            let word = script[i.min(script.len() - 1)];
            if word == "slow" {
                // Never answers in time; the connection is dropped later.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(10));
                    drop(stream);
                });
                continue;
            }
            let (status, body) = match word {
                "ok" => ("200 OK", r#"{"temp_c":21}"#),
                "not-json" => ("200 OK", "<html>maintenance</html>"),
                code => (code, r#"{"error":"upstream secret detail"}"#),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn the_weather_route_retries_a_503_and_answers_the_upstreams_json() {
    let (url, seen) = scripted_upstream(&["503 Service Unavailable", "ok"]);
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url);
    let mut svc = Running::start(cmd);
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let user = bearer(serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": exp}));
    // Unauthenticated: refused before any call.
    assert_eq!(svc.get("/api/integrations/weather", "").0, 401);
    // The caller's W3C trace context goes on to the upstream.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, _, body) = svc.get(
        "/api/integrations/weather?city=x",
        &format!("{user}Cookie: c=1\r\ntraceparent: 00-{trace}-00f067aa0ba902b7-01\r\n"),
    );
    assert_eq!((status, body.as_str()), (200, r#"{"temp_c":21}"#));
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "one 503, then the retry");
    let (_, logs) = svc.terminate();
    let line = events(&logs, "api.request")
        .into_iter()
        .find(|l| {
            l["http.route"] == "/api/integrations/weather" && l["http.response.status_code"] == 200
        })
        .expect("the weather request's line");
    assert_eq!(line["trace_id"], trace, "{line}");
    let ours = line["span_id"].as_str().unwrap();
    for head in heads.iter() {
        let sent = head
            .lines()
            .find_map(|l| l.strip_prefix("traceparent: "))
            .unwrap_or_else(|| panic!("no traceparent sent: {head}"));
        let parts: Vec<&str> = sent.split('-').collect();
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", trace, "01"),
            "{sent}"
        );
        // This request's span is the upstream's parent.
        assert_eq!(parts[2], ours);
    }
    for head in heads.iter() {
        let lower = head.to_ascii_lowercase();
        assert!(
            head.starts_with("GET /weather HTTP/1.1"),
            "no client query forwarded: {head}"
        );
        assert!(
            !lower.contains("authorization") && !lower.contains("cookie"),
            "{head}"
        );
    }
}

#[test]
fn an_upstream_429_is_a_503_with_the_upstreams_retry_after() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/weather", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url);
    let svc = Running::start(cmd);
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let user = bearer(serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": exp}));
    let (status, head, _) = svc.get("/api/integrations/weather", &user);
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 7"), "{head}");
}

#[test]
fn an_upstream_404_or_an_answer_not_json_is_a_502_unless_client_errors_are_forwarded() {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let user = bearer(serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": exp}));
    let (url, seen) = scripted_upstream(&["404 Not Found"]);
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url);
    let mut svc = Running::start(cmd);
    let (status, head, body) = svc.get("/api/integrations/weather", &user);
    assert_eq!(status, 502, "{body}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(!body.contains("secret detail"), "{body}");
    assert_eq!(seen.lock().unwrap().len(), 1, "a 404 is not retried");
    let (_, logs) = svc.terminate();
    let failed = events(&logs, "integration.backend_failed");
    assert_eq!(failed.len(), 1, "{logs}");
    assert_eq!(failed[0]["backend"], "weather");
    assert_eq!(failed[0]["reason"], "status");
    assert_eq!(failed[0]["status"], 404);

    // A 200 whose body is not JSON: the upstream failed all the same.
    let (url_html, _) = scripted_upstream(&["not-json"]);
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url_html);
    let mut svc = Running::start(cmd);
    let (status, _, body) = svc.get("/api/integrations/weather", &user);
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("maintenance"), "{body}");
    let (_, logs) = svc.terminate();
    let failed = events(&logs, "integration.backend_failed");
    assert_eq!(failed.len(), 1, "{logs}");
    assert_eq!(failed[0]["reason"], "error");

    // Forwarded: the caller gets the 404, as a problem, not the upstream's body.
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url)
        .env("GUARDRAILS__UPSTREAMS__WEATHER__CLIENT_ERRORS", "forward");
    let mut svc = Running::start(cmd);
    let (status, head, body) = svc.get("/api/integrations/weather", &user);
    assert_eq!(status, 404, "{body}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(!body.contains("secret detail"), "{body}");
    let (_, logs) = svc.terminate();
    assert!(!logs.contains("integration.backend_failed"), "{logs}");
}

#[test]
fn the_weather_route_maps_upstream_failures_and_opens_its_circuit() {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let user = bearer(serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": exp}));
    // Nothing listening: 502, quickly, and no address in the answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cmd = command();
    cmd.env(
        "GUARDRAILS__UPSTREAMS__WEATHER__URL",
        format!("http://127.0.0.1:{port}/weather"),
    );
    let svc = Running::start(cmd);
    let (status, head, body) = svc.get("/api/integrations/weather", &user);
    assert_eq!(status, 502, "{body}");
    assert!(head.contains("application/problem+json"));
    assert!(
        !body.contains("127.0.0.1") && !body.contains(&port.to_string()),
        "{body}"
    );
    drop(svc);

    // Failing (500, not retried): after min_calls (10) the circuit opens
    // and calls stop reaching the upstream.
    let (url, seen) = scripted_upstream(&["500 Internal Server Error"]);
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url);
    let svc = Running::start(cmd);
    for _ in 0..10 {
        let (status, _, body) = svc.get("/api/integrations/weather", &user);
        assert_eq!(status, 502);
        assert!(!body.contains("secret detail"), "{body}");
    }
    let (status, head, _) = svc.get("/api/integrations/weather", &user);
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 30"), "{head}");
    assert_eq!(
        seen.lock().unwrap().len(),
        10,
        "the open circuit made no call"
    );
    // The dashboard's breaker panel: 2 is open.
    let (_, _, text) = svc.scrape();
    assert!(
        text.contains("guardrails_circuit_state{upstream=\"weather\"} 2"),
        "{text}"
    );
}

#[test]
fn the_resilient_client_template_answers_an_upstreams_json_or_a_problem() {
    let bin = example_binary()
        .with_file_name(format!("resilient_client{}", std::env::consts::EXE_SUFFIX));
    let (url, seen) = scripted_upstream(&["503 Service Unavailable", "ok"]);
    let out = Command::new(&bin).arg(&url).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("200 OK\n{\"temp_c\":21}"), "{stdout}");
    assert_eq!(seen.lock().unwrap().len(), 2, "retried once");
    // An upstream failure status: the 502 problem, not the upstream's body.
    let (failing, _) = scripted_upstream(&["500 Internal Server Error"]);
    let out = Command::new(&bin).arg(&failing).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("502"), "{stdout}");
    assert!(!stdout.contains("secret detail"), "{stdout}");
    // Nothing listening: the 502 problem, no address in it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = Command::new(&bin)
        .arg(format!("http://127.0.0.1:{port}/x"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.starts_with("502"), "{stdout}");
    assert!(!stdout.contains(&port.to_string()), "{stdout}");
}

#[test]
fn a_slow_upstream_is_a_504_at_the_upstreams_deadline() {
    let (url, seen) = scripted_upstream(&["slow"]);
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url)
        .env("GUARDRAILS__UPSTREAMS__WEATHER__TIMEOUT", "200ms")
        .env("GUARDRAILS__UPSTREAMS__WEATHER__DEADLINE", "1s");
    let mut svc = Running::start(cmd);
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let user = bearer(serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": exp}));
    let start = std::time::Instant::now();
    let (status, head, body) = svc.get("/api/integrations/weather", &user);
    let took = start.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(
        took < Duration::from_secs(3),
        "answered at the deadline, not the upstream's pace: {took:?}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "each attempt timed out and was retried"
    );
    let (_, logs) = svc.terminate();
    assert!(
        logs.contains("\"event\":\"integration.timeout\""),
        "timeouts are logged"
    );
}

#[test]
fn an_open_circuit_recovers_when_its_probes_succeed() {
    static SCRIPT: [&str; 11] = [
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "500 Internal Server Error",
        "ok",
    ];
    let (url, seen) = scripted_upstream(&SCRIPT);
    let mut cmd = command();
    cmd.env("GUARDRAILS__UPSTREAMS__WEATHER__URL", &url)
        .env("GUARDRAILS__UPSTREAMS__WEATHER__CIRCUIT__OPEN_FOR", "500ms");
    let mut svc = Running::start(cmd);
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let user = bearer(serde_json::json!({"sub": "user-1", "aud": "authenticated", "exp": exp}));
    for _ in 0..10 {
        assert_eq!(svc.get("/api/integrations/weather", &user).0, 502);
    }
    assert_eq!(svc.get("/api/integrations/weather", &user).0, 503, "open");
    std::thread::sleep(Duration::from_millis(600));
    // Half-open: three probes succeed, then it is closed again.
    for _ in 0..4 {
        let (status, _, body) = svc.get("/api/integrations/weather", &user);
        assert_eq!((status, body.as_str()), (200, r#"{"temp_c":21}"#));
    }
    assert_eq!(seen.lock().unwrap().len(), 14);
    let (_, logs) = svc.terminate();
    for event in [
        "integration.circuit_opened",
        "integration.circuit_half_open",
        "integration.circuit_closed",
    ] {
        assert!(
            logs.contains(&format!("\"event\":\"{event}\"")),
            "{event} logged"
        );
    }
}

/// A user the example's 50 % rollout of `ai_recommendations` is on for
/// (`true`) or off for, by the same bucket the service computes.
fn rollout_user(on: bool) -> String {
    (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| (guardrails::flag_layer::bucket("ai_recommendations", u) <= 50) == on)
        .unwrap()
}

fn user_token(sub: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    bearer(serde_json::json!({"sub": sub, "aud": "authenticated", "exp": exp}))
}

fn admin_mfa_token() -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let now = jsonwebtoken::get_current_timestamp();
    bearer(serde_json::json!({
        "sub": "admin-1", "aud": "authenticated", "exp": exp, "aal": "aal2",
        "amr": [{"method": "totp", "timestamp": now - 30}],
        "app_metadata": {"roles": ["admin"]},
    }))
}

#[test]
fn recommendations_are_on_for_half_the_users_and_hidden_from_the_rest() {
    let svc = Running::start(command());
    let (on, off) = (
        user_token(&rollout_user(true)),
        user_token(&rollout_user(false)),
    );
    assert_eq!(svc.get("/api/recommendations", "").0, 401);
    let (status, _, body) = svc.get("/api/recommendations", &on);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("recommendations"), "{body}");
    // Off: the very 404 of a path no route matches (the feature stays hidden).
    let (status, head, hidden) = svc.get("/api/recommendations", &off);
    assert_eq!(status, 404);
    assert!(head.contains("application/problem+json"), "{head}");
    let (_, _, unknown) = svc.get("/api/no-such-route", &off);
    let strip = |body: &str| {
        let mut json: serde_json::Value = serde_json::from_str(body).unwrap();
        json.as_object_mut().unwrap().remove("request_id");
        json
    };
    assert_eq!(strip(&hidden), strip(&unknown));
    // The same user always gets the same answer.
    for _ in 0..5 {
        assert_eq!(svc.get("/api/recommendations", &on).0, 200);
        assert_eq!(svc.get("/api/recommendations", &off).0, 404);
    }
}

#[test]
fn the_environment_turns_a_flag_off_and_accepts_nothing_else() {
    let mut cmd = command();
    cmd.env("GUARDRAILS_FLAG_AI_RECOMMENDATIONS", "off");
    let mut svc = Running::start(cmd);
    let on = user_token(&rollout_user(true));
    assert_eq!(svc.get("/api/recommendations", &on).0, 404);
    // Not even an admin's runtime change turns it back on.
    let (status, _, body) = svc.send(
        "PUT",
        "/api/admin/flags/ai_recommendations",
        &format!("{}Content-Type: application/json\r\n", admin_mfa_token()),
        r#"{"enabled": true, "rollout_percentage": 100}"#,
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("\"switched_off_by_environment\":true"),
        "{body}"
    );
    assert_eq!(svc.get("/api/recommendations", &on).0, 404);
    let (_, logs) = svc.terminate();
    let killed = events(&logs, "flag.kill_switch_activated");
    assert_eq!(killed.len(), 1, "{logs}");
    assert_eq!(killed[0]["by"], "environment");

    for (value, variable) in [
        ("on", "GUARDRAILS_FLAG_AI_RECOMMENDATIONS"),
        ("off", "GUARDRAILS_FLAG_AI_RECOMENDATIONS"),
    ] {
        let mut cmd = command();
        cmd.env(variable, value);
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{value} {variable}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(variable), "{err}");
    }
}

#[test]
fn admins_change_flags_at_runtime_with_partial_updates() {
    let mut svc = Running::start(command());
    let admin = format!("{}Content-Type: application/json\r\n", admin_mfa_token());
    let put = |path: &str, who: &str, body: &str| svc.send("PUT", path, who, body);
    let on = user_token(&rollout_user(true));
    let off = user_token(&rollout_user(false));
    let flag = "/api/admin/flags/ai_recommendations";

    // Only admins with MFA.
    assert_eq!(put(flag, &on, r#"{"enabled": false}"#).0, 403);
    assert_eq!(put(flag, "", r#"{"enabled": false}"#).0, 401);

    // The kill switch: everyone off at once; the answer is the whole state.
    let (status, _, body) = put(flag, &admin, r#"{"enabled": false}"#);
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["enabled"], false);
    assert_eq!(state["rollout_percentage"], 50, "untouched fields kept");
    assert_eq!(state["name"], "ai_recommendations");
    assert_eq!(state["switched_off_by_environment"], false);
    assert_eq!(svc.get("/api/recommendations", &on).0, 404);

    // Back on, for everyone.
    let (status, _, body) = put(
        flag,
        &admin,
        r#"{"enabled": true, "rollout_percentage": 100}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(svc.get("/api/recommendations", &off).0, 200);

    // Refusals: an unknown flag, and each wrong field named.
    let (status, head, _) = put(
        "/api/admin/flags/ai_nothing",
        &admin,
        r#"{"enabled": false}"#,
    );
    assert_eq!(status, 404);
    assert!(head.contains("application/problem+json"), "{head}");
    let (status, head, body) = put(
        flag,
        &admin,
        r#"{"rollout_percentage": 150, "enabled": "yes", "colour": 1}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(head.contains("application/problem+json"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["colour", "enabled", "rollout_percentage"]);
    let (status, _, body) = put(
        flag,
        &admin,
        r#"{"target_users": ["u1"], "deny_users": ["u1"]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"field\":\"target_users\""), "{body}");
    assert_eq!(put(flag, &admin, "not json").0, 400);
    // Nothing refused was applied.
    assert_eq!(svc.get("/api/recommendations", &off).0, 200);

    let (_, logs) = svc.terminate();
    let changed = events(&logs, "flag.changed");
    assert_eq!(changed.len(), 2, "{logs}");
    assert_eq!(changed[0]["new_enabled"], false);
    assert_eq!(changed[1]["new_rollout_percentage"], 100);
    let by = changed[0]["by"].as_str().unwrap();
    assert!(by.starts_with("usr_"), "a pseudonym: {by}");
    assert_eq!(events(&logs, "flag.kill_switch_activated").len(), 1);
    assert!(!logs.contains("admin-1"), "no raw user id logged");
}

#[test]
fn two_replicas_on_redis_share_a_kill_switch_over_http() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("guardrails-test:{}:{nanos}:replicas", std::process::id());
    let replica = || {
        let mut cmd = command();
        cmd.env("GUARDRAILS__FLAGS__SOURCE", "redis")
            .env("REDIS_URL", &url)
            .env("GUARDRAILS__REDIS__KEY_PREFIX", &prefix)
            .env("GUARDRAILS__REDIS__TIMEOUT", "1s");
        Running::start(cmd)
    };
    let (a, b) = (replica(), replica());
    let on = user_token(&rollout_user(true));
    assert_eq!(b.get("/api/recommendations", &on).0, 200);
    let admin = format!("{}Content-Type: application/json\r\n", admin_mfa_token());
    let start = std::time::Instant::now();
    let (status, _, body) = a.send(
        "PUT",
        "/api/admin/flags/ai_recommendations",
        &admin,
        r#"{"enabled": false}"#,
    );
    assert_eq!(status, 200, "Redis at {url}: {body}");
    while b.get("/api/recommendations", &on).0 != 404 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the kill switch did not reach the other replica in 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "kill switch through replica a seen on replica b over HTTP after {:?}",
        start.elapsed()
    );
}

#[test]
fn replicas_keep_serving_their_flags_while_redis_is_down_and_follow_it_again_after() {
    let mut server = guardrails_testkit::redis::PrivateRedis::start();
    let replica = || {
        let mut cmd = command();
        cmd.env("GUARDRAILS__FLAGS__SOURCE", "redis")
            .env("GUARDRAILS__FLAGS__RELOAD", "200ms")
            .env("REDIS_URL", server.url())
            .env("GUARDRAILS__REDIS__TIMEOUT", "1s");
        Running::start(cmd)
    };
    let (a, mut b) = (replica(), replica());
    let on = user_token(&rollout_user(true));
    let admin = format!("{}Content-Type: application/json\r\n", admin_mfa_token());
    let put = |svc: &Running, body: &str| {
        svc.send("PUT", "/api/admin/flags/ai_recommendations", &admin, body)
    };
    assert_eq!(b.get("/api/recommendations", &on).0, 200);

    // Redis down: both keep serving the last good set; a change is
    // refused (503 + Retry-After) rather than applied to one replica.
    server.stop();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.get("/api/recommendations", &on).0, 200);
    assert_eq!(b.get("/api/recommendations", &on).0, 200);
    let (status, head, _) = put(&a, r#"{"enabled": false}"#);
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 1"), "{head}");

    // Back: the kill switch written through a reaches b again.
    server.restart();
    let start = std::time::Instant::now();
    loop {
        let (status, _, _) = put(&a, r#"{"enabled": false}"#);
        if status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Redis back, writes still refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    while b.get("/api/recommendations", &on).0 != 404 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "b did not follow Redis again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, logs) = b.terminate();
    let failed = events(&logs, "integration.backend_failed");
    assert!(failed.iter().any(|l| l["purpose"] == "flags"), "{logs}");
    let recovered = events(&logs, "integration.backend_recovered");
    assert!(recovered.iter().any(|l| l["purpose"] == "flags"), "{logs}");
}

#[test]
fn readiness_is_public_and_the_health_report_is_for_admins() {
    let svc = Running::start(command());
    let (status, head, body) = svc.get("/api/ready", "");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"pass"}"#));
    assert!(
        head.contains("content-type: application/health+json"),
        "{head}"
    );
    assert_eq!(svc.get("/api/monitoring/health", "").0, 401);
    assert_eq!(
        svc.get("/api/monitoring/health", &user_token("user-1")).0,
        403
    );
    // The request figures are computed at most once a second (the public
    // probe above asked already).
    std::thread::sleep(Duration::from_millis(1100));
    let (status, head, body) = svc.get("/api/monitoring/health", &admin_mfa_token());
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("content-type: application/health+json"),
        "{head}"
    );
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "pass", "{report}");
    for component in [
        "rate_limit",
        "circuit:weather",
        "flags",
        "requests",
        "logging",
        "alerts",
    ] {
        assert_eq!(
            report["checks"][component][0]["status"], "pass",
            "{component}: {report}"
        );
    }
    // The requests seen so far, 4xx apart from errors.
    let minute = &report["checks"]["requests"][0]["details"]["1m"];
    assert!(minute["requests"].as_u64().unwrap() >= 3, "{minute}");
    assert!(minute["client_errors"].as_u64().unwrap() >= 2, "{minute}");
    assert_eq!(minute["server_errors"], 0);
}

#[test]
fn readiness_is_503_while_a_component_fails() {
    // Keys from a JWKS endpoint nothing listens on: no keys, `jwks` fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = std::fs::read_to_string("examples/guardrails.toml")
        .unwrap()
        .replace(
            "hs256_secret = { env = \"GUARDRAILS_JWT_SECRET\" }",
            &format!("jwks = {{ url = \"http://127.0.0.1:{port}/jwks.json\" }}"),
        );
    let path = std::env::temp_dir().join(format!("ready-{}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let mut cmd = command();
    cmd.env("GUARDRAILS_CONFIG", &path);
    let svc = Running::start(cmd);
    let (status, head, body) = svc.get("/api/ready", "");
    assert_eq!((status, body.as_str()), (503, r#"{"status":"fail"}"#));
    assert!(
        head.contains("content-type: application/health+json"),
        "{head}"
    );
    assert_eq!(svc.get("/api/health", "").0, 200, "alive all the same");
    drop(svc);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn the_database_pool_joins_the_report_and_readiness() {
    // A real PostgreSQL (scripts/test.sh starts one if none runs).
    let url = guardrails_testkit::database_url();
    let mut cmd = command();
    cmd.env("DATABASE_URL", &url);
    let svc = Running::start(cmd);
    let admin = admin_mfa_token();
    let database = wait_for(|| {
        let (status, _, body) = svc.get("/api/monitoring/health", &admin);
        if status == 429 {
            return None; // asked too often: the admin's rate limit
        }
        assert_eq!(status, 200, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        let database = report["checks"]["database"][0].clone();
        (database["status"] == "pass").then_some(database)
    });
    assert_eq!(database["details"]["max"], 10, "{database}");
    assert!(
        database["details"]["acquire_wait_ms"].is_number(),
        "{database}"
    );
    assert_eq!(svc.get("/api/ready", "").0, 200);
    let (_, _, text) = svc.scrape();
    assert!(
        text.contains("guardrails_db_pool_max_connections{pool=\"database\"} 10"),
        "{text}"
    );
    drop(svc);

    // A database nobody answers for: readiness fails, the service lives,
    // and neither the report nor the log holds the URL's password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cmd = command();
    cmd.env(
        "DATABASE_URL",
        format!("postgres://app:pg-secret-pw@127.0.0.1:{port}/app"),
    );
    let mut svc = Running::start(cmd);
    let body = wait_for(|| {
        let (status, _, body) = svc.get("/api/ready", "");
        (status == 503).then_some(body)
    });
    assert_eq!(body, r#"{"status":"fail"}"#);
    assert_eq!(svc.get("/api/health", "").0, 200, "alive all the same");
    let (_, _, report) = svc.get("/api/monitoring/health", &admin);
    assert!(
        report.contains("connect failed") || report.contains("no connection"),
        "{report}"
    );
    assert!(!report.contains("pg-secret-pw"), "{report}");
    let (_, log) = svc.terminate();
    assert!(!log.contains("pg-secret-pw"), "{log}");
}

#[test]
fn a_burst_of_failed_tokens_fires_the_security_alert() {
    let mut cmd = command();
    cmd.env("GUARDRAILS__MONITOR__ALERTS__EVALUATE_EVERY", "1s")
        .env(
            "GUARDRAILS__MONITOR__ALERTS__AUTH_FAILURES_PER_MINUTE_P0",
            "20",
        );
    let mut svc = Running::start(cmd);
    let forged = |i: u32| {
        format!("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged{i}\r\n")
    };
    for i in 0..30 {
        assert_eq!(svc.get("/api/me", &forged(i)).0, 401);
    }
    // Within a second or two: the alert in the admins' report.
    let admin = admin_mfa_token();
    let firing = wait_for(|| {
        let (status, _, body) = svc.get("/api/monitoring/health", &admin);
        if status == 429 {
            return None;
        }
        assert_eq!(status, 200, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        let alerts = report["checks"]["alerts"][0].clone();
        let fired = alerts["details"]["firing"]
            .as_array()
            .is_some_and(|a| a.iter().any(|f| f["rule"] == "security_auth_failures"));
        fired.then_some(alerts)
    });
    assert_eq!(firing["status"], "warn", "{firing}");
    // Prometheus reads the same count.
    let (_, _, text) = svc.scrape();
    assert!(
        text.contains("guardrails_events_total{event=\"security.auth_failed\"} 30"),
        "{text}"
    );
    let (_, logs) = svc.terminate();
    let fired: Vec<_> = events(&logs, "alert.p0")
        .into_iter()
        .filter(|l| l["rule"] == "security_auth_failures")
        .collect();
    assert_eq!(fired.len(), 1, "fired once: {fired:?}");
    assert_eq!(fired[0]["state"], "fired");
    assert_eq!(fired[0]["level"], "ERROR");
    assert_eq!(fired[0]["value"], 30.0);
    assert_eq!(fired[0]["threshold"], 20.0);
}

#[cfg(feature = "otel")]
#[test]
fn request_spans_go_to_an_opentelemetry_collector_in_the_callers_trace() {
    // The example built with every feature, `otel` included.
    let (url, bodies) = guardrails_testkit::otlp::collector();
    let mut cmd = command();
    cmd.env("GUARDRAILS__TRACE__OTLP_ENDPOINT", &url);
    let mut svc = Running::start(cmd);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, _, _) = svc.get(
        "/api/me",
        &format!(
            "{}traceparent: 00-{trace}-00f067aa0ba902b7-01\r\n",
            user_token("user-1")
        ),
    );
    assert_eq!(status, 200);
    // SIGTERM: the service sends what is queued before it exits.
    let (status, logs) = svc.terminate();
    assert!(status.success(), "{logs}");
    let line = events(&logs, "api.request")
        .into_iter()
        .find(|l| l["http.route"] == "/api/me")
        .expect("the request's line");
    assert_eq!(line["trace_id"], trace);
    let spans = guardrails_testkit::otlp::spans(&bodies.lock().unwrap());
    let exported = spans
        .iter()
        .find(|(t, ..)| t == trace)
        .unwrap_or_else(|| panic!("no span of the caller's trace: {spans:?}"));
    assert_eq!(
        exported.1,
        line["span_id"].as_str().unwrap(),
        "the logged span id"
    );
    assert_eq!(
        exported.2, "00f067aa0ba902b7",
        "the caller's span is the parent"
    );
    assert_eq!(exported.3, "api.request");
}

#[cfg(feature = "otel")]
#[test]
fn an_otlp_endpoint_that_is_no_http_url_refuses_to_start() {
    let out = command()
        .env("GUARDRAILS__TRACE__OTLP_ENDPOINT", "collector:4318")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trace.otlp_endpoint"), "{err}");
}

/// Asks `f` every 100 ms until it gives a value (at most 10 s).
fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_are_served_on_their_own_listener_with_route_templates() {
    let svc = Running::start(command());
    let user = user_token("user-1");
    assert_eq!(svc.get("/api/users/user-1/profile", &user).0, 200);
    for i in 0..20 {
        assert_eq!(svc.get(&format!("/api/no/such/{i}"), &user).0, 404);
    }
    // Not on the public port.
    assert_eq!(svc.get("/metrics", &user).0, 404);
    let (status, head, text) = svc.scrape();
    assert_eq!(status, 200, "{text}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("le=\"+Inf\""), "{text}");
    let routes: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split("http_route=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(
        routes.contains("/api/users/{user_id}/profile"),
        "{routes:?}"
    );
    assert!(routes.contains("unmatched"), "{routes:?}");
    assert!(
        routes.iter().all(|r| !r.contains("/no/such")),
        "never a raw path: {routes:?}"
    );
    // The guardrails' own metrics go to the same recorder.
    assert!(
        text.contains("guardrails_ratelimit_decisions_total"),
        "{text}"
    );
    // Prometheus's own checker accepts the exposition (it asks, among
    // other things, for a `# HELP` on every metric).
    let out = guardrails_testkit::promtool::run(&["check", "metrics"], &text);
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
