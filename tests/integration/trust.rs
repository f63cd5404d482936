//! Trust (issues 27 and 34): no input panics guardian, a broken config is named where it is
//! broken, and secrets stay out of every output while facts stay in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

/// Configs whose typo sits next to a multi-byte character, and where each error points.
const TYPOS: &[(&str, &str, &str)] = &[
    (
        "port.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nport = é\n",
        ":3:8: error:",
    ),
    (
        "key.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\néstartup_timeout = \"15s\"\n",
        ":3:1: error:",
    ),
    (
        "emoji.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"] 🦀\n",
        ":2:28: error:",
    ),
    (
        "port.json",
        "{\"services\": {\"a\": {\"command\": [\"sleep\", \"300\"], \"port\": é}}}",
        ":1:58: error:",
    ),
];

fn assert_positioned(out: &Output, file: &Path, at: &str) {
    let want = format!("{}{at}", file.display());
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(&want),
        "want {want} in:\n{}",
        out.stderr
    );
    assert!(!out.all().contains("panicked"), "{}", out.all());
}

#[test]
fn validate_and_run_name_a_typo_next_to_a_multibyte_character_at_its_position() {
    let sb = Sandbox::new();
    for (name, text, at) in TYPOS {
        let file = sb.write(name, text);
        let f = file.to_str().unwrap();
        assert_positioned(&sb.run(&["validate", "-c", f]), &file, at);
        let mut run = sb.run_cmd(&file);
        assert_positioned(&output(&mut run), &file, at);
    }
}

#[test]
fn a_reload_of_a_typo_next_to_a_multibyte_character_is_refused_with_its_position() {
    let sb = Sandbox::new();
    let (cfg, _g) = sb.start_sleeping(&["a"]);
    let pid = sb.pid_of(&cfg, "a").unwrap();
    for (name, text, at) in TYPOS.iter().filter(|t| t.0.ends_with(".toml")) {
        std::fs::write(&cfg, text).unwrap();
        let out = sb.client(&cfg, &["reload"]);
        assert_positioned(&out, &cfg, at);
        assert_eq!(
            sb.pid_of(&cfg, "a"),
            Some(pid),
            "{name}: the service was touched"
        );
    }
    // The status shows the refusal with its position, not a panic.
    let doc = sb.status_json(&cfg);
    let shown = doc.to_string();
    assert!(!shown.contains("panicked"), "{shown}");
}

/// A guardian on `./guardian.toml` (found by discovery) whose config says where its state
/// dir is, so that client commands without `--state-dir` would find it.
fn discovered(sb: &Sandbox) -> (PathBuf, GuardianUnderTest) {
    let cfg = sb.write(
        "guardian.toml",
        &format!(
            "[guardian]\nstate_dir = \"{}\"\nwatch_config = false\n[services.a]\ncommand = [\"sh\", \"-c\", \"echo hello; exec sleep 300\"]\n",
            sb.state_dir().display()
        ),
    );
    let g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "a").is_some()));
    (cfg, g)
}

#[test]
fn client_commands_with_a_config_that_does_not_load_name_the_config_error() {
    let sb = Sandbox::new();
    let (cfg, _g) = discovered(&sb);
    std::fs::write(
        &cfg,
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nport = é\n",
    )
    .unwrap();
    let commands: &[&[&str]] = &[
        &["status"],
        &["status", "a"],
        &["stop", "a"],
        &["start", "a"],
        &["restart", "a"],
        &["reload"],
        &["events", "a"],
        &["logs", "a"],
        &["top"],
        &["check-running", "a"],
        &["doctor"],
    ];
    for args in commands {
        let out = sb.run(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.all().contains("guardian.toml:3:8: error"),
            "{args:?}: {}",
            out.all()
        );
        assert!(
            !out.all().contains("no guardian is running"),
            "{args:?}: {}",
            out.all()
        );
    }
    // The guardian runs on: nothing above touched the service.
    let dir = sb.state_dir();
    let d = dir.to_str().unwrap();
    let out = sb.run(&["--state-dir", d, "status", "a"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("running"), "{}", out.stdout);
}

#[test]
fn client_commands_with_state_dir_do_not_need_the_config() {
    let sb = Sandbox::new();
    let (cfg, _g) = discovered(&sb);
    let pid = sb.pid_of(&cfg, "a").unwrap();
    std::fs::write(&cfg, "this is { not a config").unwrap();
    let dir = sb.state_dir();
    let d = dir.to_str().unwrap();
    for args in [
        &["status"][..],
        &["status", "a"],
        &["events", "a"],
        &["logs", "a"],
    ] {
        let mut all = vec!["--state-dir", d];
        all.extend_from_slice(args);
        let out = sb.run(&all);
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
    }
    let out = sb.run(&["--state-dir", d, "restart", "a"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb
        .run(&["--state-dir", d, "status", "a", "--format", "{pid}"])
        .stdout
        .trim()
        .parse::<i32>()
        .is_ok_and(|p| p != pid)));
}

#[test]
fn a_variable_that_is_not_utf8_is_named_and_refused() {
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nenv_prefix = \"SOCKETIO\"\n",
    );
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    for var in ["GUARDIAN_GUARDIAN__LOG_LEVEL", "SOCKETIO_MAX_RETRIES"] {
        for cmd in ["validate", "run"] {
            let mut c = sb.cmd();
            c.args([cmd, "-c", cfg.to_str().unwrap()])
                .args(["--state-dir", sb.state_dir().to_str().unwrap()])
                .env(var, bad);
            let out = output(&mut c);
            assert_eq!(out.code, 2, "{var} {cmd}: {}", out.all());
            assert!(
                out.stderr.contains(&format!(
                    "environment variable {var}: its value is not UTF-8"
                )),
                "{var} {cmd}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn an_env_file_line_that_is_not_utf8_is_named_with_its_line() {
    let sb = Sandbox::new();
    let env = sb.path().join("app.env");
    std::fs::write(&env, b"# settings\nA=1\nB=caf\xe9\n").unwrap();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nenv_file = [\"app.env\"]\n",
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("app.env:3: this line is not UTF-8 text"),
        "{}",
        out.stderr
    );
}

/// The quick start's own config, on free ports, with the reference server built here.
fn quick_start(sb: &Sandbox) -> (PathBuf, u16) {
    let (port, api) = (free_port(), free_port());
    let text = std::fs::read_to_string(repo_file("examples/guardian.toml"))
        .unwrap()
        .replace(
            "target/release/examples/socketio_server",
            example_bin("socketio_server").to_str().unwrap(),
        )
        .replace("port = 8765", &format!("port = {port}"))
        .replace("tcp://127.0.0.1:8765", &format!("tcp://127.0.0.1:{port}"))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{api}"));
    (sb.write("guardian.toml", &text), port)
}

#[test]
fn issue_34_the_quick_starts_events_show_its_port() {
    let sb = Sandbox::new();
    let (cfg, port) = quick_start(&sb);
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "socketio").is_some()));
    let pid = sb.pid_of(&cfg, "socketio").unwrap();
    kill(pid, Signal::SIGKILL);
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "socketio")
        .is_some_and(|p| p != pid)));
    let starts: Vec<String> = sb
        .events("socketio")
        .iter()
        .filter(|e| e["action"] == "start")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    for s in &starts {
        assert!(
            s.ends_with(&format!("--host 127.0.0.1 --port {port}")),
            "{s}"
        );
        assert!(!s.contains("***"), "{s}");
    }
    let out = sb.client(&cfg, &["status", "socketio"]);
    assert!(
        out.stdout.contains(&format!("--port {port}")),
        "{}",
        out.stdout
    );
    // /status shows the value `{port}` put in the environment: a fact, not a secret.
    let svc = sb.service(&cfg, "socketio");
    assert_eq!(svc["env"]["SOCKETIO_PORT"], port.to_string(), "{svc}");
}

