//! SPEC §6 over both transports: every endpoint, bearer auth on TCP, bounded bodies, the
//! Prometheus text, the metrics files, and the CLI round trips.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);
const TOKEN: &str = "s3cret-token-for-tests";

struct Api {
    sb: Sandbox,
    cfg: PathBuf,
    addr: String,
    _g: GuardianUnderTest,
}

impl Api {
    fn sock(&self) -> PathBuf {
        self.sb.state_dir().join("guardian.sock")
    }

    fn tcp(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        http(Target::Tcp(&self.addr), method, path, headers, b"")
    }

    fn unix(&self, method: &str, path: &str) -> (u16, String) {
        http(Target::Unix(&self.sock()), method, path, &[], b"")
    }
}

/// Two services (one with checks and its own metrics file) and the TCP API with a token.
fn up() -> Api {
    let sb = Sandbox::new();
    let port = free_port();
    let (api, addr) = sb.api_section(TOKEN);
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"{api}
[services.web]
command = ["{server}", "--port", "{{port}}"]
port = {port}
metrics = {{ enabled = true }}
[services.web.health]
interval = "200ms"
timeout = "150ms"
checks = [{{ kind = "http", path = "/health" }}]
[services.worker]
command = ["sleep", "300"]
"#,
            server = example_bin("socketio_server").display(),
        ),
    );
    let g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.service(&cfg, "web")["health"]
        == "healthy"
        && sb.pid_of(&cfg, "worker").is_some()));
    Api {
        sb,
        cfg,
        addr,
        _g: g,
    }
}

#[test]
fn every_get_endpoint_answers_on_both_transports() {
    let api = up();
    for (path, want) in [
        ("/status", 200),
        ("/health", 200),
        ("/diagnostics", 200),
        ("/metrics", 200),
        ("/services/web/events", 200),
        ("/services/nope/events", 404),
        ("/no/such/route", 404),
    ] {
        let (u, ubody) = api.unix("GET", path);
        let (t, tbody) = api.tcp("GET", path, &[]);
        assert_eq!((u, t), (want, want), "{path}: {ubody} / {tbody}");
        if path != "/metrics" {
            let v: Value = serde_json::from_str(&tbody).expect(path);
            assert!(v.is_object() || v.is_array(), "{path}: {tbody}");
            if want == 404 {
                assert!(v["error"].as_str().is_some(), "{tbody}");
            }
        }
    }
    let (_, status) = api.sb.get_json("/status");
    assert_eq!(status["guardian"]["config_generation"], 0);
    let names: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "worker"]);
    for key in [
        "name",
        "state",
        "pid",
        "port",
        "uptime_seconds",
        "restarts",
        "health",
        "circuit_breaker",
        "adopted",
    ] {
        assert!(status["services"][0].get(key).is_some(), "{key}");
    }
    let (_, d) = api.sb.get_json("/diagnostics");
    let web = &d["services"]["web"];
    assert!(web["health_monitor"]["checks_performed"].as_u64().unwrap() >= 1);
    assert_eq!(web["recovery_manager"]["circuit_breaker"], "closed");
    assert!(web["process_info"]["memory_mb"].as_f64().unwrap() > 0.0);
    assert!(web["process_info"]["thread_count"].as_u64().unwrap() >= 1);
    assert_eq!(
        web["server_info"]["pid"],
        api.sb.service(&api.cfg, "web")["pid"]
    );
    let (_, h) = api.sb.get_json("/health");
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["services"]["web"]["checks"][0]["status"], "healthy");
}

#[test]
fn post_over_tcp_needs_the_bearer_token() {
    let api = up();
    let (code, body) = api.tcp("POST", "/services/worker/restart", &[]);
    assert_eq!(code, 401, "{body}");
    let (code, _) = api.tcp(
        "POST",
        "/services/worker/restart",
        &[("authorization", "Bearer wrong")],
    );
    assert_eq!(code, 403);
    let before = api.sb.pid_of(&api.cfg, "worker").unwrap();
    let bearer = format!("Bearer {TOKEN}");
    let (code, body) = api.tcp(
        "POST",
        "/services/worker/restart",
        &[("authorization", &bearer)],
    );
    assert_eq!(code, 200, "{body}");
    assert!(wait_for(LONG, || api
        .sb
        .pid_of(&api.cfg, "worker")
        .is_some_and(|p| p != before)));
    // The Unix socket needs no token.
    let (code, _) = api.unix("POST", "/services/worker/stop");
    assert_eq!(code, 200);
    assert!(wait_for(
        LONG,
        || api.sb.service(&api.cfg, "worker")["state"] == "stopped"
    ));
    let (code, _) = api.tcp(
        "POST",
        "/services/nope/start",
        &[("authorization", &bearer)],
    );
    assert_eq!(code, 404);
    // An oversized body is refused before it is read: the answer comes right after the head.
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(api.sock()).unwrap();
        s.write_all(
            b"POST /services/worker/start HTTP/1.0\r\nhost: guardian\r\ncontent-length: 204800\r\n\r\n",
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.0 413"), "{answer}");
    }
    let (code, _) = api.tcp("POST", "/shutdown", &[("authorization", &bearer)]);
    assert_eq!(code, 200);
    assert!(wait_for(LONG, || !api.sock().exists()));
}

