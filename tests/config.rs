//! Loading, overriding and validating `GuardrailsConfig`.

use std::time::Duration;

use guardrails::{ConfigError, GuardrailsConfig, Profile};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn empty_file_gives_fail_secure_defaults() {
    let c = GuardrailsConfig::from_toml_str("").unwrap();
    assert_eq!(c.profile, Profile::Production);
    assert!(
        c.client_ip.trusted_proxy_list().is_empty(),
        "no proxy is trusted by default"
    );
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(10));
    assert!(c.request_id.trust_incoming);
    assert!(c.auth.public.is_empty(), "no route is public by default");
    // Production refuses to run without knowing how to authenticate.
    let err = c.validate_for(Profile::Production).unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "rate_limit.policies",
            "auth",
            "auth.issuer",
            "auth.audience"
        ]
    );
}

#[test]
fn production_auth_checks_weak_secrets_wildcards_and_missing_claims() {
    let dir = std::env::temp_dir();
    let weak = dir.join(format!("guardrails-weak-secret-{}", std::process::id()));
    std::fs::write(&weak, "short\n").unwrap();
    let c = GuardrailsConfig::from_toml_str(&format!(
        r#"
        [auth]
        hs256_secret = {{ file = "{}" }}
        public = ["/*", "/api/health"]
        "#,
        weak.display()
    ))
    .unwrap();
    let text = c.validate_for(Profile::Production).unwrap_err().to_string();
    assert!(
        text.contains("auth.hs256_secret: the secret in file"),
        "{text}"
    );
    assert!(text.contains("is 5 bytes long; at least 32"), "{text}");
    assert!(
        !text.contains("short"),
        "the secret itself is never printed: {text}"
    );
    assert!(text.contains("auth.public[0]"), "{text}");
    assert!(
        text.contains("auth.issuer") && text.contains("auth.audience"),
        "{text}"
    );

    let low_variety = dir.join(format!("guardrails-low-variety-{}", std::process::id()));
    std::fs::write(&low_variety, "ab".repeat(20)).unwrap();
    let c = GuardrailsConfig::from_toml_str(&format!(
        "[auth]\nhs256_secret = {{ file = \"{}\" }}\nissuer = \"i\"\naudience = \"a\"",
        low_variety.display()
    ))
    .unwrap();
    let text = c.validate_for(Profile::Production).unwrap_err().to_string();
    assert!(text.contains("distinct bytes"), "{text}");
    std::fs::remove_file(weak).unwrap();
    std::fs::remove_file(low_variety).unwrap();
}

