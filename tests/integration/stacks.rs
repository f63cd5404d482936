//! SPEC §8 with real processes: restart policies and completed tasks, dependencies with
//! conditions (ordering read from the services' own start timestamps), blocked dependents,
//! `restart = true`, stop order (the services' own SIGTERM timestamps), replicas with rolling
//! restarts, scaling by reload, and the config errors.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

/// A shell service that writes its start time (ns) to `NAME.start`, and its SIGTERM time to
/// `NAME.term` before it exits; the trap is set before the start is stamped.
fn stamped(name: &str) -> String {
    format!(
        "command = [\"sh\", \"-c\", \"trap 'date +%s%N > {name}.term; exit 0' TERM; date +%s%N > {name}.start; while true; do sleep 0.05; done\"]\ncwd = \".\"\nshutdown_timeout = \"5s\"\n"
    )
}

fn stamp(sb: &Sandbox, file: &str) -> Option<u128> {
    std::fs::read_to_string(sb.path().join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn state(sb: &Sandbox, cfg: &Path, name: &str) -> String {
    sb.service(cfg, name)["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn restart_policies_end_in_completed_or_failed_and_start_runs_a_task_again() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        r#"
[services.task]
command = ["sh", "-c", "echo ran >> runs"]
cwd = "."
restart = "no"

[services.broken]
command = ["sh", "-c", "exit 3"]
restart = "no"

[services.flaky]
command = ["sh", "-c", "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 2 ]"]
cwd = "."
restart = "on-failure"
backoff = { initial_delay = "50ms", jitter = 0 }
"#,
    );
    let _g = sb.start(&cfg);
    assert!(
        wait_for(LONG, || state(&sb, &cfg, "task") == "completed"),
        "{}",
        sb.stderr()
    );
    let task = sb.service(&cfg, "task");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(task["pid"], serde_json::Value::Null);
    assert!(wait_for(LONG, || state(&sb, &cfg, "broken") == "failed"));
    assert_eq!(sb.service(&cfg, "broken")["exit_code"], 3);
    assert!(sb.actions("broken").contains(&"failed".to_owned()));
    assert!(
        !sb.actions("broken")
            .contains(&"restart_scheduled".to_owned())
    );
    // on-failure: exits 1 twice (restarted), then 0 (completed).
    assert!(wait_for(LONG, || state(&sb, &cfg, "flaky") == "completed"));
    let flaky = sb.actions("flaky");
    assert_eq!(
        flaky.iter().filter(|a| *a == "restart_scheduled").count(),
        2,
        "{flaky:?}"
    );
    let table = sb.client(&cfg, &["status"]).stdout;
    assert!(table.contains("completed"), "{table}");
    assert!(table.contains("exit code 0"), "{table}");
    // A completed task runs again on `guardian start`.
    let out = sb.client(&cfg, &["start", "task"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || {
        std::fs::read_to_string(sb.path().join("runs")).is_ok_and(|r| r.lines().count() == 2)
    }));
    assert!(wait_for(LONG, || state(&sb, &cfg, "task") == "completed"));
}

#[test]
fn dependents_wait_for_their_conditions_and_start_in_order() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"
[services.db]
{db}health = {{ interval = "100ms", checks = [{{ kind = "exec", command = ["test", "-f", "db-ready"] }}] }}

[services.migrate]
command = ["sh", "-c", "date +%s%N > migrate.start; sleep 0.3; date +%s%N > migrate.end"]
cwd = "."
restart = "no"
depends_on = {{ db = "healthy" }}

[services.api]
{api}depends_on = {{ db = "healthy", migrate = "completed" }}

[services.cache]
{cache}
"#,
            db = stamped("db"),
            api = stamped("api"),
            cache = stamped("cache"),
        ),
    );
    let _g = sb.start(&cfg);
    // db runs but is not healthy: migrate and api wait, and say for what; cache is unrelated.
    assert!(wait_for(LONG, || state(&sb, &cfg, "api") == "waiting"
        && state(&sb, &cfg, "migrate") == "waiting"
        && state(&sb, &cfg, "cache") == "running"));
    assert_eq!(
        sb.service(&cfg, "migrate")["waiting_for"],
        "waiting for db (healthy)"
    );
    assert_eq!(
        sb.service(&cfg, "api")["waiting_for"],
        "waiting for db (healthy), migrate (completed)"
    );
    let table = sb.client(&cfg, &["status"]).stdout;
    assert!(table.contains("waiting for db (healthy)"), "{table}");
    assert!(stamp(&sb, "migrate.start").is_none());
    std::fs::write(sb.path().join("db-ready"), "").unwrap();
    assert!(
        wait_for(LONG, || state(&sb, &cfg, "api") == "running"),
        "{}",
        sb.stderr()
    );
    assert_eq!(state(&sb, &cfg, "migrate"), "completed");
    let (db, migrate, migrate_end, api) = (
        stamp(&sb, "db.start").unwrap(),
        stamp(&sb, "migrate.start").unwrap(),
        stamp(&sb, "migrate.end").unwrap(),
        stamp(&sb, "api.start").unwrap(),
    );
    assert!(db < migrate, "db {db} before migrate {migrate}");
    assert!(
        migrate_end < api,
        "migrate ended {migrate_end} before api started {api}"
    );
    let waited = sb.events("api");
    assert!(
        waited.iter().any(|e| e["action"] == "waiting"
            && e["detail"] == "waiting for db (healthy), migrate (completed)"),
        "{waited:?}"
    );
}