/// A metric's name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses OpenMetrics text: every sample line is `name{labels} value`, and it ends in `# EOF`.
fn parse_metrics(text: &str) -> Vec<Sample> {
    assert_eq!(text.lines().last(), Some("# EOF"), "no # EOF");
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().expect(line);
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let inner = rest.strip_suffix('}').expect(line);
                let labels = inner
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect(line);
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        out.push((name, labels, value));
    }
    out
}

#[test]
fn metrics_are_prometheus_text_with_every_listed_metric() {
    let api = up();
    // CPU needs two samples: wait for the second round of checks.
    let mut text = String::new();
    assert!(wait_for(LONG, || {
        let (code, t) = api.tcp("GET", "/metrics", &[]);
        text = t;
        code == 200 && text.contains("guardian_service_cpu_percent{service=\"web\"}")
    }));
    let samples = parse_metrics(&text);
    let find = |name: &str, service: Option<&str>| {
        samples.iter().find(|(n, l, _)| {
            n == name && service.is_none_or(|s| l.iter().any(|(k, v)| k == "service" && v == s))
        })
    };
    for name in [
        "guardian_up",
        "guardian_uptime_seconds",
        "guardian_config_reloads_total",
    ] {
        assert!(find(name, None).is_some(), "{name} missing:\n{text}");
    }
    for name in [
        "guardian_service_up",
        "guardian_service_restarts_total",
        "guardian_health_checks_total",
        "guardian_service_health_status",
        "guardian_recovery_actions_total",
        "guardian_circuit_breaker_state",
        "guardian_service_cpu_percent",
        "guardian_service_memory_bytes",
        "guardian_service_open_fds",
    ] {
        assert!(find(name, Some("web")).is_some(), "{name} missing:\n{text}");
    }
    assert_eq!(find("guardian_up", None).unwrap().2, 1.0);
    assert_eq!(
        find("guardian_service_health_status", Some("web"))
            .unwrap()
            .2,
        1.0
    );
    assert_eq!(find("guardian_service_up", Some("worker")).unwrap().2, 1.0);
    assert!(
        find("guardian_service_memory_bytes", Some("web"))
            .unwrap()
            .2
            > 0.0
    );
    assert!(
        samples
            .iter()
            .any(|(n, l, v)| n == "guardian_health_checks_total"
                && l.contains(&("result".into(), "healthy".into()))
                && *v >= 1.0)
    );
    assert!(!text.contains("_total_total"));
}

#[test]
fn metrics_files_hold_every_service_and_the_flat_form() {
    let api = up();
    let state = api.sb.state_dir();
    let read = |name: &str| -> Value {
        std::fs::read_to_string(state.join(name))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    };
    assert!(wait_for(LONG, || {
        read("web-metrics.json")["health_checks_passed"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    }));
    let flat = read("web-metrics.json");
    for key in [
        "start_time",
        "restarts",
        "total_failures",
        "last_failure",
        "health_checks_passed",
        "health_checks_failed",
        "uptime_seconds",
        "last_health_check",
        "status",
    ] {
        assert!(flat.get(key).is_some(), "{key} missing: {flat}");
    }
    assert_eq!(flat["status"], "healthy");
    let all = read("metrics.json");
    assert!(
        all["services"]["web"].is_object() && all["services"]["worker"].is_object(),
        "{all}"
    );
    assert!(
        !state.join("worker-metrics.json").exists(),
        "metrics.enabled is off for worker"
    );
    // No temporary file is left behind by the atomic writes.
    std::thread::sleep(Duration::from_millis(1200));
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The page's charts: a service with `metrics.enabled` and no resource thresholds still has
/// its memory and CPU charted, read from /proc; one without either has neither.
#[test]
fn history_charts_memory_of_a_metrics_enabled_service() {
    let api = up();
    let minutes = |name: &str| {
        let (code, body) = api.unix("GET", &format!("/services/{name}/history"));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let mut last = Value::Null;
    let charted = wait_for(LONG, || {
        last = minutes("web");
        last["minutes"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["memory_mb"].as_f64().is_some_and(|mb| mb > 0.5))
        })
    });
    assert!(charted, "no memory charted for web: {last}");
    assert_eq!(last["samples_resources"], true, "{last}");
    let worker = minutes("worker");
    assert_eq!(worker["samples_resources"], false, "{worker}");
    assert!(
        worker["minutes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["memory_mb"].is_null()),
        "{worker}"
    );
    let (code, body) = api.unix("GET", "/services/nope/history");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("web") && body.contains("worker"), "{body}");
}

#[test]
fn cli_round_trips_status_stop_start_restart() {
    let api = up();
    let (sb, cfg) = (&api.sb, &api.cfg);
    let out = sb.client(cfg, &["status"]);
    assert_eq!(out.code, 0, "{}", out.all());
    for word in ["web", "worker", "running", "healthy", "closed"] {
        assert!(out.stdout.contains(word), "{word}: {}", out.stdout);
    }
    assert!(
        !out.stdout.contains('\u{1b}'),
        "no color when not on a terminal"
    );
    let out = sb.client(cfg, &["stop", "worker"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb.service(cfg, "worker")["state"] == "stopped"));
    assert!(!sb.state_dir().join("worker.pid").exists());
    let out = sb.client(cfg, &["start", "worker"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb.pid_of(cfg, "worker").is_some()));
    let before = sb.pid_of(cfg, "worker").unwrap();
    let out = sb.client(cfg, &["restart", "worker"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb
        .pid_of(cfg, "worker")
        .is_some_and(|p| p != before)));
    assert_eq!(sb.client(cfg, &["restart", "nope"]).code, 4);
    let out = sb.client(cfg, &["events", "worker", "--json", "-n", "3"]);
    assert_eq!(out.code, 0);
    let events: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!events.is_empty() && events.len() <= 3, "{}", out.stdout);
    let out = sb.client(cfg, &["stop"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || !api.sock().exists()));
}

