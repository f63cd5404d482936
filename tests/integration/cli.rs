//! The config surface: `validate`, `schema`, `init`, exit codes and the errors of bad input.

use std::time::Duration;

use crate::support::*;

fn assert_fails(out: &Output, code: i32, wants: &[&str]) {
    assert_eq!(out.code, code, "exit code; output:\n{}", out.all());
    for w in wants {
        assert!(
            out.stderr.contains(w),
            "stderr lacks {w:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Os {"), "debug dump in {}", out.stderr);
}

const MIN: &str = "[services.socketio]\ncommand = [\"server\", \"--port\", \"{port}\"]\nenv_prefix = \"SOCKETIO\"\nport = 8765\n";

#[test]
fn the_example_config_is_valid() {
    let sb = Sandbox::new();
    let example = repo_file("examples/guardian.toml");
    let out = sb.run(&["validate", "-c", example.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("config is valid: 1 service (socketio)"),
        "{}",
        out.stdout
    );
}

#[test]
fn print_json_shows_overrides_from_both_env_forms_and_flags() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", MIN);
    let out = sb.run_with(
        &[
            "validate",
            "-c",
            cfg.to_str().unwrap(),
            "--print",
            "json",
            "--log-level",
            "warn",
        ],
        &[
            ("SOCKETIO_MAX_RETRIES", "20"),
            ("SOCKETIO_INITIAL_RETRY_DELAY", "1.5"),
            ("SOCKETIO_PORT", "9001"),
            ("GUARDIAN_SERVICES__SOCKETIO__BACKOFF__FACTOR", "3.0"),
            ("GUARDIAN_SERVICES__SOCKETIO__ENV__TOKEN", "12345"),
            ("GUARDIAN_CONFIG", "/ignored/when/-c/is/given.toml"),
            ("GUARDIAN_LOG", "guardian=debug"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let s = &v["services"]["socketio"];
    assert_eq!(s["backoff"]["max_retries"], 20);
    assert_eq!(s["backoff"]["initial_delay"], "1s 500ms");
    assert_eq!(s["backoff"]["factor"], 3.0);
    assert_eq!(s["port"], 9001);
    // The override reached `env`; its value is a secret, so the print masks it (SPEC §12).
    assert_eq!(s["env"]["TOKEN"], "***");
    assert!(!out.stdout.contains("12345"), "{}", out.stdout);
    assert_eq!(v["guardian"]["log_level"], "warn");
}

#[test]
fn print_toml_round_trips_through_validate() {
    let sb = Sandbox::new();
    let example = repo_file("examples/guardian.toml");
    let out = sb.run(&[
        "validate",
        "-c",
        example.to_str().unwrap(),
        "--print",
        "toml",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let printed = sb.write("printed.toml", &out.stdout);
    let again = sb.run(&[
        "validate",
        "-c",
        printed.to_str().unwrap(),
        "--print",
        "toml",
    ]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.stdout, out.stdout);
}

#[test]
fn later_files_override_earlier_ones_and_flat_env_is_below_guardian_env() {
    let sb = Sandbox::new();
    let a = sb.write("a.toml", MIN);
    let b = sb.write(
        "b.json",
        r#"{"services": {"socketio": {"backoff": {"max_retries": 4}}}}"#,
    );
    let out = sb.run_with(
        &[
            "validate",
            "-c",
            a.to_str().unwrap(),
            "-c",
            b.to_str().unwrap(),
            "--print",
            "json",
        ],
        &[
            ("SOCKETIO_UNHEALTHY_THRESHOLD", "7"),
            ("SOCKETIO_HEALTH_CHECK_INTERVAL", "10"),
            (
                "GUARDIAN_SERVICES__SOCKETIO__HEALTH__UNHEALTHY_THRESHOLD",
                "9",
            ),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["services"]["socketio"]["backoff"]["max_retries"], 4);
    assert_eq!(
        v["services"]["socketio"]["health"]["unhealthy_threshold"],
        9
    );
    assert_eq!(v["services"]["socketio"]["health"]["interval"], "10s");
}

#[test]
fn explain_names_every_origin_and_spells_out_the_schedule() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", MIN);
    let out = sb.run_with(
        &[
            "validate",
            "-c",
            cfg.to_str().unwrap(),
            "--explain",
            "--state-dir",
            "/tmp/x",
        ],
        &[
            ("SOCKETIO_MAX_RETRIES", "3"),
            ("GUARDIAN_SERVICES__SOCKETIO__BACKOFF__JITTER", "0"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let o = &out.stdout;
    assert!(
        o.contains("services.socketio.backoff.max_retries")
            && o.contains("from environment variable SOCKETIO_MAX_RETRIES"),
        "{o}"
    );
    assert!(
        o.contains("from environment variable GUARDIAN_SERVICES__SOCKETIO__BACKOFF__JITTER"),
        "{o}"
    );
    assert!(
        o.contains("guardian.state_dir") && o.contains("from command-line flag --state-dir"),
        "{o}"
    );
    assert!(
        o.contains("services.socketio.command") && o.contains("g.toml"),
        "{o}"
    );
    assert!(
        o.contains("retry 1: after 1s\n") && o.contains("retry 3: after 4s\n"),
        "{o}"
    );
    assert!(
        o.contains("gives up after 3 consecutive failed starts"),
        "{o}"
    );
    assert!(
        o.contains("breaker opens after 5 failed recovery actions, stays open 5m"),
        "{o}"
    );
}

#[test]
fn config_discovery_uses_guardian_config_then_the_current_folder() {
    let sb = Sandbox::new();
    let out = sb.run(&["validate"]);
    assert_fails(&out, 2, &["no config file found", "guardian init"]);
    // Without ./guardian.toml: $XDG_CONFIG_HOME/guardian/guardian.toml, else
    // ~/.config/guardian/guardian.toml.
    let home_cfg = sb.path().join(".config/guardian");
    std::fs::create_dir_all(&home_cfg).unwrap();
    std::fs::write(
        home_cfg.join("guardian.toml"),
        "[services.home]\ncommand=[\"x\"]\n",
    )
    .unwrap();
    let out = sb.run(&["validate"]);
    assert!(out.stdout.contains("(home)"), "{}", out.all());
    let xdg = sb.path().join("xdg");
    std::fs::create_dir_all(xdg.join("guardian")).unwrap();
    std::fs::write(
        xdg.join("guardian/guardian.toml"),
        "[services.xdg]\ncommand=[\"x\"]\n",
    )
    .unwrap();
    let out = sb.run_with(&["validate"], &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
    assert!(out.stdout.contains("(xdg)"), "{}", out.all());
    sb.write("guardian.toml", MIN);
    assert_eq!(sb.run(&["validate"]).code, 0);
    let other = sb.write("other.toml", "[services.other]\ncommand=[\"x\"]\n");
    let out = sb.run_with(
        &["validate"],
        &[("GUARDIAN_CONFIG", other.to_str().unwrap())],
    );
    assert!(out.stdout.contains("(other)"), "{}", out.all());
}

#[test]
fn bad_input_exits_2_with_one_clear_message() {
    let sb = Sandbox::new();
    let table: &[(&str, &str, &[&str])] = &[
        ("empty.toml", "", &["empty.toml", "the file is empty"]),
        (
            "syntax.toml",
            "[services.a\ncommand=[\"x\"]\n",
            &["syntax.toml:1:", "invalid table header"],
        ),
        (
            "comma.json",
            "{\"services\": {\"a\": {\"command\": [\"x\"],}}}",
            &["comma.json:1:", "trailing comma"],
        ),
        (
            "type.toml",
            "[services.a]\ncommand=[\"x\"]\n[services.a.backoff]\nmax_retries = \"ten\"\n",
            &[
                "type.toml:4:",
                "services.a.backoff.max_retries",
                "expected u32",
            ],
        ),
        (
            "negative.toml",
            "[services.a]\ncommand=[\"x\"]\nshutdown_timeout = -1\n",
            &["negative.toml:3:", "cannot be negative"],
        ),
        (
            "top.toml",
            "bogus = 1\n[services.a]\ncommand=[\"x\"]\n",
            &["unknown key `bogus` in the top level"],
        ),
        (
            "guardian.toml",
            "[guardian]\nlog_lvl = \"x\"\n[services.a]\ncommand=[\"x\"]\n",
            &[
                "guardian.toml:2:1: error:",
                "unknown key `log_lvl` in [guardian]; did you mean `log_level`?",
            ],
        ),
        (
            "svc.toml",
            "[services.a]\ncommand=[\"x\"]\ncomand=[\"y\"]\n",
            &["unknown key `comand` in [services.a]; did you mean `command`?"],
        ),
        (
            "nested.toml",
            "[services.socketio]\ncommand=[\"x\"]\n[services.socketio.backoff]\ninitial_delay = \"1s\"\nmax_retry = 3\n",
            &[
                "nested.toml:5:",
                "unknown key `max_retry` in [services.socketio.backoff]; did you mean `max_retries`?",
            ],
        ),
        (
            "check.json",
            r#"{"services": {"a": {"command": ["x"], "port": 1, "health": {"checks": [{"kind": "http", "pth": "/"}]}}}}"#,
            &["unknown key `pth`", "did you mean `path`?"],
        ),
        (
            "nocmd.toml",
            "[services.a]\nport = 80\n",
            &["`services.a.command`", "is required"],
        ),
        (
            "upper.toml",
            "[services.Web]\ncommand=[\"x\"]\n",
            &["service name `Web` must be", "e.g. `web`"],
        ),
        ("x.yaml", "a: 1", &["must end in .toml or .json"]),
    ];
    for (name, text, wants) in table {
        let p = sb.write(name, text);
        let out = sb.run(&["validate", "-c", p.to_str().unwrap()]);
        assert_fails(&out, 2, wants);
        assert_eq!(
            out.stderr.matches("error:").count(),
            1,
            "{name}: one message:\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_missing_or_unreadable_file_is_named() {
    let sb = Sandbox::new();
    let out = sb.run(&["validate", "-c", "nope.toml"]);
    assert_fails(
        &out,
        2,
        &["cannot read config file nope.toml", "no such file"],
    );
    let p = sb.write("secret.toml", MIN);
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    if std::fs::read(&p).is_err() {
        // Root reads anything; the check is meaningful only for other users.
        let out = sb.run(&["validate", "-c", p.to_str().unwrap()]);
        assert_fails(&out, 2, &["secret.toml", "permission denied"]);
    }
}

#[test]
fn bad_environment_values_name_the_variable() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", MIN);
    let c = cfg.to_str().unwrap();
    let table: &[(&str, &str, &[&str])] = &[
        (
            "SOCKETIO_MAX_RETRIES",
            "ten",
            &[
                "environment variable SOCKETIO_MAX_RETRIES",
                "`ten` is not a whole number",
            ],
        ),
        (
            "SOCKETIO_STARTUP_TIMEOUT",
            "-3",
            &["SOCKETIO_STARTUP_TIMEOUT", "cannot be negative"],
        ),
        ("SOCKETIO_PORT", "99999", &["SOCKETIO_PORT", "not a port"]),
        (
            "SOCKETIO_METRICS_ENABLED",
            "maybe",
            &["SOCKETIO_METRICS_ENABLED", "boolean"],
        ),
        (
            "GUARDIAN_SERVICES__SOCKETIO__BACKOFF__FACTOR",
            "fast",
            &[
                "environment variable GUARDIAN_SERVICES__SOCKETIO__BACKOFF__FACTOR",
                "services.socketio.backoff.factor",
            ],
        ),
        (
            "GUARDIAN_SERVICES__SOCKETIO__BACKOF__FACTOR",
            "2",
            &[
                "GUARDIAN_SERVICES__SOCKETIO__BACKOF__FACTOR",
                "did you mean `backoff`?",
            ],
        ),
        (
            "GUARDIAN_SERVICES__SOCKETIO__BACKOFF__FACTOR",
            "0.5",
            &[
                "`services.socketio.backoff.factor` (from environment variable GUARDIAN_SERVICES__SOCKETIO__BACKOFF__FACTOR)",
                "at least 1.0",
            ],
        ),
    ];
    for (var, value, wants) in table {
        let out = sb.run_with(&["validate", "-c", c], &[(var, value)]);
        assert_fails(&out, 2, wants);
    }
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let sb = Sandbox::new();
    let p = sb.write(
        "many.toml",
        "[guardian.api]\nlisten = \"0.0.0.0:9090\"\n[services.a]\ncommand = [\"a\"]\nport = 80\nport_range = [1, 2]\n[services.a.backoff]\nfactor = 0.5\njitter = 2\n[services.b]\ncommand = [\"b\", \"{nope}\"]\nport = 80\n[services.b.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n",
    );
    let out = sb.run(&["validate", "-c", p.to_str().unwrap()]);
    assert_fails(
        &out,
        2,
        &[
            "6 problems",
            "token_file",
            "either `port` or `port_range`",
            "factor",
            "jitter",
            "{nope}",
            "also the port of service `a`",
        ],
    );
}

#[test]
fn a_health_interval_alone_or_a_timeout_longer_than_it_is_valid() {
    let sb = Sandbox::new();
    let p = sb.write(
        "h.toml",
        "[services.a]\ncommand = [\"a\"]\n[services.a.health]\ninterval = \"500ms\"\nchecks = [{ kind = \"exec\", command = [\"true\"] }]\n[services.b]\ncommand = [\"b\"]\n[services.b.health]\ninterval = \"1s\"\ntimeout = \"3s\"\nchecks = [{ kind = \"exec\", command = [\"true\"] }]\n",
    );
    let out = sb.run(&["validate", "-c", p.to_str().unwrap(), "--explain"]);
    let text = &out.stdout;
    assert_eq!(out.code, 0, "{text}{}", out.stderr);
    assert!(
        text.contains("every 500ms, each check given 500ms; rounds never overlap"),
        "{text}"
    );
    assert!(
        text.contains("every 1s, each check given 3s (longer than the interval)"),
        "{text}"
    );
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    use rand::{RngExt, SeedableRng};
    let sb = Sandbox::new();
    let example = std::fs::read(repo_file("examples/guardian.toml")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9a2d);
    for i in 0..120 {
        let mut bytes = if i % 3 == 0 {
            (0..rng.random_range(0..400))
                .map(|_| rng.random::<u8>())
                .collect()
        } else {
            example.clone()
        };
        for _ in 0..rng.random_range(1..8) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[at] = rng.random(),
                1 => {
                    bytes.remove(at);
                }
                _ => {
                    let alphabet = b"[]{}\"=,.:\n-0";
                    bytes.insert(at, alphabet[rng.random_range(0..alphabet.len())])
                }
            }
        }
        for ext in ["toml", "json"] {
            let p = sb.path().join(format!("fuzz.{ext}"));
            std::fs::write(&p, &bytes).unwrap();
            let out = sb.run(&["validate", "-c", p.to_str().unwrap()]);
            assert!(
                out.code == 0 || out.code == 2,
                "exit {} for input {i}: {}",
                out.code,
                out.stderr
            );
            assert!(
                !out.stderr.contains("panicked"),
                "panic on input {i}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn schema_command_matches_the_committed_schema() {
    let sb = Sandbox::new();
    let out = sb.run(&["schema"]);
    assert_eq!(out.code, 0);
    let committed = std::fs::read_to_string(repo_file("schemas/guardian.schema.json")).unwrap();
    assert_eq!(
        out.stdout.trim(),
        committed.trim(),
        "schemas/guardian.schema.json drifted: run `cargo run -- schema > schemas/guardian.schema.json`"
    );
}

#[test]
fn examples_load_equal_and_validate_against_the_schema() {
    let opts = |f: &str| guardian::config::LoadOptions {
        files: vec![repo_file(f)],
        ..Default::default()
    };
    let toml = guardian::config::load(&opts("examples/guardian.toml"))
        .expect("toml loads")
        .config;
    let json = guardian::config::load(&opts("examples/guardian.json"))
        .expect("json loads")
        .config;
    assert_eq!(toml, json);
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("schemas/guardian.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let as_json: serde_json::Value =
        toml::from_str(&std::fs::read_to_string(repo_file("examples/guardian.toml")).unwrap())
            .unwrap();
    let from_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("examples/guardian.json")).unwrap(),
    )
    .unwrap();
    for doc in [as_json, from_json] {
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
    let bad = serde_json::json!({"services": {"a": {"command": ["x"], "portt": 1}}});
    assert!(
        !validator.is_valid(&bad),
        "the schema must refuse unknown keys"
    );
}

#[test]
fn init_writes_a_valid_starter_and_never_overwrites() {
    let sb = Sandbox::new();
    let out = sb.run(&["init"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(sb.run(&["validate"]).code, 0);
    let again = sb.run(&["init"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[test]
fn init_starters_validate_and_the_default_one_runs_a_healthy_service() {
    let sb = Sandbox::new();
    let out = sb.run(&["init", "mine.toml", "--name", "api", "--", "sleep", "300"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let text = std::fs::read_to_string(sb.path().join("mine.toml")).unwrap();
    assert!(
        text.starts_with("#:schema ./guardian.schema.json\n"),
        "{text}"
    );
    assert!(
        text.contains("[services.api]\ncommand = [\"sleep\", \"300\"]"),
        "{text}"
    );
    assert_eq!(sb.run(&["validate", "-c", "mine.toml"]).code, 0);
    let out = sb.run(&["init", "ex.toml", "--example", "socketio"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(sb.run(&["validate", "-c", "ex.toml"]).code, 0);
    assert_eq!(sb.run(&["init", "bad.toml", "--name", "Bad-Name"]).code, 1);

    // The default starter (a Python web server with an http check) runs as is.
    require("python3", "python3");
    assert_eq!(sb.run(&["init"]).code, 0);
    let cfg = sb.path().join("guardian.toml");
    let _g = sb.start(&cfg);
    assert!(
        wait_for(
            Duration::from_secs(60),
            || sb.service(&cfg, "web")["health"] == "healthy"
        ),
        "{}",
        sb.stderr()
    );
    // Scripts read one field without grep.
    let dir = sb.state_dir();
    let pid = sb.run(&[
        "status",
        "web",
        "--format",
        "{pid}",
        "-c",
        cfg.to_str().unwrap(),
        "--state-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(pid.code, 0, "{}", pid.all());
    assert_eq!(
        pid.stdout.trim().parse::<i32>().ok(),
        sb.pid_of(&cfg, "web"),
        "{}",
        pid.stdout
    );
    let bad = sb.client(&cfg, &["status", "--format", "{nope}"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(
        bad.stderr.contains("unknown field `{nope}`"),
        "{}",
        bad.stderr
    );
    let one = sb.client(&cfg, &["status", "web"]);
    assert!(one.stdout.contains("last events of web:"), "{}", one.stdout);
    assert_eq!(sb.client(&cfg, &["status", "nope"]).code, 4);
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["frobnicate"]).code, 2);
    assert_eq!(sb.run(&["validate", "--print", "yaml"]).code, 2);
}

#[test]
fn completion_scripts_parse_in_their_shells() {
    let sb = Sandbox::new();
    for (shell, check) in [
        ("bash", Some(["bash", "-n"])),
        ("zsh", Some(["zsh", "-n"])),
        ("fish", Some(["fish", "--no-execute"])),
        ("elvish", None),
        ("powershell", None),
    ] {
        let out = sb.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.all());
        assert!(out.stdout.contains("guardian"), "{shell}");
        assert!(
            out.stdout.contains("check-running"),
            "{shell}: every command is offered"
        );
        // A subcommand's own options are built only when it is used (clap's `defer`): the
        // script must still offer them.
        assert!(
            out.stdout.contains("explain"),
            "{shell}: validate's options are offered"
        );
        // elvish and powershell are not Debian packages here: their scripts are checked for
        // the commands above only.
        let Some([prog, flag]) = check else { continue };
        let prog = require(prog, prog);
        let file = sb.write(&format!("completion.{shell}"), &out.stdout);
        let st = std::process::Command::new(prog)
            .arg(flag)
            .arg(&file)
            .status()
            .unwrap();
        assert!(st.success(), "{shell} -n rejects the script");
    }
    let out = sb.run(&["completions", "tcsh"]);
    assert_eq!(out.code, 2, "{}", out.all());
}

#[test]
fn the_man_page_renders_every_command_the_exit_codes_and_files() {
    let sb = Sandbox::new();
    let out = sb.run(&["man"]);
    assert_eq!(out.code, 0, "{}", out.all());
    for want in [
        ".TH guardian 1",
        "GUARDIAN RUN",
        "GUARDIAN CHECK-RUNNING",
        "GUARDIAN COMPLETIONS",
        "EXIT STATUS",
        ".SH FILES",
        "NO_COLOR",
        // Options of subcommands, built only when asked for (clap's `defer`).
        "explain",
        "TOKEN_FILE",
    ] {
        assert!(out.stdout.contains(want), "{want}");
    }
    let help = sb.run(&["validate", "--help"]);
    assert!(help.stdout.contains("--explain"), "{}", help.all());
    let page = sb.write("guardian.1", &out.stdout);
    let man = std::process::Command::new(require("man", "man-db"))
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.status.success(),
        "{}",
        String::from_utf8_lossy(&man.stderr)
    );
    assert!(text.contains("EXIT STATUS"), "{text}");
}

#[test]
fn a_json_config_may_name_its_schema_and_the_schema_has_an_id() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.json",
        r#"{ "$schema": "./schemas/guardian.schema.json", "services": { "web": { "command": ["sleep", "1"] } } }"#,
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
    let schema: serde_json::Value = serde_json::from_str(&sb.run(&["schema"]).stdout).unwrap();
    assert_eq!(schema["$id"], "urn:guardian:config:schema:v1");
    assert!(schema["properties"]["$schema"].is_object());
}

#[test]
fn only_guardian_variables_with_a_key_path_are_config() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.web]\ncommand = [\"sleep\", \"1\"]\n");
    let out = sb.run_with(
        &["validate", "-c", cfg.to_str().unwrap()],
        &[("GUARDIAN_BIN", "/usr/local/bin/guardian")],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr
            .contains("warning: environment variable GUARDIAN_BIN is not a config key path"),
        "{}",
        out.all()
    );
    // A key path that does not exist stays an error with its did-you-mean.
    let out = sb.run_with(
        &["validate", "-c", cfg.to_str().unwrap()],
        &[("GUARDIAN_GUARDIAN__LOG_LEVLE", "debug")],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all().contains("GUARDIAN_GUARDIAN__LOG_LEVLE"),
        "{}",
        out.all()
    );
}

#[test]
fn status_is_coloured_only_when_asked_and_never_with_no_color() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.web]\ncommand = [\"sleep\", \"300\"]\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(Duration::from_secs(30), || sb
        .pid_of(&cfg, "web")
        .is_some()));
    let dir = sb.state_dir();
    let args = [
        "status",
        "-c",
        cfg.to_str().unwrap(),
        "--state-dir",
        dir.to_str().unwrap(),
    ];
    let piped = sb.run(&args);
    assert!(!piped.stdout.contains('\x1b'), "piped: no colour");
    let forced = sb.run_with(&args, &[("CLICOLOR_FORCE", "1")]);
    assert!(
        forced.stdout.contains("\x1b[32mrunning"),
        "{}",
        forced.stdout
    );
    let none = sb.run_with(&args, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!none.stdout.contains('\x1b'), "{}", none.stdout);
}

/// `rust-version` is what the lockfile really needs: no locked dependency (examples and
/// tests included) asks for a newer compiler than the one Cargo.toml promises, and the
/// promise is not higher than the newest of theirs without reason.
#[test]
fn rust_version_matches_what_the_locked_dependencies_need() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parse = |v: &str| -> (u32, u32) {
        let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let mut ours = None;
    let mut needed = ((0, 0), String::new());
    for p in meta["packages"].as_array().unwrap() {
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        if p["name"] == "guardian" {
            ours = Some(parse(rv));
        } else if parse(rv) > needed.0 {
            needed = (parse(rv), p["name"].as_str().unwrap().to_owned());
        }
    }
    let ours = ours.expect("guardian declares rust-version");
    assert_eq!(
        ours, needed.0,
        "Cargo.toml says rust-version {ours:?}, but {} needs {:?}",
        needed.1, needed.0
    );
}

/// The whole error output, byte for byte: compiler-style locations, the line with a caret
/// under the key, and the same text whether or not colour is allowed (errors are plain).
#[test]
fn config_errors_read_like_a_compilers_snapshot() {
    let sb = Sandbox::new();
    sb.write(
        "c.toml",
        "[services.api]\ncommand = [\"x\"]\ndepends_on = { dbb = \"ready\" }\nrestart = \"sometimes\"\n[services.db]\ncommand = [\"y\"]\n",
    );
    let want = "error: 2 problems in the config:\nc.toml:4:1: error: `services.api.restart`: `sometimes` is not one of always, on-failure, no\n  |\n4 | restart = \"sometimes\"\n  | ^^^^^^^\nc.toml:3:16: error: `services.api.depends_on.dbb`: there is no service `dbb`; did you mean `db`? (services: api, db)\n  |\n3 | depends_on = { dbb = \"ready\" }\n  |                ^^^\nfix them, then check again with `guardian validate`\n";
    for env in [[("NO_COLOR", "1")], [("CLICOLOR_FORCE", "1")]] {
        let out = sb.run_with(&["validate", "-c", "c.toml"], &env);
        assert_eq!(out.code, 2);
        assert_eq!(out.stderr, want, "{env:?}");
    }
    sb.write("p.toml", "[services.a]\ncommand = [\"x\"\n");
    let out = sb.run(&["validate", "-c", "p.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("p.toml:3:1: error: invalid array"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("\n  |\n3 |"), "{}", out.stderr);
}

#[test]
fn validate_json_gives_the_same_facts_for_ci() {
    let sb = Sandbox::new();
    sb.write(
        "c.toml",
        "[services.api]\ncommand = [\"x\"]\ndepends_on = { dbb = \"ready\" }\n[services.db]\ncommand = [\"y\"]\n",
    );
    let out = sb.run(&["validate", "-c", "c.toml", "--json"]);
    assert_eq!(out.code, 2, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let p = &v["problems"][0];
    assert_eq!(p["file"], "c.toml");
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_u64()),
        (Some(3), Some(16))
    );
    assert_eq!(p["key"], "services.api.depends_on.dbb");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `db`?")
    );
    sb.write("ok.toml", "[services.db]\ncommand = [\"y\"]\n");
    let out = sb.run(&["validate", "-c", "ok.toml", "--json"]);
    assert_eq!(out.code, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["services"][0], "db");
}

#[test]
fn with_log_format_json_an_error_is_one_json_object_with_the_problems() {
    let sb = Sandbox::new();
    sb.write(
        "c.toml",
        "[services.api]\ncommand = [\"x\"]\nrestart = \"sometimes\"\n",
    );
    let out = sb.run(&["validate", "-c", "c.toml", "--log-format", "json"]);
    assert_eq!(out.code, 2);
    let v: serde_json::Value = serde_json::from_str(out.stderr.trim()).expect(&out.stderr);
    assert_eq!(v["level"], "error");
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["problems"][0]["key"], "services.api.restart");
    assert_eq!(v["problems"][0]["line"], 3);
    let out = sb.run(&["status", "--state-dir", "nowhere", "--log-format", "json"]);
    assert_eq!(out.code, 1, "{}", out.all());
}

#[test]
fn dynamic_completion_offers_the_configs_service_names() {
    let sb = Sandbox::new();
    sb.write(
        "guardian.toml",
        "[services.api]\ncommand = [\"x\"]\nreplicas = 2\n[services.db]\ncommand = [\"y\"]\n",
    );
    let script = sb.run_with(&[], &[("COMPLETE", "bash")]);
    assert_eq!(script.code, 0, "{}", script.all());
    assert!(
        script.stdout.contains("_clap_complete_guardian"),
        "{}",
        script.stdout
    );
    let out = sb.run_with(
        &["--", "guardian", "restart", "a"],
        &[
            ("COMPLETE", "bash"),
            ("_CLAP_COMPLETE_INDEX", "2"),
            ("_CLAP_COMPLETE_COMP_TYPE", "9"),
            ("_CLAP_COMPLETE_SPACE", "true"),
        ],
    );
    let offered: Vec<&str> = out
        .stdout
        .split(['\n', '\u{b}'])
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(offered, ["api", "api.1", "api.2"], "{}", out.all());
}

/// A command whose reader goes away (`guardian schema | head -1`) ends quietly, killed by
/// SIGPIPE as any Unix tool is: never a panic on stderr.
#[test]
fn a_closed_pipe_ends_a_command_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let sb = Sandbox::new();
    let mut child = sb
        .cmd()
        .arg("schema")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before guardian writes a byte.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?} {stderr}", out.status);
}