#[test]
fn inline_secret_is_refused_without_echoing_it() {
    let err = GuardrailsConfig::from_toml_str(
        "[auth]\nhs256_secret = \"hunter2-but-longer-than-32-bytes!!\"",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("auth.hs256_secret") && text.contains("never written inline"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn example_config_is_valid_in_its_profile() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/guardrails.toml");
    let c =
        GuardrailsConfig::from_sources(&std::fs::read_to_string(path).unwrap(), path, []).unwrap();
    c.validate().unwrap();
}

#[test]
fn env_overrides_win_over_the_file_and_are_typed() {
    let file = r#"
        profile = "development"
        [server]
        shutdown_grace = "20s"
        [client_ip]
        header = "forwarded"
    "#;
    let c = GuardrailsConfig::from_sources(
        file,
        "test.toml",
        env(&[
            ("GUARDRAILS__SERVER__SHUTDOWN_GRACE", "1m 30s"),
            ("GUARDRAILS__PROFILE", "production"),
            (
                "guardrails__client_ip__trusted_proxies",
                r#"["10.0.0.0/8", "fd00::/8"]"#,
            ),
            ("GUARDRAILS__REQUEST_ID__TRUST_INCOMING", "false"),
            ("GUARDRAILS_LISTEN", "127.0.0.1:9"), // single underscore: not an override
        ]),
    )
    .unwrap();
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(90));
    assert_eq!(c.profile, Profile::Production);
    assert_eq!(c.client_ip.trusted_proxy_list().len(), 2);
    assert_eq!(
        c.client_ip.forwarded_header(),
        guardrail_core::ForwardedHeader::Forwarded
    );
    assert!(!c.request_id.trust_incoming);
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    for (text, key) in [
        ("[server]\nshutdown_grase = \"1s\"", "shutdown_grase"),
        ("[client_ip]\ntrusted_proxy = []", "trusted_proxy"),
        ("[rate_limit]\nburst = 5", "burst"),
        ("[nope]\nx = 1", "nope"),
        ("profil = \"development\"", "profil"),
    ] {
        let err = GuardrailsConfig::from_toml_str(text).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{msg}");
        assert!(msg.contains(key), "{text:?} -> {msg}");
    }
}

#[test]
fn every_bad_key_is_reported_at_once_and_unknown_sections_name_their_variable() {
    let err = GuardrailsConfig::from_sources(
        "[server]\nshutdown_grase = \"1s\"\n[client_ip]\ntrusted_proxy = []\n",
        "test.toml",
        env(&[("GUARDRAILS__INTEGRATIONS__WEATHER__URL", "http://x")]),
    )
    .unwrap_err();
    let ConfigError::Invalid { problems } = &err else {
        panic!("{err}");
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(problems.len(), 3, "{err}");
    for key in ["shutdown_grase", "trusted_proxy", "integrations"] {
        assert!(
            paths.iter().any(|p| p.contains(key)),
            "{key} missing: {err}"
        );
    }
    let msg = err.to_string();
    assert_eq!(
        msg.lines()
            .filter(|l| l.starts_with("config key `"))
            .count(),
        3,
        "one line per problem: {msg}"
    );
    let integrations = problems
        .iter()
        .find(|p| p.path.contains("integrations"))
        .unwrap();
    assert_eq!(
        integrations.origin.as_deref(),
        Some("GUARDRAILS__INTEGRATIONS__WEATHER__URL"),
        "{msg}"
    );
}

#[test]
fn unknown_env_override_names_the_variable() {
    let err = GuardrailsConfig::from_sources(
        "",
        "test.toml",
        env(&[("GUARDRAILS__SERVER__GRACE", "5s")]),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("server.grace") || msg.contains("`grace`"),
        "{msg}"
    );
    assert!(msg.contains("GUARDRAILS__SERVER__GRACE"), "{msg}");
}

#[test]
fn bad_values_name_their_key_path() {
    let cases = [
        (
            "[server]\nshutdown_grace = \"soon\"",
            "server.shutdown_grace",
        ),
        (
            "[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0/33\"]",
            "client_ip.trusted_proxies",
        ),
        ("[client_ip]\nheader = \"x-client-ip\"", "client_ip.header"),
        ("[request_id]\nheader = \"bad header\"", "request_id.header"),
        ("profile = \"staging\"", "profile"),
    ];
    for (text, path) in cases {
        let msg = GuardrailsConfig::from_toml_str(text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(path), "{text:?} -> {msg}");
    }
}

#[test]
fn syntax_errors_carry_line_numbers() {
    let err = GuardrailsConfig::from_sources("[server\nx = 1", "svc.toml", []).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert!(msg.contains("svc.toml") && msg.contains("line 1"), "{msg}");
}

#[test]
fn validation_lists_every_problem_with_its_path() {
    let c = GuardrailsConfig::from_toml_str(
        r#"
        [auth]
        hs256_secret = { env = "GUARDRAILS_TEST_UNSET_SECRET_VAR" }
        issuer = "https://auth.example.test"
        audience = "authenticated"
        [server]
        shutdown_grace = "1h"
        [client_ip]
        trusted_proxies = ["10.0.0.0/8", "0.0.0.0/0", "::/0"]
        ipv6_group_prefix = 8
        "#,
    )
    .unwrap();
    let err = c.validate_for(Profile::Production).unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.shutdown_grace",
            "client_ip.trusted_proxies[1]",
            "client_ip.trusted_proxies[2]",
            "client_ip.ipv6_group_prefix",
            "rate_limit.policies",
            "auth.hs256_secret",
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration for the production profile (6 problems):"),
        "{text}"
    );
    assert!(
        text.contains("any client could choose its own IP"),
        "{text}"
    );

    // Development tolerates a wildcard proxy, but not nonsense values.
    let dev = c.validate_for(Profile::Development).unwrap_err();
    assert_eq!(dev.problems().len(), 2);
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = GuardrailsConfig::load("/definitely/not/here.toml").unwrap_err();
    assert!(
        err.to_string().contains("/definitely/not/here.toml"),
        "{err}"
    );
}

#[test]
fn rate_limit_validation_rejects_nonsense_quotas() {
    let c = GuardrailsConfig::from_toml_str(
        r#"
        profile = "development"
        [rate_limit]
        backend = "redis"
        max_keys = 0
        exempt = ["/*"]
        [[rate_limit.policies]]
        name = "zero"
        rate = 0
        period = "1m"
        [[rate_limit.policies]]
        name = "no_burst"
        rate = 10
        period = "1m"
        burst = 0
        [[rate_limit.policies]]
        name = "forever"
        rate = 10
        period = "30d"
        [[rate_limit.policies]]
        name = "zero"
        key = "api_key"
        rate = 10
        period = "1s"
        [redis]
        timeout = "0s"
        url = { env = "GUARDRAILS_TEST_UNSET_REDIS_URL" }
        [auth]
        hs256_secret = { env = "GUARDRAILS_TEST_UNSET_SECRET_VAR" }
        "#,
    )
    .unwrap();
    let err = c.validate_for(Profile::Development).unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            // `rate_limit.redis_*` moved to the shared `[redis]` section.
            "redis.timeout",
            "redis.url",
            "rate_limit.max_keys",
            "rate_limit.policies[0]",
            "rate_limit.policies[1]",
            "rate_limit.policies[2]",
            "rate_limit.policies[3]",
            "rate_limit.policies[3].name",
            "rate_limit.exempt[0]",
            "rate_limit.redis_key_secret",
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("rate must be at least 1"), "{text}");
    assert!(
        text.contains("period must be between 1ms and 7 days"),
        "{text}"
    );
    assert!(text.contains("api_key_header is required"), "{text}");
}

