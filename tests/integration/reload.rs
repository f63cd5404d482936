//! SPEC §5 reload with real processes: file changes, SIGHUP and `guardian reload` apply only
//! what changed; invalid configs keep everything running.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

const TWO: &str = r#"[services.a]
command = ["sleep", "300"]
[services.b]
command = ["sleep", "301"]
"#;

fn generation(sb: &Sandbox) -> i64 {
    sb.get_json("/status").1["guardian"]["config_generation"]
        .as_i64()
        .unwrap_or(-1)
}

fn reloads_failed(sb: &Sandbox) -> u64 {
    sb.get_json("/diagnostics").1["guardian"]["reloads_failed"]
        .as_u64()
        .unwrap_or(0)
}

/// An editor's save: write a temporary file next to it, then rename it over the config.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn up(sb: &Sandbox, text: &str) -> (std::path::PathBuf, GuardianUnderTest) {
    let cfg = sb.write("g.toml", text);
    let g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "a").is_some()
        && sb.pid_of(&cfg, "b").is_some()));
    (cfg, g)
}

#[test]
fn a_policy_change_keeps_the_pid_and_a_command_change_restarts_only_that_service() {
    let sb = Sandbox::new();
    let (cfg, _g) = up(&sb, TWO);
    let (a, b) = (sb.pid_of(&cfg, "a").unwrap(), sb.pid_of(&cfg, "b").unwrap());
    save(
        &cfg,
        &format!(
            "{TWO}[services.a.health]\ninterval = \"7s\"\n[services.a.backoff]\nmax_retries = 4\n"
        ),
    );
    assert!(wait_for(LONG, || generation(&sb) == 1), "{}", sb.stderr());
    assert_eq!(sb.pid_of(&cfg, "a"), Some(a));
    assert_eq!(sb.pid_of(&cfg, "b"), Some(b));
    assert_eq!(sb.service(&cfg, "a")["restarts"], 0);
    let ev = sb.events("a");
    assert!(
        ev.iter().any(|e| e["action"] == "reload"
            && e["detail"].as_str().unwrap().contains("health, backoff")),
        "{ev:?}"
    );

    save(&cfg, &TWO.replace("301", "302"));
    assert!(wait_for(LONG, || generation(&sb) == 2));
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "b")
        .is_some_and(|p| p != b)));
    assert!(wait_for(LONG, || !alive(b)));
    assert_eq!(sb.pid_of(&cfg, "a"), Some(a), "a did not change");
}

#[test]
fn services_are_added_and_removed() {
    let sb = Sandbox::new();
    let (cfg, _g) = up(&sb, TWO);
    let a = sb.pid_of(&cfg, "a").unwrap();
    let b = sb.pid_of(&cfg, "b").unwrap();
    save(
        &cfg,
        "[services.a]\ncommand = [\"sleep\", \"300\"]\n[services.c]\ncommand = [\"sleep\", \"303\"]\n",
    );
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "c").is_some()));
    assert!(wait_for(LONG, || sb.service(&cfg, "b").is_null()));
    assert!(wait_for(LONG, || !alive(b)));
    assert!(!sb.state_dir().join("b.pid").exists());
    assert_eq!(sb.pid_of(&cfg, "a"), Some(a));
}

#[test]
fn a_half_written_file_keeps_everything_and_the_next_valid_save_applies() {
    let sb = Sandbox::new();
    let (cfg, _g) = up(&sb, TWO);
    let (a, b) = (sb.pid_of(&cfg, "a").unwrap(), sb.pid_of(&cfg, "b").unwrap());
    std::fs::write(&cfg, "[services.a]\ncommand = [\"sleep\", ").unwrap();
    assert!(wait_for(LONG, || reloads_failed(&sb) >= 1));
    assert_eq!(generation(&sb), 0);
    assert_eq!(
        (sb.pid_of(&cfg, "a"), sb.pid_of(&cfg, "b")),
        (Some(a), Some(b))
    );
    let (_, d) = sb.get_json("/diagnostics");
    let err = d["guardian"]["last_reload_error"].as_str().unwrap();
    assert!(err.contains("g.toml:2:") && err.contains("error:"), "{err}");
    std::fs::write(&cfg, TWO.replace("301", "304")).unwrap();
    assert!(wait_for(LONG, || generation(&sb) == 1));
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "b")
        .is_some_and(|p| p != b)));
    assert_eq!(sb.pid_of(&cfg, "a"), Some(a));
}

