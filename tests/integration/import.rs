//! `guardian import` (SPEC §16) on real files: the peers' own samples (tests/fixtures/import,
//! sources in its README), each mapped key asserted, the left-out list with its lines, and
//! the output validated; a Procfile stack imported and run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The fixtures, copied into the sandbox (imports resolve `[include]` and `.env` beside
/// their file; outputs go next to them).
fn fixtures(sb: &Sandbox) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                copy(&p, &to.join(e.file_name()));
            } else {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }
    let to = sb.path().join("import");
    copy(&repo_file("tests/fixtures/import"), &to);
    to
}

/// `guardian import FORMAT FILE --out OUT` run in `dir`; the output parsed as TOML (as
/// JSON values, to index).
fn import_in(sb: &Sandbox, dir: &Path, args: &[&str]) -> (Output, Value, String) {
    let mut c = sb.cmd();
    c.current_dir(dir).arg("import").args(args);
    let out = output(&mut c);
    let written = args
        .iter()
        .position(|a| *a == "--out")
        .map(|i| dir.join(args[i + 1]));
    let text = match written {
        Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
        None => out.stdout.clone(),
    };
    let parsed: Value = toml::from_str::<toml::Value>(&text)
        .map(|v| serde_json::to_value(v).unwrap())
        .unwrap_or(Value::Null);
    (out, parsed, text)
}

/// `guardian validate -c FILE` in `dir` must exit 0.
fn validates(sb: &Sandbox, dir: &Path, file: &str) {
    let mut c = sb.cmd();
    c.current_dir(dir).args(["validate", "-c", file]);
    let v = output(&mut c);
    assert_eq!(
        v.code,
        0,
        "the imported config does not validate:\n{}",
        v.all()
    );
}

#[test]
fn supervisord_sample_conf_maps_its_keys_lists_the_rest_and_validates() {
    let sb = Sandbox::new();
    let dir = fixtures(&sb).join("supervisord");
    let (out, t, text) = import_in(
        &sb,
        &dir,
        &["supervisord", "sample.conf", "--out", "g.toml"],
    );
    assert_eq!(out.code, 3, "something is left out: {}", out.all());
    let p = &t["services"]["theprogramname"];
    assert_eq!(p["command"], serde_json::json!(["/bin/cat"]), "{text}");
    assert_eq!(p["cwd"], "/tmp");
    assert_eq!(p["umask"], "022");
    assert_eq!(p["autostart"], true);
    assert_eq!(p["restart"], "on-failure", "autorestart=unexpected");
    assert_eq!(p["stop_signal"], "SIGQUIT");
    assert_eq!(p["shutdown_timeout"], "10s");
    assert_eq!(p["user"], "root");
    assert_eq!(p["backoff"]["max_retries"], 3, "startretries");
    assert_eq!(p["backoff"]["reset_after"], "1s", "startsecs");
    assert_eq!(p["env"], serde_json::json!({"A": "1", "B": "2"}));
    assert_eq!(
        p["log"],
        serde_json::json!({"max_size_mb": 1, "backup_count": 10})
    );
    // priority 10 (the included worker) starts before 999.
    assert_eq!(p["depends_on"], serde_json::json!({"worker": "started"}));
    // The included file: expansions, numprocs, a continuation line, an inline comment.
    let w = &t["services"]["worker"];
    assert_eq!(w["replicas"], 2);
    assert_eq!(w["restart"], "no");
    assert_eq!(w["stop_signal"], "SIGINT");
    let cmd = w["command"][2].as_str().unwrap();
    assert!(
        cmd.starts_with("echo worker {replica} in /")
            && cmd.ends_with("supervisord; exec sleep 300"),
        "%(process_num)d and %(here)s: {cmd}"
    );
    assert_eq!(w["env"]["QUEUE"], "jobs, urgent");
    assert_eq!(
        w["env"]["HOME_DIR"],
        sb.path().to_str().unwrap(),
        "%(ENV_HOME)s"
    );
    // Left out, each with its file and line, on stderr and as a comment.
    for want in [
        "sample.conf:104: program:theprogramname.stdout_logfile:",
        "sample.conf:117: program:theprogramname.serverurl:",
        "sample.conf:45: supervisord.logfile:",
        "sample.conf:159: [group:thegroupname]:",
        "conf.d/worker.ini:15: [fcgi-program:php]:",
        "conf.d/worker.ini:19: [eventlistener:memmon]:",
    ] {
        assert!(
            out.stderr.contains(want),
            "{want} missing from:\n{}",
            out.stderr
        );
    }
    assert!(
        text.contains("# left out: program:theprogramname.stdout_logfile (line 104):"),
        "{text}"
    );
    // A mapped key is not in the list.
    assert!(!out.stderr.contains(".command"), "{}", out.stderr);
    validates(&sb, &dir, "g.toml");
}

