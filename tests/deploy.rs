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

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> serde_norway::Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// The environment variables `breakroom serve` reads, from its own CLI definition.
fn serve_env_names() -> Vec<String> {
    use clap::CommandFactory;
    let cli = breakroom::config::Cli::command();
    let serve = cli.find_subcommand("serve").expect("a serve command");
    serve.get_arguments().filter_map(|a| a.get_env().map(|e| e.to_string_lossy().to_string())).collect()
}

#[test]
fn docker_compose_runs_the_labs_as_the_binary_expects() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let known_env = serve_env_names();
    let labs = ["vote", "items", "datasets", "shop", "loadgen"];
    let mut lab_services = Vec::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        assert!(
            service.get("image").is_some() || service.get("build").is_some() || service.get("<<").is_some(),
            "{name} has an image or a build"
        );
        let Some(command) = service.get("command").and_then(|c| c.as_sequence()) else { continue };
        if command.first().and_then(|c| c.as_str()) != Some("serve") {
            continue;
        }
        let lab = command[1].as_str().unwrap();
        assert!(labs.contains(&lab), "{name}: unknown lab {lab}");
        lab_services.push(name.to_string());
        let env = service["environment"].as_mapping().expect("environment");
        for key in env.keys() {
            let key = key.as_str().unwrap();
            assert!(known_env.iter().any(|k| k == key), "{name}: {key} is not read by breakroom serve ({known_env:?})");
        }
        let default_ports: &[&str] = match lab {
            "shop" => &["8014", "8013", "8016", "8017"],
            "loadgen" => &["8010"],
            _ => &["8000"],
        };
        // No default token: a compose file is public, so its default would be everyone's.
        let token = env.get("BREAKROOM_ADMIN_TOKEN").and_then(|t| t.as_str()).expect("BREAKROOM_ADMIN_TOKEN");
        assert!(
            token.starts_with("${BREAKROOM_ADMIN_TOKEN:?") && token.contains("openssl rand"),
            "{name}: the admin token must be required, with how to make one: {token}"
        );
        let port = env.get("PORT").and_then(|p| p.as_str());
        let expected: Vec<&str> = port.map_or(default_ports.to_vec(), |p| vec![p]);
        let ports = service["ports"].as_sequence().unwrap();
        for port in expected {
            assert!(
                ports.iter().any(|p| p.as_str().unwrap().ends_with(&format!(":{port}"))),
                "{name} publishes {port}"
            );
        }
        for dependency in ["postgres", "redis"] {
            if env.get(if dependency == "postgres" { "DATABASE_URL" } else { "REDIS_URL" }).is_some() {
                assert!(services.contains_key(dependency), "{name} needs the {dependency} service");
            }
        }
    }
    assert_eq!(lab_services.len(), 5, "{lab_services:?}");
    // Prometheus scrapes the lab services on their PORT.
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    for job in prometheus["scrape_configs"].as_sequence().unwrap() {
        for target in job["static_configs"][0]["targets"].as_sequence().unwrap() {
            let (host, port) = target.as_str().unwrap().split_once(':').unwrap();
            let shop_port = host == "shop" && ["8013", "8014", "8016", "8017"].contains(&port);
            assert!(
                services.contains_key(host) && (port == "8000" || shop_port),
                "scrape target {host}:{port} is a lab service"
            );
        }
    }
    for service in ["grafana", "jaeger", "prometheus", "alertmanager"] {
        assert!(services.contains_key(service), "{service}");
    }
    assert_eq!(services["grafana"]["ports"][0].as_str(), Some("3001:3000"));
}

/// Every `.Values.a.b` path a template uses exists in values.yaml.
#[test]
fn the_helm_chart_uses_only_values_it_defines() {
    let chart = yaml("deploy/helm/breakroom/Chart.yaml");
    assert_eq!(chart["name"].as_str(), Some("breakroom"));
    let values = yaml("deploy/helm/breakroom/values.yaml");
    // Everything goes into the release namespace (`helm -n`), never a value's.
    assert!(values.get("namespace").is_none(), "the namespace is .Release.Namespace, not a value");
    // mirrord without its Operator steals one random pod: seed 000's "all 15 succeed"
    // needs vote-api to run one replica.
    assert_eq!(values["voteApi"]["replicas"].as_u64(), Some(1));
    let pattern = |text: &str| -> Vec<String> {
        let mut found = Vec::new();
        for (i, _) in text.match_indices(".Values.") {
            let path: String =
                text[i + 8..].chars().take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '_').collect();
            found.push(path.trim_end_matches('.').to_string());
        }
        found
    };
    let mut used = 0;
    for entry in std::fs::read_dir(root().join("deploy/helm/breakroom/templates")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for value_path in pattern(&text) {
            used += 1;
            let mut node = &values;
            for key in value_path.split('.') {
                node = node
                    .get(key)
                    .unwrap_or_else(|| panic!("{}: .Values.{value_path} is not in values.yaml", path.display()));
            }
        }
    }
    assert!(used > 20, "templates read their values ({used})");
    let deployment = std::fs::read_to_string(root().join("deploy/helm/breakroom/templates/vote-api.yaml")).unwrap();
    for needle in [
        "name: vote-api",
        "path: /health",
        "path: /ready",
        "readOnlyRootFilesystem: true",
        "runAsUser: 1000",
        "BREAKROOM_ADMIN_TOKEN",
        "secretKeyRef",
    ] {
        assert!(deployment.contains(needle), "{needle}");
    }
}