/// Uptime is computed when it is read: a quiet service (no checks, so its snapshot is not
/// rebuilt) still shows the seconds it has run.
/// The API's first answer already lists every service: it is served only once the engine
/// has published them (a test build's stall makes the engine's first turn late).
#[test]
fn the_first_answer_of_the_api_lists_every_service() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\n[services.b]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let mut g = sb.spawn_with_env(&cfg, &[("_GUARDIAN_TEST_ENGINE_STALL_MS", "800".as_ref())]);
    let sock = sb.state_dir().join("guardian.sock");
    assert!(wait_for(LONG, || sock.exists()), "the API never came up");
    let (code, status) = sb.get_json("/status");
    assert_eq!(code, 200, "{status}");
    let names: Vec<&str> = status["services"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["a", "b"], "{status}");
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn uptime_is_computed_when_read_not_when_the_snapshot_was_built() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.quiet]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(std::time::Duration::from_secs(30), || sb
        .pid_of(&cfg, "quiet")
        .is_some()));
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let up = sb.service(&cfg, "quiet")["uptime_seconds"]
        .as_f64()
        .unwrap();
    assert!(up >= 2.0, "uptime {up}");
    let (_, doc) = sb.get_json("/status");
    let up = doc["services"][0]["uptime_seconds"].as_f64().unwrap();
    assert!(up >= 2.0, "uptime {up} from /status");
}

#[test]
fn status_can_be_filtered_by_service_and_state() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.w]\ncommand = [\"sleep\", \"300\"]\nreplicas = 2\n[services.task]\ncommand = [\"true\"]\nrestart = \"no\"\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(std::time::Duration::from_secs(30), || {
        sb.pid_of(&cfg, "w.2").is_some() && sb.service(&cfg, "task")["state"] == "completed"
    }));
    let names = |path: &str| -> Vec<String> {
        let (code, doc) = sb.get_json(path);
        assert_eq!(code, 200, "{path}: {doc}");
        doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("/status?service=w"), ["w.1", "w.2"]);
    assert_eq!(names("/status?service=w.2"), ["w.2"]);
    assert_eq!(names("/status?state=completed"), ["task"]);
    assert_eq!(
        names("/status?state=running&service=task"),
        Vec::<String>::new()
    );
    let (code, doc) = sb.get_json("/status?state=sleeping");
    assert_eq!(code, 400);
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("unknown state `sleeping`")
    );
}

/// Change-only polling: `ETag` + `If-None-Match` answer 304 while nothing changed, `since`
/// lists only what changed after a revision, and uptimes read after a 304 are still right.
#[test]
fn status_answers_only_what_changed_since_a_revision() {
    let sb = Sandbox::new();
    let (cfg, _g) = sb.start_sleeping(&["a", "b"]);
    let sock = sb.state_dir().join("guardian.sock");
    let get = |path: &str, headers: &[(&str, &str)]| {
        let (code, head, body) = http_with_head(Target::Unix(&sock), "GET", path, headers, b"");
        let tag = head
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .map(str::to_owned);
        (
            code,
            tag,
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(),
        )
    };
    // Settled: two reads in a row carry the same revision and tag.
    let mut first = get("/status", &[]);
    assert!(wait_for(LONG, || {
        let again = get("/status", &[]);
        let same = again.1 == first.1;
        first = again;
        same
    }));
    let (code, tag, doc) = first;
    assert_eq!(code, 200);
    let tag = tag.expect("an ETag on /status");
    let rev = doc["guardian"]["revision"].as_u64().unwrap();
    let uptime_a = |doc: &serde_json::Value| {
        doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "a")
            .unwrap()["uptime_seconds"]
            .as_f64()
            .unwrap()
    };
    let before = uptime_a(&doc);

    // Nothing changed: 304 with no body, and `since` lists nobody.
    let (code, _, body) = get("/status", &[("If-None-Match", &tag)]);
    assert_eq!((code, body), (304, serde_json::Value::Null));
    let (code, _, doc) = get(&format!("/status?since={rev}"), &[]);
    assert_eq!(code, 200);
    assert_eq!(doc["services"], serde_json::json!([]));

    // Time passes with no change: still 304, yet a full read shows the uptime moved on.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(get("/status", &[("If-None-Match", &tag)]).0, 304);
    let (_, same_tag, doc) = get("/status", &[]);
    assert_eq!(same_tag.as_deref(), Some(tag.as_str()));
    assert!(
        uptime_a(&doc) >= before + 1.4,
        "{} then {}",
        before,
        uptime_a(&doc)
    );

    // b restarts: only b is listed since the revision, and the tag changed.
    let b = sb.pid_of(&cfg, "b").unwrap();
    kill(b, nix::sys::signal::Signal::SIGKILL);
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "b")
        .is_some_and(|p| p != b)));
    let (code, new_tag, doc) = get(&format!("/status?since={rev}"), &[("If-None-Match", &tag)]);
    assert_eq!(code, 200);
    assert_ne!(new_tag.as_deref(), Some(tag.as_str()));
    let names: Vec<&str> = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"]);
    assert!(doc["guardian"]["revision"].as_u64().unwrap() > rev);
}