#[test]
fn a_failed_dependency_blocks_its_dependents_until_it_recovers() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"
[services.db]
command = ["sh", "-c", "test -f db-ok && exec sleep 300"]
cwd = "."
backoff = {{ initial_delay = "50ms", max_retries = 1, jitter = 0 }}
health = {{ interval = "100ms", checks = [{{ kind = "exec", command = ["test", "-f", "db-ok"] }}] }}

[services.api]
{api}depends_on = {{ db = "healthy" }}
"#,
            api = stamped("api")
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "db") == "failed"
        && state(&sb, &cfg, "api") == "blocked"));
    let api = sb.service(&cfg, "api");
    assert!(
        api["waiting_for"]
            .as_str()
            .unwrap()
            .contains("db is failed"),
        "{api}"
    );
    let blocked = sb.events("api");
    let ev = blocked
        .iter()
        .find(|e| e["action"] == "blocked")
        .expect("a blocked event");
    assert!(ev["error_message"].as_str().unwrap().contains("db"));
    assert!(stamp(&sb, "api.start").is_none());
    // The dependency recovers: the blocked dependent starts.
    std::fs::write(sb.path().join("db-ok"), "").unwrap();
    assert_eq!(sb.client(&cfg, &["start", "db"]).code, 0);
    assert!(
        wait_for(LONG, || state(&sb, &cfg, "api") == "running"),
        "{}",
        sb.stderr()
    );
    // Running from its spawn on (no port, no checks); the stamp is its first write.
    assert!(wait_for(LONG, || stamp(&sb, "api.start").is_some()));
}

#[test]
fn restart_true_restarts_a_dependent_after_its_dependency_and_others_keep_running() {
    let sb = Sandbox::new();
    // db is ready a second after each spawn (its port accepts only then); each start of
    // db and of follower appends its time to a file.
    let server = example_bin("socketio_server");
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"
[services.db]
command = ["sh", "-c", "date +%s%N >> db.spawns; sleep 1; exec {} --port {{port}}"]
cwd = "."
port = {}
backoff = {{ initial_delay = "100ms", jitter = 0 }}

[services.follower]
command = ["sh", "-c", "date +%s%N >> follower.starts; exec sleep 301"]
cwd = "."
depends_on = {{ db = {{ condition = "ready", restart = true }} }}

[services.loner]
command = ["sleep", "302"]
depends_on = {{ db = "ready" }}
"#,
            server.display(),
            free_port()
        ),
    );
    let times = |file: &str| -> Vec<u128> {
        std::fs::read_to_string(sb.path().join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "follower").is_some()
        && sb.pid_of(&cfg, "loner").is_some()));
    let (db, follower, loner) = (
        sb.pid_of(&cfg, "db").unwrap(),
        sb.pid_of(&cfg, "follower").unwrap(),
        sb.pid_of(&cfg, "loner").unwrap(),
    );
    kill(db, Signal::SIGKILL);
    assert!(
        wait_for(LONG, || sb.pid_of(&cfg, "db").is_some_and(|p| p != db)
            && sb.pid_of(&cfg, "follower").is_some_and(|p| p != follower)),
        "{}",
        sb.stderr()
    );
    assert_eq!(sb.pid_of(&cfg, "loner"), Some(loner));
    assert!(!alive(follower));
    // The dependent started again only once db was ready again: at least its second of
    // start-up after db's new spawn, not at the spawn.
    assert!(wait_for(LONG, || times("follower.starts").len() == 2));
    let (db_spawns, starts) = (times("db.spawns"), times("follower.starts"));
    assert_eq!(db_spawns.len(), 2, "{db_spawns:?}");
    assert!(
        starts[1] >= db_spawns[1] + 900_000_000,
        "follower started again {} ms after db's new spawn, before db was ready",
        (starts[1] as i128 - db_spawns[1] as i128) / 1_000_000
    );
}