#[test]
fn issue_34_secrets_stay_masked_while_facts_and_public_keys_show() {
    let sb = Sandbox::new();
    let planted = "Pl4nted-S3cret-Value";
    let token = "T0ken-From-Env-Table";
    sb.write("db.env", &format!("DB_PASSWORD={planted}\nWORKERS=80\n"));
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"[services.a]
command = ["sh", "-c", "echo up; exec sleep 300", "--password={planted}", "--token", "{token}", "--workers", "8080", "--data", "{{state_dir}}", "--log", "debug"]
env_file = ["db.env"]
env = {{ API_TOKEN = "{token}", LOG_LEVEL = "debug", DATA = "{{state_dir}}" }}
public_env = ["LOG_LEVEL"]
"#
        ),
    );
    // validate --print: the env table's secret is masked, the public key and the
    // placeholder show; env_file values are never printed.
    for format in ["toml", "json"] {
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap(), "--print", format]);
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(!out.stdout.contains(token), "{}", out.stdout);
        assert!(!out.stdout.contains(planted), "{}", out.stdout);
        assert!(out.stdout.contains("***"), "{}", out.stdout);
        assert!(out.stdout.contains("debug"), "{}", out.stdout);
        assert!(out.stdout.contains("{state_dir}"), "{}", out.stdout);
    }
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "a").is_some()));
    let sock = sb.state_dir().join("guardian.sock");
    for path in ["/status", "/events", "/services/a/events", "/diagnostics"] {
        let (code, body) = http(Target::Unix(&sock), "GET", path, &[], b"");
        assert_eq!(code, 200, "{path}");
        assert!(!body.contains(planted), "{path}: {body}");
        assert!(!body.contains(token), "{path}: {body}");
    }
    let start = sb
        .events("a")
        .into_iter()
        .find(|e| e["action"] == "start")
        .expect("a start event");
    let shown = start["detail"].as_str().unwrap();
    assert!(
        shown.ends_with(&format!(
            "--password=*** --token *** --workers 8080 --data {} --log debug",
            sb.state_dir().display()
        )),
        "{shown}"
    );
    let svc = sb.service(&cfg, "a");
    assert_eq!(svc["env"]["LOG_LEVEL"], "debug", "{svc}");
    assert_eq!(
        svc["env"]["DATA"],
        sb.state_dir().display().to_string(),
        "{svc}"
    );
    assert!(svc["env"].get("API_TOKEN").is_none(), "{svc}");
    assert!(svc["env"].get("DB_PASSWORD").is_none(), "{svc}");
    let events = std::fs::read_to_string(sb.state_dir().join("events.jsonl")).unwrap();
    assert!(
        !events.contains(planted) && !events.contains(token),
        "{events}"
    );
    let out = sb.client(&cfg, &["status", "a"]);
    assert!(!out.all().contains(planted) && !out.all().contains(token));
    assert!(!sb.stderr().contains(planted) && !sb.stderr().contains(token));
}

#[test]
fn public_env_naming_an_unknown_key_is_a_config_error() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nenv = { LOG_LEVEL = \"x\" }\npublic_env = [\"LOG_LEVLE\"]\n",
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("g.toml:4:")
            && out
                .stderr
                .contains("`LOG_LEVLE` is not a key of `env` (it has: LOG_LEVEL)"),
        "{}",
        out.stderr
    );
}
