//! SPEC §15, alerts: a real HTTP (and HTTPS) receiver on loopback checks each documented
//! shape, the signature as a receiver would verify it, retries, repeat_after, the exec sink,
//! `guardian alert test`, the bad inputs, and that a sink that hangs never delays a restart.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Got {
    /// The request line and headers, header names lowercased.
    head: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_owned())
        })
    }
}

/// A webhook receiver on loopback: records every request and answers with `status` (0:
/// never answers; 302: a redirect to itself).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        Self::serve(status, None)
    }

    /// Over TLS with this certificate and key (PEM).
    fn start_tls(cert: &str, key: &str) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::serve(200, Some(Arc::new(config)))
    }

    fn serve(status: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(status));
        let (g, st) = (got.clone(), status);
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (g, st, tls) = (g.clone(), st.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    match tls {
                        Some(c) => {
                            let s = rustls::ServerConnection::new(c).unwrap();
                            answer(rustls::StreamOwned::new(s, conn), &g, &st, port);
                        }
                        None => answer(conn, &g, &st, port),
                    }
                });
            }
        });
        Receiver { port, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The requests whose JSON body has this `event`.
    fn events(&self, event: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.json()["event"] == event)
            .collect()
    }
}

fn answer<S: Read + Write>(mut s: S, got: &Mutex<Vec<Got>>, status: &AtomicU16, port: u16) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if s.read_exact(&mut body).is_err() {
        return;
    }
    got.lock().unwrap().push(Got { head, body });
    let code = status.load(Ordering::Relaxed);
    if code == 0 {
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let extra = if code == 302 {
        format!("location: http://127.0.0.1:{port}/again\r\n")
    } else {
        String::new()
    };
    let _ = write!(
        s,
        "HTTP/1.1 {code} X\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = s.flush();
}

fn secret(sb: &Sandbox, key: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let f = sb.write("hook.secret", key);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

/// What a receiver does with X-Guardian-Signature: HMAC-SHA256 of the raw body with the
/// shared key, compared in constant time (ring's verify).
fn verify(key: &str, got: &Got) -> bool {
    let Some(sig) = got.header("x-guardian-signature") else {
        return false;
    };
    let Some(hex) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let tag: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    tag.is_some_and(|t| ring::hmac::verify(&k, &got.body, &t).is_ok())
}

fn state(sb: &Sandbox, cfg: &std::path::Path, name: &str) -> String {
    sb.service(cfg, name)["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A GET on guardian's Unix socket: (status code, body).
fn get(sb: &Sandbox, path: &str) -> (u16, String) {
    http(
        Target::Unix(&sb.state_dir().join("guardian.sock")),
        "GET",
        path,
        &[],
        b"",
    )
}

fn metrics(sb: &Sandbox) -> String {
    get(sb, "/metrics").1
}

/// The JSON format: guardian_started, then failed and recovered with every documented field,
/// each signed; the URL's credentials go as Basic auth and appear nowhere else.
#[test]
fn a_webhook_gets_signed_alerts_in_the_documented_shape() {
    let sb = Sandbox::new();
    let rx = Receiver::start(200);
    let key = "k3y-for-hmac-0123456789";
    let secret_file = secret(&sb, key);
    let url = format!("http://ops:pa55word@127.0.0.1:{}/hooks/guardian", rx.port);
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", \"[ -e ok ] && exec sleep 300; exit 3\"]\ncwd = \".\"\nrestart = \"no\"\n[alerts.ops]\nwebhook = \"{url}\"\nsecret_file = \"{}\"\n",
            secret_file.display()
        ),
    );
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || !rx.events("failed").is_empty()));
    // Each alert is its own delivery: a service that fails at once may be heard first.
    assert!(wait_for(LONG, || !rx.events("guardian_started").is_empty()));
    let failed = &rx.events("failed")[0];
    let j = failed.json();
    assert_eq!(j["service"], "a");
    assert_eq!(j["state"], "failed");
    assert_eq!(j["exit_code"], 3);
    assert_eq!(j["suppressed"], 0);
    assert_eq!(j["guardian_pid"], g.pid());
    assert!(j["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(
        j["message"]
            .as_str()
            .is_some_and(|m| m.contains("exit code 3")),
        "{j}"
    );
    let time = j["time"].as_str().unwrap();
    assert!(
        time.len() >= 20 && time.ends_with('Z') && &time[10..11] == "T",
        "{time}"
    );
    assert!(
        failed.head.starts_with("POST /hooks/guardian HTTP/1.1"),
        "{}",
        failed.head
    );
    assert_eq!(
        failed.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(
        verify(key, failed),
        "signature does not verify: {}",
        failed.head
    );
    assert!(!verify("another key", failed));
    assert_eq!(
        failed.header("authorization").as_deref(),
        Some("Basic b3BzOnBhNTV3b3Jk")
    );
    // Running again: recovered.
    sb.write("ok", "");
    assert_eq!(sb.client(&cfg, &["start", "a"]).code, 0);
    assert!(wait_for(LONG, || !rx.events("recovered").is_empty()));
    assert_eq!(rx.events("recovered")[0].json()["state"], "running");
    assert!(metrics(&sb).contains("guardian_alerts_total{sink=\"ops\",result=\"sent\"} 3"));
    // The credentials: nowhere but the Authorization header.
    let (_, status) = get(&sb, "/status");
    let (_, alerts) = get(&sb, "/alerts");
    assert!(alerts.contains("\"result\":\"sent\""), "{alerts}");
    let print = sb.run(&["validate", "--print", "toml", "-c", cfg.to_str().unwrap()]);
    assert!(print.stdout.contains("***@127.0.0.1"), "{}", print.stdout);
    assert_eq!(g.stop(), Some(0));
    assert!(wait_for(LONG, || !rx
        .events("guardian_stopping")
        .is_empty()));
    let events = std::fs::read_to_string(sb.state_dir().join("events.jsonl")).unwrap();
    for text in [&status, &alerts, &print.all(), &sb.stderr(), &events] {
        assert!(!text.contains("pa55word"), "the password shows in:\n{text}");
    }
}

/// `format = "slack"` and `format = "alertmanager"`: each shape as its receiver reads it;
/// Alertmanager's `recovered` resolves (same labels, endsAt) what it recovers from.
#[test]
fn slack_and_alertmanager_get_their_own_shapes() {
    let sb = Sandbox::new();
    let (slack, am) = (Receiver::start(200), Receiver::start(200));
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", \"[ -e ok ] && exec sleep 300; exit 3\"]\ncwd = \".\"\nrestart = \"no\"\n[alerts.chat]\nwebhook = \"{}\"\nformat = \"slack\"\nevents = [\"failed\"]\n[alerts.am]\nwebhook = \"{}\"\nformat = \"alertmanager\"\nevents = [\"failed\", \"recovered\"]\n",
            slack.url("/slack"),
            am.url("/api/v2/alerts")
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || !slack.got().is_empty() && !am.got().is_empty()));
    let text = slack.got()[0].json();
    let t = text["text"].as_str().unwrap();
    assert!(t.contains("a failed") && t.contains("exit code 3"), "{t}");
    assert_eq!(text.as_object().unwrap().len(), 1, "{text}");
    let fired = am.got()[0].json();
    let alert = &fired.as_array().unwrap()[0];
    assert_eq!(alert["labels"]["service"], "a");
    assert_eq!(alert["labels"]["event"], "failed");
    assert!(alert["labels"]["host"].is_string());
    assert!(alert["startsAt"].is_string());
    assert!(alert.get("endsAt").is_none(), "{alert}");
    assert!(am.got()[0].head.starts_with("POST /api/v2/alerts "));
    sb.write("ok", "");
    assert_eq!(sb.client(&cfg, &["start", "a"]).code, 0);
    assert!(wait_for(LONG, || am.got().len() >= 2));
    let resolved = am.got()[1].json();
    let r = &resolved.as_array().unwrap()[0];
    assert_eq!(r["labels"], alert["labels"], "the same alert, resolved");
    assert!(r["endsAt"].is_string(), "{r}");
    // Slack was not asked for recovered.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slack.got().len(), 1);
}