#[test]
fn a_burst_of_writes_gives_one_reload_and_reading_gives_none() {
    let sb = Sandbox::new();
    let (cfg, _g) = up(&sb, TWO);
    // Reading the file is not a change.
    for _ in 0..5 {
        let _ = std::fs::read_to_string(&cfg).unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(generation(&sb), 0);
    for i in 0..10 {
        std::fs::write(
            &cfg,
            format!("{TWO}[services.a.backoff]\nmax_retries = {}\n", 10 + i),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(wait_for(LONG, || generation(&sb) >= 1));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(generation(&sb), 1, "{:?}", sb.events("guardian"));
}

#[test]
fn a_deleted_and_recreated_file_is_still_watched() {
    let sb = Sandbox::new();
    let (cfg, _g) = up(&sb, TWO);
    std::fs::remove_file(&cfg).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(
        &cfg,
        format!("{TWO}[services.b.backoff]\nmax_retries = 2\n"),
    )
    .unwrap();
    assert!(wait_for(LONG, || sb
        .events("b")
        .iter()
        .any(|e| e["action"] == "reload")));
    let before = generation(&sb);
    save(
        &cfg,
        &format!("{TWO}[services.b.backoff]\nmax_retries = 3\n"),
    );
    assert!(wait_for(LONG, || generation(&sb) > before));
}

#[test]
fn reload_command_prints_the_diff_and_sighup_reloads() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        &format!("[guardian]\nwatch_config = false\n{TWO}"),
    );
    let g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "b").is_some()));
    std::fs::write(
        &cfg,
        format!("[guardian]\nwatch_config = false\n{}[services.c]\ncommand = [\"sleep\", \"305\"]\n[services.a.backoff]\nmax_retries = 1\n", TWO.replace("301", "306")),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(generation(&sb), 0, "watch_config = false");
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.all());
    for line in [
        "+ c",
        "~ b (restarted: command changed)",
        "= a (policies updated",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
    assert!(out.stdout.contains("config generation 1"), "{}", out.stdout);

    std::fs::write(&cfg, "[services.a]\ncommand = 5\n").unwrap();
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("the running config stays"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("command"), "{}", out.stderr);
    assert!(sb.pid_of(&cfg, "c").is_some());

    std::fs::write(&cfg, format!("[guardian]\nwatch_config = false\n{TWO}")).unwrap();
    kill(g.pid(), Signal::SIGHUP);
    assert!(wait_for(LONG, || sb.service(&cfg, "c").is_null()));
    assert_eq!(generation(&sb), 2);
}

#[test]
fn a_changed_api_listen_is_rebound_on_reload() {
    let sb = Sandbox::new();
    let (a, b) = (free_port(), free_port());
    let text = |port: u16| {
        format!(
            "[guardian]\nwatch_config = false\n[guardian.api]\nlisten = \"127.0.0.1:{port}\"\n{TWO}"
        )
    };
    let cfg = sb.write("g.toml", &text(a));
    let _g = sb.start(&cfg);
    let get = |port: u16| {
        http(
            Target::Tcp(&format!("127.0.0.1:{port}")),
            "GET",
            "/status",
            &[],
            b"",
        )
        .0
    };
    assert!(wait_for(LONG, || get(a) == 200));
    std::fs::write(&cfg, text(b)).unwrap();
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("= guardian (api)"), "{}", out.stdout);
    assert!(wait_for(LONG, || get(b) == 200));
    assert!(wait_for(LONG, || get(a) == 0), "the old address is closed");
}

#[test]
fn a_moved_events_file_takes_the_next_events() {
    let sb = Sandbox::new();
    let text = |extra: &str| format!("[guardian]\nwatch_config = false\n{extra}{TWO}");
    let cfg = sb.write("g.toml", &text(""));
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "a").is_some()));
    let moved = sb.path().join("moved.jsonl");
    std::fs::write(
        &cfg,
        text(&format!("events_file = \"{}\"\n", moved.display())),
    )
    .unwrap();
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(sb.client(&cfg, &["restart", "a"]).code, 0);
    assert!(wait_for(LONG, || std::fs::read_to_string(&moved)
        .is_ok_and(|t| t.contains("\"service\":\"a\""))));
    let out = sb.client(&cfg, &["events", "a", "--json"]);
    assert!(out.stdout.contains("\"action\":\"stop\""), "{}", out.stdout);
}