#[test]
fn rate_limit_keys_and_stages_parse_with_their_names() {
    let err = GuardrailsConfig::from_toml_str(
        "[[rate_limit.policies]]\nname = \"x\"\nrate = 1\nperiod = \"1s\"\nkey = \"cookie\"",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("rate_limit.policies[0].key"),
        "{err}"
    );
    let err = GuardrailsConfig::from_toml_str(
        "[[rate_limit.policies]]\nname = \"x\"\nrate = 1\nperiod = \"1s\"\nstage = \"later\"",
    )
    .unwrap_err();
    assert!(err.to_string().contains("stage"), "{err}");
}

#[test]
fn rate_limit_refuses_policies_that_would_silently_not_work() {
    let c = GuardrailsConfig::from_toml_str(
        r#"
        profile = "development"
        [rate_limit]
        [[rate_limit.policies]]
        name = "per_user_too_early"
        key = "principal"
        rate = 10
        period = "1m"
        [[rate_limit.policies]]
        name = "by_unverified_key"
        key = "api_key"
        api_key_header = "x-api-key"
        rate = 10
        period = "1m"
        [[rate_limit.policies]]
        name = "star_route"
        key = "global"
        rate = 10
        period = "1m"
        routes = ["/api/*"]
        [[rate_limit.policies]]
        name = "typo_method"
        key = "global"
        rate = 10
        period = "1m"
        methods = ["GETT"]
        [[rate_limit.policies]]
        name = "centuries"
        key = "global"
        rate = 1
        period = "7d"
        burst = 100000
        [auth]
        hs256_secret = { env = "GUARDRAILS_TEST_UNSET_SECRET_VAR" }
        "#,
    )
    .unwrap();
    let err = c.validate_for(Profile::Development).unwrap_err();
    let text = err.to_string();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "rate_limit.policies[2]",
            "rate_limit.policies[3]",
            "rate_limit.policies[4]",
            "rate_limit.policies[0].stage",
            "rate_limit.policies[1].key",
        ],
        "{text}"
    );
    assert!(text.contains("no `*`"), "{text}");
    assert!(
        text.contains("`GETT` is not a standard HTTP method"),
        "{text}"
    );
    assert!(text.contains("at most a year"), "{text}");
    assert!(text.contains("after_auth"), "{text}");
    assert!(text.contains("fresh bucket per request"), "{text}");
}