/// A receiver that answers 500 gets the first attempt and 3 retries, then the delivery is
/// counted failed; a redirect is not followed; a sink that never answers is cut at its
/// timeout. Meanwhile restarts keep their schedule: a sink never delays supervision.
#[test]
fn failing_sinks_are_retried_counted_and_never_delay_a_restart() {
    let sb = Sandbox::new();
    let (broken, moved, silent) = (
        Receiver::start(500),
        Receiver::start(302),
        Receiver::start(0),
    );
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", \"sleep 0.1; exit 1\"]\nbackoff = {{ initial_delay = \"100ms\", max_delay = \"100ms\", jitter = 0, max_retries = 1000 }}\n[alerts.broken]\nwebhook = \"{}\"\nevents = [\"guardian_started\"]\n[alerts.moved]\nwebhook = \"{}\"\nevents = [\"guardian_started\"]\n[alerts.silent]\nwebhook = \"{}\"\nevents = [\"restarted\"]\ntimeout = \"1s\"\nrepeat_after = \"1ms\"\n",
            broken.url("/"),
            moved.url("/"),
            silent.url("/")
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || metrics(&sb).contains(
        "guardian_alerts_total{sink=\"broken\",result=\"failed\"} 1"
    )));
    assert_eq!(broken.got().len(), 4, "one attempt and 3 retries");
    assert!(wait_for(LONG, || metrics(&sb).contains(
        "guardian_alerts_total{sink=\"moved\",result=\"failed\"} 1"
    )));
    let (_, alerts) = get(&sb, "/alerts");
    assert!(alerts.contains("HTTP 500 (after 3 retries)"), "{alerts}");
    assert!(alerts.contains("redirects are not followed"), "{alerts}");
    // The silent sink holds each alert for 1 s × 4 attempts; a restart every ~0.2 s goes on.
    assert!(wait_for(LONG, || sb.service(&cfg, "a")["restarts"]
        .as_u64()
        .is_some_and(|r| r >= 20)));
    assert!(silent.got().len() < 20, "{} attempts", silent.got().len());
    // Each of its attempts is cut at its timeout.
    assert!(wait_for(LONG, || {
        let (_, alerts) = get(&sb, "/alerts");
        alerts.contains("no answer within the timeout of 1s (after 3 retries)")
    }));
    // Its queue filled meanwhile: dropped, counted.
    assert!(wait_for(LONG, || metrics(&sb).contains(
        "guardian_alerts_total{sink=\"silent\",result=\"dropped\"}"
    )));
    assert_ne!(state(&sb, &cfg, "a"), "failed");
}