/// Off loopback (SPEC §12): every request but the page needs the token, wrong tokens lock an
/// address out, and the failures are counted.
#[test]
fn off_loopback_reads_need_the_token_and_wrong_tokens_lock_out() {
    let sb = Sandbox::new();
    let (section, addr) = sb.api_section("s3cret-token");
    let port = addr.rsplit(':').next().unwrap();
    let section = section.replace("127.0.0.1:", "0.0.0.0:") + "allow_plaintext = true\n";
    let cfg = sb.write(
        "g.toml",
        &format!("{section}[services.a]\ncommand = [\"sleep\", \"300\"]\n"),
    );
    let _g = sb.start(&cfg);
    let target = format!("127.0.0.1:{port}");
    assert!(wait_for(std::time::Duration::from_secs(30), || {
        http(Target::Tcp(&target), "GET", "/", &[], b"").0 == 200
    }));
    let get = |path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        http(Target::Tcp(&target), "GET", path, &headers, b"").0
    };
    for path in ["/status", "/health", "/diagnostics", "/metrics", "/events"] {
        assert_eq!(get(path, None), 401, "{path} without the token");
    }
    let code = get("/health", Some("s3cret-token"));
    assert!([200, 503].contains(&code), "/health with the token: {code}");
    assert_eq!(get("/status", Some("s3cret-token")), 200);
    // Five wrong tokens within a minute: 429 for a minute, even with the right one.
    for _ in 0..4 {
        assert_eq!(get("/status", Some("wrong")), 403);
    }
    assert_eq!(get("/status", Some("wrong")), 403);
    assert_eq!(get("/status", Some("s3cret-token")), 429);
    // More tries while locked out: still 429, and still one log line for the lockout.
    for _ in 0..3 {
        assert_eq!(get("/status", Some("wrong")), 429);
    }
    let log = sb.stderr();
    assert_eq!(
        log.matches("this address is locked out for a minute")
            .count(),
        1,
        "{log}"
    );
    // Plain HTTP off loopback was allowed explicitly, and guardian says what that means.
    assert_eq!(
        log.matches("the API listens off loopback without TLS")
            .count(),
        1,
        "{log}"
    );
    // The Unix socket is not affected, and it counts the failures.
    let (code, _) = sb.get_json("/status");
    assert_eq!(code, 200);
    let dir = sb.state_dir();
    let sock = dir.join("guardian.sock");
    let (_, metrics) = http(Target::Unix(&sock), "GET", "/metrics", &[], b"");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("guardian_api_auth_failures_total"))
        .expect("the counter");
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(n, 5, "only wrong tokens count, not missing ones: {line}");
}

#[test]
fn a_token_file_others_can_read_is_refused_by_validate_and_run_before_any_service_starts() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let (section, _) = sb.api_section("tok-tok-tok");
    std::fs::set_permissions(
        sb.path().join("token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "{section}[services.a]\ncommand = [\"sh\", \"-c\", \"touch started; exec sleep 300\"]\ncwd = \".\"\n"
        ),
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("guardian.api.token_file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    let run = output(&mut sb.run_cmd(&cfg));
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(!sb.path().join("started").exists(), "no service may start");
}

#[test]
fn an_environment_secret_appears_in_no_endpoint_event_or_log() {
    let sb = Sandbox::new();
    let planted = "Pl4nted-S3cret-Value";
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", \"exec sleep 300\", \"--password={planted}\"]\nenv = {{ DB_PASSWORD = \"{planted}\" }}\nmetrics = {{ enabled = true }}\n"
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(std::time::Duration::from_secs(30), || sb
        .pid_of(&cfg, "a")
        .is_some()));
    let sock = sb.state_dir().join("guardian.sock");
    for path in [
        "/status",
        "/health",
        "/diagnostics",
        "/metrics",
        "/events",
        "/services/a/events",
    ] {
        let (code, body) = http(Target::Unix(&sock), "GET", path, &[], b"");
        assert!(code == 200 || code == 503, "{path}: {code}");
        assert!(!body.contains(planted), "{path} shows the secret: {body}");
    }
    let events = std::fs::read_to_string(sb.state_dir().join("events.jsonl")).unwrap();
    assert!(!events.contains(planted), "{events}");
    assert!(events.contains("--password=***"), "{events}");
    assert!(!sb.stderr().contains(planted));
    let metrics_file =
        std::fs::read_to_string(sb.state_dir().join("a-metrics.json")).unwrap_or_default();
    assert!(!metrics_file.contains(planted));
}

/// A self-signed certificate for 127.0.0.1: (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// One HTTPS request with a client that trusts exactly `cert`.
fn https_get(addr: &str, cert_pem: &str, path: &str, token: Option<&str>) -> Result<u16, String> {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(tls, "GET {path} HTTP/1.0\r\nhost: guardian\r\n{auth}\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {out:?}"))
}