#[test]
fn services_stop_in_reverse_dependency_order() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.db]\n{}\n[services.api]\n{}depends_on = {{ db = \"started\" }}\n[services.worker]\n{}depends_on = {{ api = \"started\" }}\n[services.other]\n{}",
            stamped("db"),
            stamped("api"),
            stamped("worker"),
            stamped("other")
        ),
    );
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || ["db", "api", "worker", "other"]
        .iter()
        .all(|n| stamp(&sb, &format!("{n}.start")).is_some())));
    // Each trap is set before its start stamp is written.
    assert_eq!(g.stop(), Some(0));
    let t =
        |n: &str| stamp(&sb, &format!("{n}.term")).unwrap_or_else(|| panic!("{n} got no SIGTERM"));
    let (db, api, worker) = (t("db"), t("api"), t("worker"));
    assert!(
        worker < api && api < db,
        "worker {worker}, api {api}, db {db}"
    );
    // The unrelated service was not held back behind the chain.
    assert!(t("other") < db);
}

fn pidfile_pid(path: &Path) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

fn replicas_config(sb: &Sandbox, n: u32, base: u16) -> std::path::PathBuf {
    let server = example_bin("socketio_server");
    sb.write(
        "g.toml",
        &format!(
            r#"
[services.api]
command = ["{}", "--host", "{{host}}", "--port", "{{port}}"]
port = {base}
replicas = {n}
env = {{ REPLICA = "{{replica}}" }}
identity = {{ patterns = ["socketio_server"], match_port = true }}

[services.worker]
command = ["sleep", "300"]
depends_on = {{ api = "ready" }}
"#,
            server.display()
        ),
    )
}

/// `n` consecutive free ports.
fn free_ports(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base < 65000
            && (0..n).all(|k| std::net::TcpListener::bind(("127.0.0.1", base + k)).is_ok())
        {
            return base;
        }
    }
}

#[test]
fn replicas_run_as_their_own_instances_restart_one_at_a_time_and_scale_by_reload() {
    let sb = Sandbox::new();
    let base = free_ports(4);
    let cfg = replicas_config(&sb, 3, base);
    let _g = sb.start(&cfg);
    let names = ["api.1", "api.2", "api.3"];
    assert!(
        wait_for(LONG, || names.iter().all(|n| sb.pid_of(&cfg, n).is_some())
            && sb.pid_of(&cfg, "worker").is_some()),
        "{}",
        sb.stderr()
    );
    let mut pids = Vec::new();
    for (k, n) in names.iter().enumerate() {
        let s = sb.service(&cfg, n);
        assert_eq!(s["port"], base + k as u16, "{s}");
        assert_eq!(s["replica_of"], "api");
        let pid = s["pid"].as_i64().unwrap() as i32;
        assert_eq!(
            pidfile_pid(&sb.state_dir().join(format!("{n}.pid"))),
            Some(pid)
        );
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            env.split(|b| *b == 0)
                .any(|v| v == format!("REPLICA={}", k + 1).as_bytes())
        );
        assert!(sb.state_dir().join(format!("logs/{n}.log")).exists());
        pids.push(pid);
    }
    // The worker waited for every replica.
    let worker_start = sb
        .events("worker")
        .into_iter()
        .find(|e| e["action"] == "start")
        .unwrap()["timestamp"]
        .as_f64()
        .unwrap();
    for n in names {
        let ready = sb
            .events(n)
            .into_iter()
            .find(|e| e["action"] == "ready")
            .unwrap()["timestamp"]
            .as_f64()
            .unwrap();
        assert!(
            ready <= worker_start,
            "{n} ready {ready}, worker {worker_start}"
        );
    }

    // A rolling restart: each instance starts only once the one before is ready again.
    let out = sb.client(&cfg, &["restart", "api"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("one at a time"), "{}", out.all());
    for (n, old) in names.iter().zip(&pids) {
        let new = sb.pid_of(&cfg, n).expect("running after the roll");
        assert_ne!(new, *old, "{n}");
    }
    let at = |n: &str, action: &str| -> f64 {
        sb.events(n)
            .into_iter()
            .rfind(|e| e["action"] == action)
            .unwrap()["timestamp"]
            .as_f64()
            .unwrap()
    };
    assert!(at("api.1", "ready") <= at("api.2", "stop"));
    assert!(at("api.2", "ready") <= at("api.3", "stop"));

    // One instance by its own name.
    let kept = sb.pid_of(&cfg, "api.1").unwrap();
    assert_eq!(sb.client(&cfg, &["stop", "api.2"]).code, 0);
    assert_eq!(state(&sb, &cfg, "api.2"), "stopped");
    assert!(!sb.state_dir().join("api.2.pid").exists());
    assert_eq!(sb.pid_of(&cfg, "api.1"), Some(kept));
    assert_eq!(sb.client(&cfg, &["start", "api"]).code, 0);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "api.2").is_some()));

    // Scale down by reload: only api.3 goes, and its PID file with it.
    let api3 = sb.pid_of(&cfg, "api.3").unwrap();
    replicas_config(&sb, 2, base);
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb.service(&cfg, "api.3").is_null()));
    assert!(!sb.state_dir().join("api.3.pid").exists());
    assert!(!alive(api3));
    assert_eq!(sb.pid_of(&cfg, "api.1"), Some(kept));
    // …and up: api.3 and api.4 start, api.1 keeps its process.
    replicas_config(&sb, 4, base);
    assert_eq!(sb.client(&cfg, &["reload"]).code, 0);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "api.4").is_some()
        && sb.pid_of(&cfg, "api.3").is_some()));
    assert_eq!(sb.service(&cfg, "api.4")["port"], base + 3);
    assert_eq!(sb.pid_of(&cfg, "api.1"), Some(kept));
}