#[test]
fn supervisord_bad_input_is_named_with_its_line_and_writes_nothing() {
    let sb = Sandbox::new();
    let cases = [
        ("[program:a]\ncommand=x\njunk line\n", "bad.conf:3:"),
        ("command=x\n", "bad.conf:1:"),
        (
            "[program:a]\ncommand=echo %(nope)s\n",
            "bad.conf:2: command:",
        ),
        (
            "[program:a]\ncommand=sh -c 'unclosed\n",
            "bad.conf:2: command:",
        ),
        (
            "[program:a]\nautostart=maybe\ncommand=x\n",
            "bad.conf:2: autostart:",
        ),
        ("[include]\n", "bad.conf:1: [include] has no `files =`"),
    ];
    for (text, want) in cases {
        sb.write("bad.conf", text);
        let (out, _, _) = import_in(
            &sb,
            sb.path(),
            &["supervisord", "bad.conf", "--out", "o.toml"],
        );
        assert_eq!(out.code, 2, "{text}: {}", out.all());
        assert!(
            out.stderr.contains(want),
            "{text}: want {want} in {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert!(
            !sb.path().join("o.toml").exists(),
            "nothing is written on exit 2"
        );
    }
    // A missing include is supervisord's warning: listed, the rest imported.
    sb.write(
        "inc.conf",
        "[include]\nfiles = nowhere/*.conf\n[program:a]\ncommand=sleep 1\n",
    );
    let (out, t, _) = import_in(&sb, sb.path(), &["supervisord", "inc.conf"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr
            .contains("inc.conf:2: include.files: no file matches"),
        "{}",
        out.stderr
    );
    assert_eq!(
        t["services"]["a"]["command"],
        serde_json::json!(["sleep", "1"])
    );
}

#[test]
fn pm2_ecosystem_files_in_json5_yaml_and_js_map_the_same() {
    let sb = Sandbox::new();
    let dir = fixtures(&sb).join("pm2");
    require("node", "nodejs");
    let mut seen = Vec::new();
    for file in ["process.json", "process.yml", "process.config.js"] {
        let out_name = format!("{file}.toml");
        let (out, t, text) = import_in(&sb, &dir, &["pm2", file, "--out", &out_name]);
        assert_eq!(out.code, 3, "{file}: watch is left out: {}", out.all());
        let api = &t["services"]["http_api"];
        assert_eq!(
            api["command"],
            serde_json::json!(["node", "apps/http.js"]),
            "{file}: {text}"
        );
        // instances: 'max' is this machine's CPU count (one replica is no `replicas` key).
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        if cpus > 1 {
            assert_eq!(api["replicas"], cpus, "{file}: instances max");
        } else {
            assert!(api.get("replicas").is_none(), "{file}: {text}");
        }
        assert!(text.contains("this machine's CPU count"), "{file}: {text}");
        assert_eq!(
            api["health"]["resources"]["memory_mb"]["critical"], 260.0,
            "{file}: max_memory_restart"
        );
        assert_eq!(
            t["services"]["checks"]["command"],
            serde_json::json!(["bash", "apps/connection_check.sh"])
        );
        assert_eq!(
            t["services"]["worker"]["command"],
            serde_json::json!(["node", "apps/worker.js"])
        );
        assert!(
            out.stderr.contains("renamed: `HTTP-API` is `http_api`"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(".ignore_watch:"),
            "{file}: {}",
            out.stderr
        );
        assert!(
            text.contains("choose one with --env NAME"),
            "{file}: {text}"
        );
        seen.push(api["env"]["NODE_ENV"].clone());
        validates(&sb, &dir, &out_name);
    }
    assert_eq!(seen, ["normal", "development", "normal"]);
    // Line numbers in JSON5 and YAML; none for an evaluated .js.
    let (out, _, _) = import_in(&sb, &dir, &["pm2", "process.json"]);
    assert!(
        out.stderr.contains("process.json:9: apps[0].ignore_watch"),
        "{}",
        out.stderr
    );
    let (out, _, _) = import_in(&sb, &dir, &["pm2", "process.yml"]);
    assert!(
        out.stderr.contains("process.yml:7: apps[0].ignore_watch"),
        "{}",
        out.stderr
    );
    // --env merges env_NAME over env.
    let (out, t, _) = import_in(&sb, &dir, &["pm2", "process.json", "--env", "production"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert_eq!(t["services"]["http_api"]["env"]["NODE_ENV"], "production");
    let (out, _, _) = import_in(&sb, &dir, &["pm2", "process.json", "--env", "staging"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("env_staging"), "{}", out.stderr);
}

#[test]
fn pm2_keys_map_to_restart_backoff_and_readiness() {
    let sb = Sandbox::new();
    sb.write(
        "eco.json",
        r#"// JSON5: comments, unquoted keys, single quotes, trailing commas
{ apps: [{
  name: 'api', script: 'server.py', args: '--port 8000 --name "a b"',
  cwd: '/tmp', instances: 3, autorestart: false, max_restarts: 4,
  exp_backoff_restart_delay: 100, kill_timeout: 1600, wait_ready: true,
  env: { MODE: 'x', N: 2 },
}, {
  name: 'job', script: 'node_modules/.bin/run', interpreter: 'none', restart_delay: 3000,
  cron_restart: '0 * * * *',
},], }"#,
    );
    let (out, t, text) = import_in(&sb, sb.path(), &["pm2", "eco.json", "--out", "g.toml"]);
    assert_eq!(out.code, 3, "cron_restart is left out: {}", out.all());
    let api = &t["services"]["api"];
    assert_eq!(
        api["command"],
        serde_json::json!(["python", "server.py", "--port", "8000", "--name", "a b"]),
        "{text}"
    );
    assert_eq!(api["replicas"], 3);
    assert_eq!(api["restart"], "no");
    assert_eq!(api["backoff"]["max_retries"], 4);
    assert_eq!(api["backoff"]["initial_delay"], "100ms");
    assert_eq!(api["backoff"]["factor"], 1.5);
    assert_eq!(api["shutdown_timeout"], "1s 600ms");
    assert_eq!(api["ready"], "notify");
    assert_eq!(api["env"], serde_json::json!({"MODE": "x", "N": "2"}));
    let job = &t["services"]["job"];
    assert_eq!(job["command"], serde_json::json!(["node_modules/.bin/run"]));
    assert_eq!(job["backoff"]["initial_delay"], "3s");
    assert_eq!(job["backoff"]["factor"], 1.0);
    assert!(
        out.stderr.contains("eco.json:9: apps[1].cron_restart"),
        "{}",
        out.stderr
    );
    validates(&sb, sb.path(), "g.toml");
}

#[test]
fn pm2_bad_input_names_the_position_or_what_node_said() {
    let sb = Sandbox::new();
    let dir = fixtures(&sb).join("pm2");
    require("node", "nodejs");
    // PM2's own broken example: an unclosed string, at its line.
    let (out, _, _) = import_in(&sb, &dir, &["pm2", "malformated.json"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("malformated.json:3:"), "{}", out.stderr);
    for (file, text, want) in [
        (
            "throws.config.js",
            "throw new Error('boom from config')",
            "boom from config",
        ),
        ("number.config.js", "module.exports = 42", "no `apps` list"),
        ("noscript.json", "{apps: [{name: 'x'}]}", "has no script"),
        ("bad.yml", "apps:\n  - name: [unclosed\n", "not YAML"),
    ] {
        sb.write(&format!("import/pm2/{file}"), text);
        let (out, _, _) = import_in(&sb, &dir, &["pm2", file, "--out", "o.toml"]);
        assert_eq!(out.code, 2, "{file}: {}", out.all());
        assert!(
            out.stderr.contains(want),
            "{file}: want {want}: {}",
            out.stderr
        );
        assert!(!dir.join("o.toml").exists());
    }
    // No node on PATH: said, with what to do.
    let mut c = sb.cmd();
    c.current_dir(&dir)
        .env("PATH", "/nonexistent")
        .args(["import", "pm2", "process.config.js"]);
    let out = output(&mut c);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("install node"), "{}", out.stderr);
}

#[test]
fn compose_forms_map_and_image_only_services_are_left_out() {
    let sb = Sandbox::new();
    let dir = fixtures(&sb).join("compose");
    let (out, t, text) = import_in(&sb, &dir, &["compose", "stack.yaml", "--out", "g.toml"]);
    assert_eq!(out.code, 3, "{}", out.all());
    let db = &t["services"]["db"];
    assert_eq!(
        db["command"],
        serde_json::json!(["sh", "-c", "echo db up; exec sleep 300"]),
        "{text}"
    );
    assert_eq!(
        db["env"]["POSTGRES_USER"], "from_dotenv",
        "${{DB_USER:-shop}} from .env"
    );
    assert_eq!(db["image"], "postgres:16");
    assert_eq!(
        db["health"]["checks"],
        serde_json::json!([{"kind": "exec", "command": ["curl", "-f", "http://localhost"]}])
    );
    assert_eq!(db["health"]["interval"], "1m 30s");
    assert_eq!(db["health"]["timeout"], "10s");
    assert_eq!(db["health"]["unhealthy_threshold"], 3);
    assert_eq!(db["startup_timeout"], "40s");
    let api = &t["services"]["api"];
    assert_eq!(
        api["command"],
        serde_json::json!(["sh", "-c", "echo api on $PORT; exec sleep 300"]),
        "entrypoint + command, $$ is $"
    );
    assert_eq!(api["env"]["PORT"], "8081", "${{API_PORT}} from .env");
    assert_eq!(
        api["port"], 8081,
        "the container port is what the process listens on"
    );
    assert_eq!(api["cwd"], "/tmp");
    assert_eq!(
        (&api["user"], &api["group"]),
        (&Value::from("root"), &Value::from("root"))
    );
    // Compose reads it beside the file; with working_dir set, guardian would read it there.
    let env_file = api["env_file"][0].as_str().unwrap();
    assert!(
        env_file.starts_with('/') && env_file.ends_with("compose/./api.env"),
        "{env_file}"
    );
    assert_eq!(api["replicas"], 2);
    assert_eq!(api["restart"], "on-failure");
    assert_eq!(api["backoff"]["max_retries"], 3);
    assert_eq!(api["stop_signal"], "SIGINT");
    assert_eq!(api["shutdown_timeout"], "1m 30s");
    assert_eq!(
        api["limits"],
        serde_json::json!({"nofile": "20000", "nproc": "65535"})
    );
    assert_eq!(
        api["depends_on"],
        serde_json::json!({"db": {"condition": "healthy", "restart": true}})
    );
    let w = &t["services"]["worker_jobs"];
    assert_eq!(w["command"], serde_json::json!(["sleep", "300"]));
    assert_eq!(w["restart"], "always");
    assert_eq!(w["depends_on"], serde_json::json!({"api": "started"}));
    assert_eq!(
        w["health"]["checks"][0]["command"],
        serde_json::json!(["sh", "-c", "echo ok"])
    );
    assert!(t["services"].get("cache").is_none());
    for want in [
        "stack.yaml:60: services.cache.image: guardian runs commands, not images",
        "stack.yaml:61: volumes:",
        "stack.yaml:18: services.db.volumes:",
        "stack.yaml:11: services.db.healthcheck.start_interval:",
        "stack.yaml:48: services.api.ulimits.nofile.hard:",
        "stack.yaml:31: services.api.ports 9229:",
        "api.depends_on.cache: there is no service `cache`",
        "renamed: `Worker.Jobs` is `worker_jobs`",
    ] {
        assert!(out.stderr.contains(want), "{want} missing:\n{}", out.stderr);
    }
    validates(&sb, &dir, "g.toml");
    // The specification's own depends_on example: every service is an image or a build.
    let (out, t, _) = import_in(&sb, &dir, &["compose", "spec-depends-on.yaml"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(t["services"].is_null(), "{t}");
    assert!(
        out.stderr
            .contains("spec-depends-on.yaml:13: services.db.image"),
        "{}",
        out.stderr
    );
}

#[test]
fn compose_bad_input_and_names_that_collide() {
    let sb = Sandbox::new();
    for (text, want) in [
        ("services:\n  a:\n    command: [x\n", "line"),
        (
            "services:\n  a:\n    command: x ${NEEDED:?set NEEDED first}\n",
            "set NEEDED first",
        ),
        ("version: '3'\n", "no `services:`"),
        (
            "services:\n  a:\n    command: x\n    restart: sometimes\n",
            "services.a.restart",
        ),
    ] {
        sb.write("c.yaml", text);
        let (out, _, _) = import_in(&sb, sb.path(), &["compose", "c.yaml", "--out", "o.toml"]);
        assert_eq!(out.code, 2, "{text}: {}", out.all());
        assert!(
            out.stderr.contains(want),
            "{text}: want {want}: {}",
            out.stderr
        );
        assert!(!sb.path().join("o.toml").exists());
    }
    sb.write(
        "c.yaml",
        "services:\n  Web:\n    command: sleep 1\n  web:\n    command: sleep 2\n    depends_on: [Web, ghost]\n",
    );
    let (out, t, _) = import_in(&sb, sb.path(), &["compose", "c.yaml", "--out", "o.toml"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert_eq!(
        t["services"]["web"]["command"],
        serde_json::json!(["sleep", "1"])
    );
    assert_eq!(
        t["services"]["web_2"]["command"],
        serde_json::json!(["sleep", "2"])
    );
    assert_eq!(
        t["services"]["web_2"]["depends_on"],
        serde_json::json!({"web": "started"})
    );
    assert!(
        out.stderr.contains("renamed: `web` is `web_2`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("web_2.depends_on.ghost"),
        "{}",
        out.stderr
    );
    validates(&sb, sb.path(), "o.toml");
    // Never over an existing file.
    let before = std::fs::read_to_string(sb.path().join("o.toml")).unwrap();
    let (out, _, _) = import_in(&sb, sb.path(), &["compose", "c.yaml", "--out", "o.toml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("never overwrites"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(sb.path().join("o.toml")).unwrap(),
        before
    );
    // An input that is not there.
    let (out, _, _) = import_in(&sb, sb.path(), &["compose", "missing.yaml"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("missing.yaml"), "{}", out.stderr);
}

#[test]
fn a_procfile_stack_imports_and_runs() {
    let sb = Sandbox::new();
    let dir = fixtures(&sb).join("procfile");
    let (out, t, text) = import_in(&sb, &dir, &["procfile", "Procfile", "--out", "g.toml"]);
    assert_eq!(out.code, 0, "everything maps: {}", out.all());
    assert_eq!(
        t["services"]["web"]["port"], 5000,
        "Foreman's first PORT: {text}"
    );
    assert_eq!(t["services"]["web"]["env"]["PORT"], "{port}");
    assert!(t["services"]["worker"].get("port").is_none());
    assert_eq!(
        t["services"]["release_task"]["command"][2],
        "exec echo released"
    );
    validates(&sb, &dir, "g.toml");
    // Run it, on a free port instead of Foreman's 5000 (the flat override of SPEC §3).
    let port = free_port();
    let cfg = dir.join("g.toml");
    let mut c = sb.run_cmd(&cfg);
    c.env("GUARDIAN_SERVICES__WEB__PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = c.spawn().unwrap();
    let mut g = GuardianUnderTest {
        child,
        state_dir: sb.state_dir(),
        config: cfg.clone(),
    };
    let up = wait_for(Duration::from_secs(30), || {
        sb.state_dir().join("guardian.sock").exists()
            && sb.service(&cfg, "web")["state"] == "running"
            && sb.service(&cfg, "worker")["state"] == "running"
    });
    assert!(up, "{}", sb.client(&cfg, &["status"]).all());
    let (code, _) = http(
        Target::Tcp(&format!("127.0.0.1:{port}")),
        "GET",
        "/",
        &[],
        b"",
    );
    assert_eq!(
        code, 200,
        "the web process serves on the port guardian gave it"
    );
    assert_eq!(g.stop(), Some(0));
}