/// A file holding a key strong enough for any secret of the config.
fn strong_file() -> std::path::PathBuf {
    let strong = std::env::temp_dir().join(format!("gr-rl-strong-{}", std::process::id()));
    std::fs::write(&strong, "a rate-limit key of at least thirty-two bytes").unwrap();
    strong
}

#[test]
fn the_redis_backend_needs_a_strong_key_for_its_key_names() {
    let config = |secret: &str| {
        GuardrailsConfig::from_toml_str(&format!(
            r#"
            profile = "development"
            [redis]
            url = {{ env = "GUARDRAILS_TEST_REDIS_URL_UNSET" }}
            cluster = true
            [rate_limit]
            backend = "redis"
            {secret}
            [[rate_limit.policies]]
            name = "per_ip"
            rate = 10
            period = "1m"
            mode = "shadow"
            [auth]
            hs256_secret = {{ file = "{}" }}
            "#,
            strong_file().display()
        ))
        .unwrap()
    };
    let problems = |c: GuardrailsConfig| -> Vec<(String, String)> {
        c.validate_for(Profile::Development)
            .unwrap_err()
            .problems()
            .iter()
            .map(|p| (p.path.clone(), p.message.clone()))
            .collect()
    };
    let missing = problems(config(""));
    let secret = missing
        .iter()
        .find(|(path, _)| path == "rate_limit.redis_key_secret")
        .unwrap_or_else(|| panic!("{missing:?}"));
    assert!(
        secret.1.contains("required with backend = \"redis\""),
        "{secret:?}"
    );

    let weak = std::env::temp_dir().join(format!("gr-rl-weak-{}", std::process::id()));
    std::fs::write(&weak, "short").unwrap();
    let short = problems(config(&format!(
        "redis_key_secret = {{ file = \"{}\" }}",
        weak.display()
    )));
    assert!(
        short
            .iter()
            .any(|(path, message)| path == "rate_limit.redis_key_secret"
                && message.contains("at least 32")
                && !message.contains("short")),
        "{short:?}"
    );
    let strong = strong_file();
    let ok = problems(config(&format!(
        "redis_key_secret = {{ file = \"{}\" }}",
        strong.display()
    )));
    // Only the unset Redis URL is left.
    assert_eq!(
        ok.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["redis.url"],
        "{ok:?}"
    );
    std::fs::remove_file(weak).unwrap();
}

/// A production config whose HS256 secret is weak or missing.
fn production_config(secret: &str) -> GuardrailsConfig {
    GuardrailsConfig::from_toml_str(&format!(
        r#"
        [auth]
        hs256_secret = {secret}
        issuer = "https://issuer.example/auth/v1"
        audience = "authenticated"
        [[rate_limit.policies]]
        name = "per_ip"
        rate = 10
        period = "1s"
        "#
    ))
    .unwrap()
}

#[test]
fn a_production_stack_cannot_be_built_without_a_strong_secret() {
    use guardrails::auth_layer::{AuthConfigError, AuthenticateLayer};
    use guardrails::guardrail_core::Pseudonymizer;

    let weak = std::env::temp_dir().join(format!("guardrails-weak-{}", std::process::id()));
    std::fs::write(&weak, "short").unwrap();
    for secret in [
        r#"{ env = "GUARDRAILS_TEST_UNSET_SECRET_VAR" }"#.to_owned(),
        format!("{{ file = {:?} }}", weak.display().to_string()),
    ] {
        let c = production_config(&secret);
        // A stack is only built from a `ValidConfig`, and validation refuses.
        let err = c.validate().unwrap_err();
        let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["auth.hs256_secret"], "{err}");
    }
    // Below the umbrella the layer refuses a weak secret as well…
    let c = production_config(&format!("{{ file = {:?} }}", weak.display().to_string()));
    let err = AuthenticateLayer::from_config(&c.auth, Profile::Production, Pseudonymizer::random())
        .unwrap_err();
    assert!(matches!(err, AuthConfigError::WeakSecret { .. }), "{err}");
    assert!(!err.to_string().contains("short"), "never the value: {err}");
    // …and validating a production file as development still builds a
    // production stack.
    let valid = c.validate_for(Profile::Development).unwrap();
    assert_eq!(valid.profile(), Profile::Production);
    assert!(guardrails::GuardrailsLayer::from_config(&valid).is_err());
    std::fs::remove_file(weak).unwrap();

    // …and no random key in production, whoever builds it.
    let c = production_config(r#"{ env = "GUARDRAILS_TEST_UNSET_SECRET_VAR" }"#);
    let err = AuthenticateLayer::from_config(&c.auth, Profile::Production, Pseudonymizer::random())
        .unwrap_err();
    assert!(matches!(err, AuthConfigError::Secret(_)), "{err}");
    assert!(err.to_string().starts_with("auth.hs256_secret:"), "{err}");
    // Development runs with a random key (every token refused).
    AuthenticateLayer::from_config(&c.auth, Profile::Development, Pseudonymizer::random()).unwrap();
}

