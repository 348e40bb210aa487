//! The operators' files in `monitoring/`: the Prometheus alert rules pass
//! `promtool check rules` and their own unit tests (`promtool test
//! rules`), and every metric the rules and the Grafana dashboard name is
//! one the stack exports.

use std::collections::BTreeSet;

use guardrails::{guardrail_core::metric, monitor_layer};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/monitoring/prometheus/alerts.yml"
);
const RULE_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/monitoring/prometheus/alerts_test.yml"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/monitoring/grafana/guardrails.json"
);

fn promtool(args: &[&str]) -> String {
    let out = guardrails_testkit::promtool::run(args, "");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", RULES]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", RULE_TESTS]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every `http_server_*` / `guardrails_*` name in `text` (histogram
/// series by their metric's name).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("http_server_") || w.starts_with("guardrails_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[test]
fn rules_and_dashboard_name_only_metrics_the_stack_exports() {
    let exported: BTreeSet<String> = [
        monitor_layer::REQUEST_DURATION,
        monitor_layer::REQUESTS_TOTAL,
        monitor_layer::ACTIVE_REQUESTS,
    ]
    .into_iter()
    .chain(metric::ALL.iter().map(|m| m.name))
    .map(str::to_owned)
    .collect();

    let rules = std::fs::read_to_string(RULES).unwrap();
    let named = metric_names(&rules);
    assert!(named.len() >= 4, "{named:?}");
    let unknown: Vec<_> = named.difference(&exported).collect();
    assert!(unknown.is_empty(), "alerts.yml names {unknown:?}");

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = String::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            exprs.push_str(target["expr"].as_str().expect("an expr"));
            exprs.push('\n');
        }
    }
    let named = metric_names(&exprs);
    let unknown: Vec<_> = named.difference(&exported).collect();
    assert!(unknown.is_empty(), "the dashboard names {unknown:?}");
    // The seed's dashboard: rate, errors, percentiles by route, rate-limit
    // rejections, breaker states, flag evaluations.
    for wanted in [
        monitor_layer::REQUESTS_TOTAL,
        monitor_layer::REQUEST_DURATION,
        metric::RATELIMIT_DECISIONS_TOTAL,
        metric::CIRCUIT_STATE,
        metric::FLAG_EVALUATIONS_TOTAL,
    ] {
        assert!(named.contains(wanted), "no panel shows {wanted}");
    }
    assert!(exprs.contains("histogram_quantile(0.99"), "{exprs}");
}