#[test]
fn the_api_serves_tls_and_refuses_plain_http_on_it() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let (cert, key) = self_signed();
    let cert_file = sb.write("cert.pem", &cert);
    let key_file = sb.write("key.pem", &key);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (section, addr) = sb.api_section("tls-token-123");
    let port = addr.rsplit(':').next().unwrap();
    let section = section.replace("127.0.0.1:", "0.0.0.0:")
        + &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert_file.display(),
            key_file.display()
        );
    let cfg = sb.write(
        "g.toml",
        &format!("{section}[services.a]\ncommand = [\"sleep\", \"300\"]\n"),
    );
    assert_eq!(sb.run(&["validate", "-c", cfg.to_str().unwrap()]).code, 0);
    let _g = sb.start(&cfg);
    let target = format!("127.0.0.1:{port}");
    assert!(
        wait_for(std::time::Duration::from_secs(30), || https_get(
            &target, &cert, "/", None
        ) == Ok(200)),
        "{}",
        sb.stderr()
    );
    assert_eq!(https_get(&target, &cert, "/status", None), Ok(401));
    assert_eq!(
        https_get(&target, &cert, "/status", Some("tls-token-123")),
        Ok(200)
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let (code, _) = http(Target::Tcp(&target), "GET", "/status", &[], b"");
    assert_eq!(code, 0, "plain HTTP must not be served on a TLS listener");
    // A reload reads the certificate again: a new one applies without a restart.
    let (cert2, key2) = self_signed();
    std::fs::write(&cert_file, &cert2).unwrap();
    std::fs::write(&key_file, &key2).unwrap();
    assert_eq!(sb.client(&cfg, &["reload"]).code, 0);
    assert!(wait_for(std::time::Duration::from_secs(30), || https_get(
        &target, &cert2, "/", None
    ) == Ok(
        200
    )));
    assert!(
        https_get(&target, &cert, "/", None).is_err(),
        "the old certificate is gone"
    );
}

#[test]
fn bad_tls_and_plaintext_settings_are_config_errors() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let (cert, key) = self_signed();
    let (_, other_key) = self_signed();
    let cert_file = sb.write("cert.pem", &cert);
    let key_file = sb.write("key.pem", &key);
    let other = sb.write("other.pem", &other_key);
    let open_key = sb.write("open.pem", &key);
    let junk = sb.write("junk.pem", "not a certificate");
    for f in [&key_file, &other, &junk] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (section, _) = sb.api_section("tok-tok-tok-1");
    let table = [
        (
            format!("tls_cert = \"{}\"\n", cert_file.display()),
            "`guardian.api.tls_key`",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert_file.display(),
                other.display()
            ),
            "do not belong together",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert_file.display(),
                open_key.display()
            ),
            "chmod 600",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                junk.display(),
                key_file.display()
            ),
            "holds no certificate",
        ),
    ];
    for (extra, want) in table {
        let cfg = sb.write(
            "g.toml",
            &format!("{section}{extra}[services.a]\ncommand = [\"x\"]\n"),
        );
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{extra}\n{}", out.all());
        assert!(out.all().contains(want), "{want}\n{}", out.all());
        // `run` refuses the same, before anything starts.
        let out = output(&mut sb.run_cmd(&cfg));
        assert_eq!(out.code, 2, "run: {extra}\n{}", out.all());
        assert!(out.all().contains(want), "run: {want}\n{}", out.all());
    }
    // Off loopback without TLS: refused unless plaintext is allowed explicitly.
    let off = section.replace("127.0.0.1:", "0.0.0.0:");
    let cfg = sb.write("g.toml", &format!("{off}[services.a]\ncommand = [\"x\"]\n"));
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.all().contains("needs TLS"), "{}", out.all());
    let cfg = sb.write(
        "g.toml",
        &format!("{off}allow_plaintext = true\n[services.a]\ncommand = [\"x\"]\n"),
    );
    assert_eq!(sb.run(&["validate", "-c", cfg.to_str().unwrap()]).code, 0);
}