/// `repeat_after`: the same (service, event) once per window; the next one sent says how
/// many were held back.
#[test]
fn repeat_after_holds_back_and_says_how_many() {
    let sb = Sandbox::new();
    let rx = Receiver::start(200);
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", \"sleep 0.2; exit 1\"]\nbackoff = {{ initial_delay = \"100ms\", max_delay = \"100ms\", jitter = 0, max_retries = 1000 }}\n[alerts.ops]\nwebhook = \"{}\"\nevents = [\"restarted\"]\nrepeat_after = \"3s\"\n",
            rx.url("/")
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || rx.events("restarted").len() >= 2));
    let got = rx.events("restarted");
    assert_eq!(got[0].json()["suppressed"], 0);
    let held = got[1].json()["suppressed"].as_u64().unwrap();
    assert!(
        held >= 3,
        "{held} held back in 3 s of restarts every ~0.3 s"
    );
}

/// An exec sink: the JSON on stdin, GUARDIAN_ALERT_* in its environment.
#[test]
fn an_exec_sink_gets_the_alert_on_stdin_and_in_its_environment() {
    let sb = Sandbox::new();
    let out = sb.path().join("got.json");
    let env = sb.path().join("env.txt");
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sleep\", \"300\"]\n[alerts.page]\nexec = [\"sh\", \"-c\", \"cat > {}.tmp && mv {}.tmp {}; env | grep ^GUARDIAN_ALERT_ | sort > {}\"]\nevents = [\"guardian_started\"]\n",
            out.display(),
            out.display(),
            out.display(),
            env.display()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || out.exists()));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(j["event"], "guardian_started");
    assert!(wait_for(LONG, || std::fs::read_to_string(&env).is_ok_and(
        |t| t.contains("GUARDIAN_ALERT_EVENT=guardian_started")
    )));
    let vars = std::fs::read_to_string(&env).unwrap();
    assert!(vars.contains("GUARDIAN_ALERT_SERVICE=\n"), "{vars}");
    assert!(
        vars.contains("GUARDIAN_ALERT_MESSAGE=guardian started"),
        "{vars}"
    );
}

