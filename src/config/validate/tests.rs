use super::*;

fn check(toml_text: &str) -> Result<Config, ValidationErrors> {
    let raw: RawConfig = toml::from_str(toml_text).expect("test toml parses");
    let origin = |_: &str| Some("test.toml".to_owned());
    validate(
        raw,
        &Context {
            default_state_dir: "/state".into(),
            origin: &origin,
        },
    )
}

fn errors(toml_text: &str) -> Vec<String> {
    check(toml_text)
        .expect_err("config should be invalid")
        .0
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn minimal_service_gets_every_default() {
    let cfg =
        check("[services.web]\ncommand = [\"/usr/bin/web\", \"--port\", \"{port}\"]\nport = 8080")
            .unwrap();
    assert_eq!(cfg.guardian.state_dir, PathBuf::from("/state"));
    assert_eq!(
        cfg.guardian.events_file,
        PathBuf::from("/state/events.jsonl")
    );
    let web = &cfg.services[&ServiceName::new("web").unwrap()];
    assert_eq!(web.pidfile, PathBuf::from("/state/web.pid"));
    assert_eq!(web.identity.patterns, vec!["web".to_owned()]);
    assert_eq!(web.backoff.max_retries, 10);
    assert_eq!(web.backoff.initial_delay, Duration::from_secs(1));
    assert_eq!(web.health.interval, Duration::from_secs(30));
    assert_eq!(
        web.recovery.circuit_breaker.open_timeout,
        Duration::from_secs(300)
    );
    assert_eq!(web.stop_signal, Signal::SIGTERM);
    assert_eq!(web.on_orphan, OnOrphan::Adopt);
    assert_eq!(web.log.file, PathBuf::from("/state/logs/web.log"));
}

#[test]
fn health_timeout_defaults_to_the_shorter_of_5s_and_the_interval() {
    let table = [
        // (interval, timeout, expected timeout)
        ("interval = \"500ms\"", Duration::from_millis(500)),
        ("interval = \"30s\"", Duration::from_secs(5)),
        (
            "interval = \"1s\"\ntimeout = \"10s\"",
            Duration::from_secs(10),
        ),
        (
            "interval = \"5s\"\ntimeout = \"5s\"",
            Duration::from_secs(5),
        ),
    ];
    for (health, want) in table {
        let cfg = check(&format!(
            "[services.web]\ncommand = [\"web\"]\n[services.web.health]\n{health}"
        ))
        .unwrap_or_else(|e| panic!("{health:?} should be valid: {e}"));
        let web = &cfg.services[&ServiceName::new("web").unwrap()];
        assert_eq!(web.health.timeout, want, "{health:?}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let errs = errors(
        r#"
[guardian.api]
listen = "0.0.0.0:9090"
[services.a]
command = []
port = 80
port_range = [90, 80]
[services.a.backoff]
factor = 0.5
jitter = 1.5
[services.a.health]
interval = "5s"
timeout = "5s"
[services.a.health.resources]
cpu_percent = { warning = 95.0, critical = 80.0 }
[services.b]
command = ["b", "{nope}"]
port = 80
[services.b.health]
interval = 0
"#,
    );
    let want = [
        "`guardian.api.listen` (from test.toml): `0.0.0.0:9090` is not a loopback address",
        "`services.a.command` (from test.toml): is required",
        "`services.a.port_range` (from test.toml): set either `port` or `port_range`",
        "`services.a.backoff.factor` (from test.toml): must be at least 1.0 (got 0.5)",
        "`services.a.backoff.jitter` (from test.toml): must be a fraction between 0 and 1",
        "`services.a.health.resources.cpu_percent` (from test.toml): warning 95 must be below critical 80",
        "`services.b.command[1]` (from test.toml): unknown placeholder `{nope}`",
        "`services.b.health.interval` (from test.toml): must be greater than zero",
        "`services.b.port` (from test.toml): port 80 is also the port of service `a`",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(w)),
            "missing {w:?} in {errs:#?}"
        );
    }
}