#[test]
fn a_missing_or_empty_token_file_is_refused_by_validate_and_run() {
    let sb = Sandbox::new();
    let (section, _) = sb.api_section("tok-tok-tok-3");
    let token = sb.path().join("token");
    let cfg = sb.write(
        "g.toml",
        &format!(
            "{section}[services.a]\ncommand = [\"sh\", \"-c\", \"touch started; exec sleep 300\"]\ncwd = \".\"\n"
        ),
    );
    std::fs::write(&token, "").unwrap();
    let empty = [
        sb.run(&["validate", "-c", cfg.to_str().unwrap()]),
        output(&mut sb.run_cmd(&cfg)),
    ];
    std::fs::remove_file(&token).unwrap();
    let missing = [
        sb.run(&["validate", "-c", cfg.to_str().unwrap()]),
        output(&mut sb.run_cmd(&cfg)),
    ];
    for out in &empty {
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(out.all().contains("is empty"), "{}", out.all());
    }
    for out in &missing {
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(
            out.all().contains("cannot read token file"),
            "{}",
            out.all()
        );
    }
    assert!(!sb.path().join("started").exists(), "a service started");
}

#[test]
fn a_token_file_of_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let (section, _) = sb.api_section("tok-tok-tok-2");
    let token = sb.path().join("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    nix::unistd::chown(&token, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let cfg = sb.write(
        "g.toml",
        &format!("{section}[services.a]\ncommand = [\"x\"]\n"),
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.all().contains("belongs to uid 65534"), "{}", out.all());
}

/// Reads from a raw HTTP/1.0 request on the Unix socket until `want` has been seen (or 30 s).
fn sse_until(sock: &std::path::Path, request: &str, want: &[&str]) -> String {
    let mut f = Follower::open(sock, request);
    f.until(|got| want.iter().all(|w| got.contains(w)))
        .to_owned()
}

/// Live output and events over the API: the log's tail as text, a follow as Server-Sent
/// Events (numbered lines printed after it began, a heartbeat), events followed and resumed
/// with Last-Event-ID, and the bad inputs (an unknown service, `n` out of range).
#[test]
fn logs_and_events_are_served_and_followed() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[guardian]\necho = false\n[services.talk]\ncommand = [\"sh\", \"-c\", \"echo first; echo second; while [ ! -e go ]; do sleep 0.05; done; echo after-follow; exec sleep 300\"]\ncwd = \".\"\n",
    );
    let _g = sb.start(&cfg);
    let sock = sb.state_dir().join("guardian.sock");
    assert!(wait_for(LONG, || {
        http(
            Target::Unix(&sock),
            "GET",
            "/services/talk/logs?n=5",
            &[],
            b"",
        )
        .1 == "first\nsecond\n"
    }));
    let (code, body) = http(Target::Unix(&sock), "GET", "/services/nope/logs", &[], b"");
    assert_eq!(code, 404);
    assert!(body.contains("services: talk"), "{body}");
    let (code, body) = http(
        Target::Unix(&sock),
        "GET",
        "/services/talk/logs?n=10001",
        &[],
        b"",
    );
    assert_eq!(code, 400);
    assert!(body.contains("out of range"), "{body}");
    // Follow: the backlog, then a line printed after the follow began, numbered.
    let dir = sb.path().to_owned();
    let toucher = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        std::fs::write(dir.join("go"), "").unwrap();
    });
    let got = sse_until(
        &sock,
        "GET /services/talk/logs?follow=1&n=2 HTTP/1.0\r\n\r\n",
        &["data: after-follow", ": heartbeat"],
    );
    toucher.join().unwrap();
    assert!(got.contains("text/event-stream"), "{got}");
    let (a, b) = (
        got.find("data: second").unwrap(),
        got.find("data: after-follow").unwrap(),
    );
    assert!(a < b, "{got}");
    assert!(got.contains("id: 0\ndata: after-follow"), "{got}");
    assert!(got.contains(": heartbeat"), "{got}");
    // Events followed: the recent ones numbered; resumed after the first, the rest come again.
    let got = sse_until(
        &sock,
        "GET /events?follow=1&n=2 HTTP/1.0\r\n\r\n",
        &["\"action\""],
    );
    let first: u64 = got
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .and_then(|v| v.parse().ok())
        .expect("an id");
    let again = sse_until(
        &sock,
        &format!(
            "GET /events?follow=1 HTTP/1.0\r\nLast-Event-ID: {}\r\n\r\n",
            first - 1
        ),
        &[&format!("id: {first}\n")],
    );
    assert!(again.contains(&format!("id: {first}\n")), "{again}");
}

/// A follower's stream over the Unix socket: sends `request`, then reads what comes.
struct Follower {
    s: std::os::unix::net::UnixStream,
    got: String,
}

impl Follower {
    fn open(sock: &std::path::Path, request: &str) -> Follower {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(request.as_bytes()).unwrap();
        Follower {
            s,
            got: String::new(),
        }
    }