/// `guardian alert test NAME`: 0 when delivered (over HTTPS with a `ca_file` here, and to an
/// exec sink), 1 with the reason when not; an unknown sink is a usage error.
#[test]
fn alert_test_says_whether_the_sink_delivers() {
    let sb = Sandbox::new();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let tls = Receiver::start_tls(&ck.cert.pem(), &ck.signing_key.serialize_pem());
    let ca = sb.write("ca.pem", &ck.cert.pem());
    let broken = Receiver::start(503);
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sleep\", \"300\"]\n[alerts.secure]\nwebhook = \"https://127.0.0.1:{}/hook\"\nca_file = \"{}\"\n[alerts.down]\nwebhook = \"{}\"\ntimeout = \"1s\"\n[alerts.script]\nexec = [\"true\"]\n",
            tls.port,
            ca.display(),
            broken.url("/hook")
        ),
    );
    let c = cfg.to_str().unwrap();
    let ok = sb.run(&["alert", "test", "secure", "-c", c]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(ok.stdout.contains("delivered (HTTP 200)"), "{}", ok.stdout);
    assert_eq!(tls.events("test").len(), 1);
    let exec = sb.run(&["alert", "test", "script", "-c", c]);
    assert_eq!(exec.code, 0, "{}", exec.all());
    let down = sb.run(&["alert", "test", "down", "-c", c]);
    assert_eq!(down.code, 1, "{}", down.all());
    assert!(
        down.stderr.contains("alert sink down") && down.stderr.contains("HTTP 503"),
        "{}",
        down.stderr
    );
    assert_eq!(broken.got().len(), 4);
    let none = sb.run(&["alert", "test", "nope", "-c", c]);
    assert_eq!(none.code, 2, "{}", none.all());
    assert!(
        none.stderr.contains("sinks: down, script, secure"),
        "{}",
        none.stderr
    );
    // Without the CA file, the self-signed certificate is refused.
    let cfg2 = sb.write(
        "g2.toml",
        &format!(
            "[services.a]\ncommand = [\"sleep\", \"300\"]\n[alerts.secure]\nwebhook = \"https://127.0.0.1:{}/hook\"\ntimeout = \"1s\"\n",
            tls.port
        ),
    );
    let refused = sb.run(&["alert", "test", "secure", "-c", cfg2.to_str().unwrap()]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("TLS"), "{}", refused.stderr);
}

#[test]
fn bad_sinks_are_config_errors_naming_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let open_secret = sb.write("open.secret", "k");
    std::fs::set_permissions(&open_secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (sink, key, want) in [
        ("webhook = \"ftp://x/y\"", "webhook", "is not supported"),
        ("webhook = \"not a url\"", "webhook", "not a URL"),
        (
            "webhook = \"http://127.0.0.1:1/\"\nexec = [\"true\"]",
            "",
            "not both",
        ),
        (
            "exec = [\"/no/such/pager\"]",
            "exec",
            "is not an executable program",
        ),
        ("exec = [\"no-such-pager-xyz\"]", "exec", "on PATH"),
        (
            "webhook = \"http://127.0.0.1:1/\"\nevents = [\"faild\"]",
            "events",
            "did you mean `failed`?",
        ),
        (
            "webhook = \"http://127.0.0.1:1/\"\nservices = [\"ap\"]",
            "services",
            "did you mean `api`?",
        ),
        (
            &format!(
                "webhook = \"http://127.0.0.1:1/\"\nsecret_file = \"{}\"",
                open_secret.display()
            ),
            "secret_file",
            "readable by group or others",
        ),
        (
            "webhook = \"http://127.0.0.1:1/\"\nformat = \"teams\"",
            "format",
            "not a format",
        ),
    ] {
        let cfg = sb.write(
            "g.toml",
            &format!("[services.api]\ncommand = [\"sleep\", \"300\"]\n[alerts.ops]\n{sink}\n"),
        );
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{sink}: {}", out.all());
        let named = if key.is_empty() {
            "`alerts.ops`".to_owned()
        } else {
            format!("`alerts.ops.{key}`")
        };
        assert!(
            out.stderr.contains(&named) && out.stderr.contains(want),
            "{sink}: want {named} and {want}:\n{}",
            out.stderr
        );
    }
}