/// The chart's rules are the tested files themselves, not a copy.
#[test]
fn the_helm_chart_embeds_the_tested_rules() {
    let chart_rules = std::fs::canonicalize(root().join("deploy/helm/breakroom/files/rules")).unwrap();
    assert_eq!(chart_rules, std::fs::canonicalize(root().join("deploy/prometheus/rules")).unwrap());
    let chart_am = std::fs::canonicalize(root().join("deploy/helm/breakroom/files/alertmanager.yml")).unwrap();
    assert_eq!(chart_am, std::fs::canonicalize(root().join("deploy/alertmanager/alertmanager.yml")).unwrap());
    let chart_dashboards = std::fs::canonicalize(root().join("deploy/helm/breakroom/files/dashboards")).unwrap();
    assert_eq!(chart_dashboards, std::fs::canonicalize(root().join("deploy/grafana/dashboards")).unwrap());
    let example = std::fs::read_to_string(root().join("my-secrets.yaml.example")).unwrap();
    let example: serde_norway::Value = serde_norway::from_str(&example).unwrap();
    assert!(example["secrets"]["slack"]["webhookUrl"].is_string());
    let ignored = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == "my-secrets.yaml"));
}

#[test]
fn the_mirrord_configs_steal_the_vote_api_and_keep_its_environment() {
    const TOP: [&str; 4] = ["target", "feature", "agent", "operator"];
    const FEATURE: [&str; 3] = ["network", "env", "fs"];
    for path in ["mirrord.json", ".mirrord/mirrord.json", ".mirrord/mirrord-filtered.json"] {
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap();
        for key in config.as_object().unwrap().keys() {
            assert!(TOP.contains(&key.as_str()), "{path}: unknown key {key}");
        }
        for key in config["feature"].as_object().unwrap().keys() {
            assert!(FEATURE.contains(&key.as_str()), "{path}: unknown feature {key}");
        }
        assert_eq!(config["target"]["path"], "deployment/vote-api", "{path}");
        assert_eq!(config["target"]["namespace"], "conference-app", "{path}");
        assert_eq!(config["feature"]["network"]["incoming"]["mode"], "steal", "{path}");
        assert_eq!(config["feature"]["env"]["override"]["APP_VERSION"], "dev-mirrord", "{path}");
        let include = config["feature"]["env"]["include"].as_str().unwrap();
        for name in ["DATABASE_URL", "REDIS_URL", "CONFERENCE", "APP_VERSION", "BREAKROOM_*"] {
            assert!(include.split(';').any(|n| n == name), "{path}: {name}");
        }
        assert_eq!(config["feature"]["fs"], "local");
        // Steal no kubelet probe (User-Agent: kube-probe/…): only requests the filter matches.
        let filter = config["feature"]["network"]["incoming"]["http_filter"]["header_filter"].as_str().unwrap_or("");
        assert!(filter.contains("(?!kube-probe)") || filter.contains("baggage"), "{path}: header filter {filter:?}");
    }
    let filtered: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(".mirrord/mirrord-filtered.json")).unwrap()).unwrap();
    assert!(
        filtered["feature"]["network"]["incoming"]["http_filter"]["header_filter"]
            .as_str()
            .unwrap()
            .contains("baggage")
    );
    for path in [".vscode/launch.json", ".vscode/tasks.json"] {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        let _: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(text.contains("--fixed") && text.contains("mirrord"), "{path}");
    }
}

#[test]
fn the_dockerfile_builds_a_glibc_binary_run_as_uid_1000() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for needle in [
        "FROM rust:",
        "bookworm",
        "FROM debian:bookworm-slim",
        "USER 1000",
        "EXPOSE 8000",
        r#"ENTRYPOINT ["breakroom"]"#,
        r#"CMD ["serve", "vote"]"#,
        "BREAKROOM_DATA_DIR=/tmp",
    ] {
        assert!(dockerfile.contains(needle), "{needle}");
    }
    let instructions: Vec<&str> = dockerfile.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    assert!(
        !instructions.iter().any(|l| l.contains("musl") || l.contains("static")),
        "mirrord needs a dynamically linked binary"
    );
    for copied in dockerfile.lines().filter_map(|l| l.strip_prefix("COPY ")).filter(|l| !l.starts_with("--from")) {
        for source in copied.split_whitespace().rev().skip(1) {
            assert!(root().join(source).exists(), "the Dockerfile copies {source}, which exists");
        }
    }
}

/// The shop's pods run one service each, with settings `breakroom serve` reads.
#[test]
fn the_helm_chart_runs_each_shop_service_in_its_own_pod() {
    let text = std::fs::read_to_string(root().join("deploy/helm/breakroom/templates/shop.yaml")).unwrap();
    for needle in [
        r#"args: ["serve", "shop", "--service", {{ $service.service | quote }}]"#,
        r#""name" "product-catalog" "service" "catalog" "port" 8014"#,
        r#""name" "cart" "service" "cart" "port" 8013"#,
        r#""name" "checkout" "service" "checkout" "port" 8016"#,
        r#""name" "payment" "service" "payment" "port" 8017"#,
        r#"args: ["serve", "loadgen"]"#,
        "containerPort: 8010",
        "readOnlyRootFilesystem: true",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    let known = serve_env_names();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- { name: ").or_else(|| l.trim().strip_prefix("- name: ")))
        .map(|rest| rest.split([',', ' ']).next().unwrap())
        // Environment variables, not container or port names.
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        // POSTGRES_PASSWORD only feeds $(POSTGRES_PASSWORD) in DATABASE_URL.
        assert!(
            name == "POSTGRES_PASSWORD" || known.iter().any(|k| k == name),
            "{name} is not read by breakroom serve"
        );
    }
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/rules/shop.yml")).unwrap();
    for job in ["product-catalog", "checkout"] {
        assert!(rules.contains(&format!("job=\"{job}\"")), "the rules use the pods' app label {job} as job");
    }
}