    /// Reads until `done` holds for what came (or 30 s pass: heartbeats keep a stream busy,
    /// so the deadline is the whole read's, not each read's).
    fn until(&mut self, done: impl Fn(&str) -> bool) -> &str {
        use std::io::Read;
        let mut buf = [0u8; 8192];
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done(&self.got) && std::time::Instant::now() < end {
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.got.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        &self.got
    }
}

/// `(number, line)` of each line in the numbered events (an event holds a batch of lines,
/// numbered by its last).
fn numbered(sse: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for block in sse.split("\n\n") {
        let Some(id) = block
            .lines()
            .find_map(|l| l.strip_prefix("id: ")?.parse::<u64>().ok())
        else {
            continue;
        };
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        let first = id + 1 - data.len() as u64;
        out.extend(
            data.iter()
                .enumerate()
                .map(|(i, d)| (first + i as u64, (*d).to_owned())),
        );
    }
    out
}

/// The SSE rules of issue 35: a follower that comes back with Last-Event-ID gets exactly the
/// lines it missed; one too far behind is told how many it lost; 256 followers at once, then
/// 503 with Retry-After; followers that go mid-stream free their place.
#[test]
fn followers_resume_exactly_are_told_what_was_lost_and_are_limited() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[guardian]\necho = false\n\
         [services.count]\ncommand = [\"sh\", \"-c\", \"i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.01; done\"]\n\
         [services.flood]\ncommand = [\"python3\", \"-c\", \"import sys,time\\nwhile True:\\n  sys.stdout.write(('x'*99+'\\\\n')*2000); sys.stdout.flush(); time.sleep(0.1)\"]\n",
    );
    require("python3", "python3");
    let _g = sb.start(&cfg);
    let sock = sb.state_dir().join("guardian.sock");
    let follow = |path: &str, last: Option<u64>| {
        let resume = last
            .map(|l| format!("Last-Event-ID: {l}\r\n"))
            .unwrap_or_default();
        Follower::open(&sock, &format!("GET {path} HTTP/1.0\r\n{resume}\r\n"))
    };
    // Ten numbered lines, then away; back with the last id: the next lines, none twice, none
    // missing, and each the line that number had.
    let mut f = follow("/services/count/logs?follow=1&n=0", None);
    let first = numbered(f.until(|g| numbered(g).len() >= 10)).to_vec();
    assert!(first.len() >= 10, "{}", f.got);
    let (last, last_line) = first.last().cloned().unwrap();
    drop(f);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut f = follow("/services/count/logs?follow=1", Some(last));
    let again = numbered(f.until(|g| numbered(g).len() >= 60)).to_vec();
    assert!(!f.got.contains("event: lost"), "{}", f.got);
    assert_eq!(again[0].0, last + 1, "{}", f.got);
    let n = |line: &str| line.trim_start_matches("line-").parse::<u64>().unwrap();
    for (k, (id, line)) in again.iter().enumerate() {
        assert_eq!(*id, last + 1 + k as u64, "{}", f.got);
        assert_eq!(n(line), n(&last_line) + 1 + k as u64, "{}", f.got);
    }
    drop(f);
    // 200 KB a tenth of a second: back after a second, far more than the ring keeps.
    let mut f = follow("/services/flood/logs?follow=1&n=0", None);
    f.until(|g| numbered(g).len() >= 5);
    let seen = numbered(&f.got).last().unwrap().0;
    drop(f);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut f = follow("/services/flood/logs?follow=1", Some(seen));
    let got = f.until(|g| g.contains("event: lost") && numbered(g).len() > 5);
    let lost = got
        .split("\n\n")
        .find(|b| b.contains("event: lost"))
        .unwrap_or_else(|| panic!("no lost event: {got:.500}"));
    let count: u64 = lost
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|d| d.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(count > 1000, "{lost}");
    assert!(lost.contains("no longer kept"), "{lost}");
    let resumed_at = numbered(got)[0].0;
    assert_eq!(
        resumed_at,
        seen + 1 + count,
        "the lost count is exact: {lost}"
    );
    drop(f);
    // 256 followers at once; the 257th is refused with Retry-After; one that goes (mid-line:
    // it has read only part of its stream) frees its place.
    let mut all: Vec<Follower> = (0..256)
        .map(|_| {
            let mut f = follow("/services/count/logs?follow=1&n=1", None);
            f.until(|g| g.contains("data: "));
            f
        })
        .collect();
    assert!(all.iter().all(|f| f.got.starts_with("HTTP/1.0 200")));
    let (code, head, body) =
        http_with_head(Target::Unix(&sock), "GET", "/events?follow=1", &[], b"");
    assert_eq!(code, 503, "{head}{body}");
    assert!(head.to_lowercase().contains("retry-after: 5"), "{head}");
    assert!(body.contains("256 followers"), "{body}");
    all.truncate(255);
    assert!(wait_for(LONG, || {
        let mut f = follow("/services/count/logs?follow=1&n=1", None);
        f.until(|g| g.contains("data: ") || g.contains("503"))
            .starts_with("HTTP/1.0 200")
    }));
    drop(all);
    let (code, _) = http(Target::Unix(&sock), "GET", "/status", &[], b"");
    assert_eq!(code, 200);
}