#[tokio::test]
async fn the_stack_hands_over_its_background_tasks_and_health_sources() {
    use guardrails::GuardrailsLayer;
    use guardrails::guardrail_core::health::HealthStatus;

    // A JWKS endpoint nothing listens on: no keys can be had yet.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = GuardrailsConfig::from_toml_str(&format!(
        r#"
        profile = "development"
        [auth]
        jwks = {{ url = "http://{closed}/jwks.json" }}
        [[rate_limit.policies]]
        name = "per_ip"
        rate = 10
        period = "1s"
        [upstreams.weather]
        url = "http://127.0.0.1:1/weather"
        "#
    ))
    .unwrap()
    .validate()
    .unwrap();
    let guardrails = GuardrailsLayer::from_config(&c).unwrap();
    assert_eq!(guardrails.tasks.names(), ["jwks_refresh", "alert_rules"]);
    assert_eq!(
        guardrails.health.names(),
        [
            "rate_limit",
            "jwks",
            "circuit:weather",
            "flags",
            "requests",
            "alerts"
        ]
    );
    // The alert rules read the report: the failing JWKS component is a P0.
    let alerts = guardrails
        .alerts
        .as_ref()
        .expect("alert rules on by default");
    alerts.evaluate();
    alerts.evaluate();
    let firing: Vec<String> = alerts.firing().into_iter().map(|f| f.rule).collect();
    assert_eq!(firing, ["component_failed:jwks"]);
    let report = guardrails.health.report();
    assert_eq!(report.status, HealthStatus::Fail, "no JWKS keys yet");
    let rate_limit = &report.components[0];
    assert_eq!(rate_limit.health.status, HealthStatus::Pass);
    assert_eq!(rate_limit.health.details["backend"], "memory");
    assert_eq!(rate_limit.health.details["keys"]["per_ip"], 0);
    assert_eq!(report.components[1].health.status, HealthStatus::Fail);
    // The upstream's breaker, the one its layers use: forced open, it is
    // reported degraded (never `fail`: the service still serves).
    let weather = &guardrails.upstreams["weather"];
    assert_eq!(report.components[2].health.status, HealthStatus::Pass);
    weather.circuit.force_open();
    let report = guardrails.health.report();
    assert_eq!(report.components[2].health.status, HealthStatus::Warn);
    assert_eq!(report.components[2].health.details["state"], "forced_open");
    // The flag store: its source and flags (none configured here).
    assert_eq!(report.components[3].health.status, HealthStatus::Pass);
    assert_eq!(report.components[3].health.details["source"], "config");
    assert!(guardrails.flags.names().is_empty());

    // Spawned and stopped like the example service does on SIGTERM.
    let running = guardrails.tasks.spawn();
    assert_eq!(running.running(), ["jwks_refresh", "alert_rules"]);
    assert_eq!(running.shutdown().await, ["jwks_refresh", "alert_rules"]);
}

