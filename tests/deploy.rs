//! The operational kit under deploy/ is checked by the tools that will load it.

use std::process::Command;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs ({e}); apt-get install prometheus prometheus-alertmanager"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

fn files(dir: &str, suffix: &str) -> Vec<String> {
    let mut found: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus").to_string() + dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .map(|p| {
                p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .to_string_lossy()
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
    found.sort();
    found
}

#[test]
fn the_alert_rules_are_valid_and_their_unit_tests_pass() {
    let rules = files("/rules", ".yml");
    assert!(rules.len() >= 2, "{rules:?}");
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    run("promtool", &args);

    let tests = files("/tests", "_test.yml");
    assert_eq!(tests.len(), rules.len(), "every rule file has its unit tests: {tests:?}");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = run("promtool", &args);
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn every_alert_has_unit_tests_that_fire_it() {
    let root = env!("CARGO_MANIFEST_DIR");
    for rules in files("/rules", ".yml") {
        let text = std::fs::read_to_string(format!("{root}/{rules}")).unwrap();
        let tests = std::fs::read_to_string(format!(
            "{root}/{}",
            rules.replace("/rules/", "/tests/").replace(".yml", "_test.yml")
        ))
        .unwrap();
        for line in text.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
            assert!(tests.contains(&format!("alertname: {line}")), "{line} has no unit test in {rules}");
        }
    }
}

#[test]
fn the_prometheus_and_alertmanager_configs_load() {
    run("promtool", &["check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml"]);
    let out = run("amtool", &["check-config", "deploy/alertmanager/alertmanager.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}