#[test]
fn replicas_are_adopted_one_by_one_by_the_next_guardian() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[guardian]\nstop_services_on_exit = false\n[services.w]\ncommand = [\"sleep\", \"300\"]\nreplicas = 2\n",
    );
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "w.1").is_some()
        && sb.pid_of(&cfg, "w.2").is_some()));
    let (one, two) = (
        sb.pid_of(&cfg, "w.1").unwrap(),
        sb.pid_of(&cfg, "w.2").unwrap(),
    );
    assert_eq!(g.stop(), Some(0));
    assert!(alive(one) && alive(two));
    let _g2 = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "w.1") == Some(one)
        && sb.pid_of(&cfg, "w.2") == Some(two)));
    assert_eq!(sb.service(&cfg, "w.2")["adopted"], true);
    kill(one, Signal::SIGKILL);
    kill(two, Signal::SIGKILL);
}

#[test]
fn stack_mistakes_are_config_errors_and_a_cyclic_reload_is_refused() {
    let sb = Sandbox::new();
    let table = [
        (
            "[services.api]\ncommand = [\"x\"]\ndepends_on = { cache = \"ready\" }\n[services.cache]\ncommand = [\"x\"]\ndepends_on = { api = \"ready\" }\n",
            "api → cache → api",
        ),
        (
            "[services.api]\ncommand = [\"x\"]\ndepends_on = { db = \"ready\" }\n",
            "services.api.depends_on.db",
        ),
        (
            "[services.api]\ncommand = [\"x\"]\ndepends_on = { api = \"ready\" }\n",
            "cannot depend on itself",
        ),
        (
            "[services.api]\ncommand = [\"x\"]\ndepends_on = { m = \"completed\" }\n[services.m]\ncommand = [\"x\"]\n",
            "never completes",
        ),
    ];
    for (text, want) in table {
        let cfg = sb.write("bad.toml", text);
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{text}\n{}", out.all());
        assert!(out.all().contains(want), "{want} in {}", out.all());
        assert!(out.all().contains("bad.toml"), "{}", out.all());
    }
    // A reload into a cycle keeps the running config.
    let (cfg, _g) = sb.start_sleeping(&["a", "b"]);
    let (a, b) = (sb.pid_of(&cfg, "a").unwrap(), sb.pid_of(&cfg, "b").unwrap());
    sb.write(
        "g.toml",
        "[guardian]\nwatch_config = false\n[services.a]\ncommand = [\"sleep\", \"300\"]\ndepends_on = { b = \"ready\" }\n[services.b]\ncommand = [\"sleep\", \"301\"]\ndepends_on = { a = \"ready\" }\n",
    );
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.all().contains("a → b → a"), "{}", out.all());
    assert_eq!(sb.pid_of(&cfg, "a"), Some(a));
    assert_eq!(sb.pid_of(&cfg, "b"), Some(b));
}

#[test]
fn the_example_stack_validates_and_explains_its_start_order() {
    let sb = Sandbox::new();
    let example = repo_file("examples/stack.toml");
    let out = sb.run(&["validate", "-c", example.to_str().unwrap(), "--explain"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("  1. db\n  2. migrate\n  3. api\n  4. worker\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("api.1 (port 8766), api.2 (port 8767)"));
}

#[test]
fn the_printed_config_of_a_stack_loads_again() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"x\"]\nreplicas = 2\ndepends_on = { b = { condition = \"ready\", restart = true } }\n[services.b]\ncommand = [\"y\"]\nrestart = \"on-failure\"\n",
    );
    for format in ["toml", "json"] {
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap(), "--print", format]);
        assert_eq!(out.code, 0, "{}", out.all());
        let printed = sb.write(&format!("printed.{format}"), &out.stdout);
        let again = sb.run(&["validate", "-c", printed.to_str().unwrap()]);
        assert_eq!(again.code, 0, "{format}: {}", again.all());
        assert!(
            again.stdout.contains("3 services (a.1, a.2, b)"),
            "{}",
            again.stdout
        );
    }
}