#[test]
fn inbound_guard_sections_are_validated_and_the_old_webhook_limit_says_where_it_moved() {
    let c = GuardrailsConfig::from_toml_str(
        r#"
        profile = "development"
        [server]
        debug_routes = true
        [auth.webhook]
        max_body_bytes = 2048
        [timeout]
        request = "0s"
        status = 502
        [[timeout.routes]]
        prefix = "reports"
        request = "2h"
        [body_limit]
        max_bytes = 2147483648
        [load_shed]
        max_in_flight = 0
        exempt = ["/*"]
        "#,
    )
    .unwrap();
    let err = c.validate_for(Profile::Development).unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            // (no key source configured)
            "auth",
            "auth.webhook.max_body_bytes",
            "timeout.request",
            "timeout.status",
            "timeout.routes[0].prefix",
            "timeout.routes[0].request",
            "body_limit.max_bytes",
            "load_shed.max_in_flight",
            "load_shed.exempt[0]",
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("[[body_limit.routes]]") && text.contains("max_bytes = 2048"),
        "{text}"
    );
    // Debug routes only in development: either profile being production
    // refuses them.
    let mut prod = c.clone();
    prod.profile = Profile::Production;
    let err = prod.validate_for(Profile::Development).unwrap_err();
    assert!(err.to_string().contains("server.debug_routes"), "{err}");
}

#[test]
fn upstreams_are_read_validated_and_overridable_from_the_environment() {
    let c = GuardrailsConfig::from_sources(
        r#"
        profile = "development"
        [upstreams.weather]
        url = "http://127.0.0.1:18089/weather"
        timeout = "1s"
        [upstreams.weather.circuit]
        window = "30s"
        [upstreams.billing]
        url = "not a url"
        [upstreams.billing.retry]
        attempts = 0
        "#,
        "inline",
        env(&[(
            "GUARDRAILS__UPSTREAMS__WEATHER__URL",
            "https://api.weather.example/now",
        )]),
    )
    .unwrap();
    assert_eq!(
        c.upstreams["weather"].url,
        "https://api.weather.example/now"
    );
    let err = c.validate().unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert!(
        paths.contains(&"upstreams.billing.url")
            && paths.contains(&"upstreams.billing.retry.attempts"),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("upstreams.weather")),
        "{paths:?}"
    );
    // A plain-http upstream that is not loopback is refused in production.
    let mut prod = c.clone();
    prod.upstreams.remove("billing");
    prod.upstreams.get_mut("weather").unwrap().url = "http://api.weather.example/now".into();
    let err = prod.validate_for(Profile::Production).unwrap_err();
    assert!(err.to_string().contains("upstreams.weather.url"), "{err}");
}

#[test]
fn flags_are_read_validated_and_their_source_overridable() {
    let c = GuardrailsConfig::from_toml_str(
        r#"
        [flags]
        source = "config"
        [[flags.flag]]
        name = "ai_recommendations"
        enabled = true
        rollout_percentage = 50
        [[flags.flag]]
        name = "Bad"
        rollout_percentage = 101
        "#,
    )
    .unwrap();
    let err = c.clone().validate().unwrap_err().to_string();
    assert!(err.contains("flags.flag[1].name"), "{err}");
    assert!(err.contains("flags.flag[1].rollout_percentage"), "{err}");
    assert!(!err.contains("flags.flag[0]"), "{err}");

    // source = "file" from the environment, without a file: named.
    let c =
        GuardrailsConfig::from_sources("", "inline", env(&[("GUARDRAILS__FLAGS__SOURCE", "file")]))
            .unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("flags.file"), "{err}");
}

#[tokio::test]
async fn the_stack_records_each_answer_in_its_request_stats() {
    use axum::{Router, routing::get};
    use guardrails::{GuardrailsLayer, monitor_layer::Window};
    use tower::ServiceExt;

    let c = GuardrailsConfig::from_toml_str(
        r#"
        profile = "development"
        [auth]
        public = ["/api/health"]
        hs256_secret = { env = "GUARDRAILS_TEST_STATS_SECRET_UNSET" }
        "#,
    )
    .unwrap()
    .validate()
    .unwrap();
    let guardrails = GuardrailsLayer::from_config(&c).unwrap();
    let app = Router::new()
        .route("/api/health", get(|| async { "ok" }))
        .layer(guardrails.layer);
    for path in ["/api/health", "/api/health", "/api/me"] {
        let req = http::Request::get(path)
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                9,
            ))))
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    let minute = guardrails.stats.window(Window::Minute);
    // Two answered 200, one refused 401 (no token): counted apart from errors.
    assert_eq!(
        (minute.requests, minute.client_errors, minute.server_errors),
        (3, 1, 0)
    );
    assert!(minute.p50.is_some());
}