#[test]
fn replicas_get_their_own_name_port_pidfile_and_log() {
    let cfg = check(
        "[services.api]\ncommand=[\"x\", \"--id={replica}\"]\nport=9000\nreplicas=3\ndepends_on={ db = { condition = \"healthy\", restart = true } }\n[services.db]\ncommand=[\"x\"]",
    )
    .unwrap();
    let api: Vec<ServiceSpec> = cfg.resolve("api");
    let names: Vec<&str> = api.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api.1", "api.2", "api.3"]);
    let ports: Vec<Option<u16>> = api.iter().map(|s| s.port).collect();
    assert_eq!(ports, [Some(9000), Some(9001), Some(9002)]);
    assert!(
        api[1].pidfile.ends_with("api.2.pid"),
        "{:?}",
        api[1].pidfile
    );
    assert!(api[2].log.file.ends_with("logs/api.3.log"));
    assert_eq!(api[1].replica, 2);
    assert_eq!(api[1].group.as_str(), "api");
    let dep = api[0].depends_on[&ServiceName::new("db").unwrap()];
    assert_eq!(dep.condition, Condition::Healthy);
    assert!(dep.restart);
    assert_eq!(cfg.resolve("api.2").len(), 1);
    assert_eq!(cfg.resolve("db")[0].name.as_str(), "db");
    assert!(cfg.resolve("nope").is_empty());
}

#[test]
fn table_of_single_mistakes() {
    let table: &[(&str, &str)] = &[
        ("", "`services` (from test.toml): no service is defined"),
        (
            "[services.Web]\ncommand=[\"x\"]",
            "service name `Web` must be",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nport=0",
            "`services.w.port` (from test.toml): must be between 1 and 65535",
        ),
        (
            "[services.api]\ncommand=[\"x\"]\ndepends_on={ dbb = \"ready\" }\n[services.db]\ncommand=[\"x\"]",
            "`services.api.depends_on.dbb` (from test.toml): there is no service `dbb`; did you mean `db`?",
        ),
        (
            "[services.api]\ncommand=[\"x\"]\ndepends_on={ api = \"ready\" }",
            "`services.api.depends_on.api` (from test.toml): a service cannot depend on itself",
        ),
        (
            "[services.api]\ncommand=[\"x\"]\ndepends_on={ cache = \"ready\" }\n[services.cache]\ncommand=[\"x\"]\ndepends_on={ api = \"started\" }",
            "`services.api.depends_on` (from test.toml): dependency cycle: api → cache → api",
        ),
        (
            "[services.api]\ncommand=[\"x\"]\ndepends_on={ m = \"completed\" }\n[services.m]\ncommand=[\"x\"]",
            "`services.api.depends_on.m` (from test.toml): `m` has restart = \"always\", so it never completes",
        ),
        (
            "[services.api]\ncommand=[\"x\"]\ndepends_on={ m = { condition = \"done\" } }\n[services.m]\ncommand=[\"x\"]",
            "`done` is not a condition; use one of started, ready, healthy, completed",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nrestart=\"sometimes\"",
            "`services.w.restart` (from test.toml): `sometimes` is not one of always, on-failure, no",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nreplicas=0",
            "`services.w.replicas` (from test.toml): must be between 1 and 1000",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nreplicas=3\nport_range=[9000,9001]",
            "[9000, 9001] has 2 ports for 3 replicas",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nreplicas=2\npidfile=\"/tmp/w.pid\"",
            "put {name} or {replica} in it",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nreplicas=2\nport=9000\n[services.v]\ncommand=[\"x\"]\nport=9001",
            "port 9001 (of `w.2`) is also the port of service `v`",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nstop_signal=\"SIGNOPE\"",
            "`SIGNOPE` is not a signal",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\non_orphan=\"keep\"",
            "`keep` is not one of adopt, replace, fail",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\n[services.w.health]\nchecks=[{kind=\"tcp\"}]",
            "a tcp or http check needs a `port`",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nport_range=[1,5]\npidfile=\"/p/{port}.pid\"",
            "a pidfile cannot use {port} with port_range",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\n[services.w.backoff]\ninitial_delay=\"2m\"",
            "2m is longer than max_delay 1m",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nport=5\n[services.w.recovery.clear_connections]\nsignal=\"SIGUSR1\"\ncommand=[\"y\"]",
            "set exactly one of",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nenv_prefix=\"lower\"",
            "`lower` must be upper case",
        ),
        (
            "[guardian]\nlog_level=\"loud\"\n[services.w]\ncommand=[\"x\"]",
            "`loud` is not a log level",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\n[services.w.recovery.circuit_breaker]\nsuccess_threshold=0",
            "success_threshold` (from test.toml): must be at least 1",
        ),
        (
            "[services.w]\ncommand=[\"x\"]\nport=5\n[services.v]\ncommand=[\"y\"]\nport_range=[1,10]",
            "[1, 10] contains port 5 of service `w`",
        ),
    ];
    for (text, want) in table {
        let errs = errors(text);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{text:?}: missing {want:?} in {errs:#?}"
        );
    }
}

#[test]
fn signals_accept_short_names() {
    let cfg = check("[services.w]\ncommand=[\"x\"]\nstop_signal=\"int\"").unwrap();
    assert_eq!(
        cfg.services.values().next().unwrap().stop_signal,
        Signal::SIGINT
    );
}