/// Over TCP: a follow needs the token off loopback (401 without), and a client that never
/// reads is dropped once a write has waited 10 s, while guardian's memory stays flat and a
/// follower that reads keeps getting lines.
#[test]
fn off_loopback_follows_need_the_token_and_a_client_that_never_reads_is_dropped() {
    use std::io::Write;
    require("python3", "python3");
    let sb = Sandbox::new();
    let (section, addr) = sb.api_section("follow-token");
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let section = section.replace("127.0.0.1:", "0.0.0.0:") + "allow_plaintext = true\n";
    let cfg = sb.write(
        "g.toml",
        &format!(
            "{section}[guardian]\necho = false\n[services.flood]\ncommand = [\"python3\", \"-c\", \"import sys,time\\nwhile True:\\n  sys.stdout.write(('y'*99+'\\\\n')*2000); sys.stdout.flush(); time.sleep(0.1)\"]\n"
        ),
    );
    let g = sb.start(&cfg);
    let target = format!("127.0.0.1:{port}");
    assert!(wait_for(LONG, || http(
        Target::Tcp(&target),
        "GET",
        "/",
        &[],
        b""
    )
    .0 == 200));
    for path in ["/services/flood/logs?follow=1", "/events?follow=1"] {
        let (code, _) = http(Target::Tcp(&target), "GET", path, &[], b"");
        assert_eq!(code, 401, "{path} without the token");
    }
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/fd", g.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count()
    };
    let rss = || proc_status_kib(g.pid(), "VmRSS");
    // Warm up: one follower that reads, so the first stall is not the first follow.
    let request = "GET /services/flood/logs?follow=1&n=0 HTTP/1.0\r\nauthorization: Bearer follow-token\r\n\r\n";
    let mut reader = std::net::TcpStream::connect(&target).unwrap();
    reader.write_all(request.as_bytes()).unwrap();
    let mut reading = Vec::new();
    read_some(&mut reader, &mut reading, 100_000);
    assert!(String::from_utf8_lossy(&reading).starts_with("HTTP/1.0 200"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (before, rss_before) = (sockets(), rss());
    let mut stalled = std::net::TcpStream::connect(&target).unwrap();
    stalled.write_all(request.as_bytes()).unwrap();
    assert!(
        wait_for(LONG, || sockets() > before),
        "the stalled follower is connected"
    );
    // The reader keeps reading all along; the stalled one never does. Its socket goes within
    // the write deadline (10 s) and some slack.
    let mut dropped = false;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(45);
    while std::time::Instant::now() < end {
        read_some(&mut reader, &mut reading, 200_000);
        if sockets() <= before {
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "guardian still holds the follower that never reads"
    );
    let grew = rss().saturating_sub(rss_before);
    assert!(grew < 16 * 1024, "guardian's RSS grew by {grew} KiB");
    // The reader was never held up: it still gets lines.
    let had = reading.len();
    read_some(&mut reader, &mut reading, 100_000);
    assert!(reading.len() > had);
    drop(stalled);
}

/// Reads at least `n` more bytes (or for 30 s).
fn read_some(s: &mut std::net::TcpStream, into: &mut Vec<u8>, n: usize) {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let want = into.len() + n;
    let mut buf = [0u8; 65536];
    while into.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => into.extend_from_slice(&buf[..k]),
        }
    }
}

/// A guardian started again on the same state dir answers with the events its log already
/// held (read back beside the first start, never on its path), oldest first and before its
/// own; the file keeps them, and a line that is not an event is skipped.
#[test]
fn events_already_in_the_log_are_answered_before_this_runs_own() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    let earlier: String = (0..3)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({
                    "timestamp": 1.7e9 + f64::from(i), "timestamp_iso": "2023-11-14T22:13:20Z",
                    "service": "worker", "action": "exit", "trigger": "crash",
                    "health_status": null, "success": false, "duration_ms": null,
                    "error_message": null, "detail": format!("earlier {i}"),
                })
            )
        })
        .collect();
    std::fs::write(
        sb.state_dir().join("events.jsonl"),
        format!("{earlier}not an event\n"),
    )
    .unwrap();
    let (cfg, mut g) = sb.start_sleeping(&["worker"]);
    let events = || -> Vec<Value> {
        let out = sb.client(&cfg, &["events", "worker", "--json", "-n", "100"]);
        assert_eq!(out.code, 0, "{}", out.all());
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let seen = events();
    let details: Vec<&str> = seen.iter().filter_map(|e| e["detail"].as_str()).collect();
    assert_eq!(
        details.get(..3),
        Some(&["earlier 0", "earlier 1", "earlier 2"][..]),
        "{seen:?}"
    );
    assert!(
        seen[3..].iter().any(|e| e["action"] == "start"),
        "this run's start comes after them: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|e| e["detail"].as_str() == Some("earlier 0"))
            .count(),
        1,
        "read back once: {seen:?}"
    );
    let file = std::fs::read_to_string(sb.state_dir().join("events.jsonl")).unwrap();
    assert!(file.starts_with(&earlier), "{file}");
    assert_eq!(g.stop(), Some(0));
}