/// contrib/: the Prometheus rules pass `promtool check rules` and their unit tests
/// (`promtool test rules`), and every metric the rules and the Grafana dashboard use is one
/// a running guardian serves.
#[test]
fn the_prometheus_rules_and_the_grafana_dashboard_use_what_guardian_serves() {
    let promtool = require("promtool", "prometheus");
    let dir = repo_file("contrib/prometheus");
    for args in [
        ["check", "rules", "guardian.rules.yml"],
        ["test", "rules", "guardian.rules.test.yml"],
    ] {
        let out = output(
            std::process::Command::new(&promtool)
                .args(args)
                .current_dir(&dir),
        );
        assert_eq!(out.code, 0, "promtool {args:?}: {}", out.all());
        assert!(out.all().contains("SUCCESS"), "{}", out.all());
    }
    // What a guardian with a TCP API (auth failures), a breaker, checks and a sink serves.
    let sb = Sandbox::new();
    let rx = Receiver::start(200);
    let (api, _) = sb.api_section("contrib-token-123");
    let cfg = sb.write(
        "g.toml",
        &format!(
            "{api}[services.a]\ncommand = [\"sleep\", \"300\"]\n[services.a.health.resources]\nmemory_mb = {{ warning = 1000, critical = 2000 }}\n[services.a.health]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[alerts.ops]\nwebhook = \"{}\"\n",
            rx.url("/")
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || !rx.events("guardian_started").is_empty()));
    assert!(wait_for(LONG, || metrics(&sb)
        .lines()
        .any(|l| l.starts_with("guardian_service_cpu_percent{"))));
    let served: std::collections::BTreeSet<String> = metrics(&sb)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect();
    let rules = std::fs::read_to_string(dir.join("guardian.rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(repo_file("contrib/grafana/guardian.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = doc["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Services up",
        "Restarts",
        "Health",
        "Circuit breaker",
        "Recovery actions",
        "API auth failures",
        "Alerts",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "no {want} panel: {titles:?}"
        );
    }
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .chain(
            rules
                .lines()
                .filter_map(|l| l.trim().strip_prefix("expr:").map(str::to_owned)),
        )
        .collect();
    assert!(exprs.len() >= 14, "{exprs:?}");
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("guardian_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                served.contains(&name),
                "`{name}` (in `{expr}`) is not served; served: {served:?}"
            );
            rest = &rest[i + name.len()..];
        }
    }
}

/// Sinks are reloadable: after a reload the next alert goes to the new webhook. A refused
/// reload is itself an alert, which never quotes the config (it may hold secrets).
#[test]
fn sinks_follow_a_reload_and_a_refused_reload_is_alerted_without_the_config() {
    let sb = Sandbox::new();
    let (old, new) = (Receiver::start(200), Receiver::start(200));
    let write = |url: &str, extra: &str| {
        sb.write(
            "g.toml",
            &format!(
                "[guardian]\nwatch_config = false\n[services.a]\ncommand = [\"sleep\", \"300\"]\nenv = {{ TOKEN = \"hunter2-secret\" }}\n{extra}\n[alerts.ops]\nwebhook = \"{url}\"\nevents = [\"reload_refused\"]\n"
            ),
        )
    };
    let cfg = write(&old.url("/"), "");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "a") == "running"));
    write(&new.url("/"), "");
    assert_eq!(sb.client(&cfg, &["reload"]).code, 0);
    write(&new.url("/"), "restart = \"sometimes\"");
    assert_ne!(sb.client(&cfg, &["reload"]).code, 0);
    assert!(wait_for(LONG, || !new.events("reload_refused").is_empty()));
    assert!(old.got().is_empty(), "the old sink still gets alerts");
    let body = String::from_utf8_lossy(&new.got()[0].body).into_owned();
    assert!(body.contains("refused"), "{body}");
    assert!(
        !body.contains("hunter2") && !body.contains("sometimes"),
        "{body}"
    );
}
