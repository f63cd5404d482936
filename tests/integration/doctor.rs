//! `guardian doctor`: the report, its next steps and its exit code.

use std::time::Duration;

use crate::support::*;

#[test]
fn doctor_names_a_stale_pid_file_and_a_foreign_port_holder() {
    let sb = Sandbox::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = sb.write(
        "g.toml",
        &format!("[services.web]\ncommand = [\"sleep\", \"300\"]\nport = {port}\n"),
    );
    // A PID that surely ended: a child of ours, reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    std::fs::set_permissions(
        sb.state_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(sb.state_dir().join("web.pid"), gone.to_string()).unwrap();
    let out = sb.client(&cfg, &["doctor"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let me = std::process::id();
    for want in [
        "✓ valid",
        "not running",
        "process gone",
        "stale",
        &format!("port {port} is held by a foreign process: pid {me}"),
        &format!("ss -ltnp 'sport = :{port}'"),
        &format!("rm {}", sb.state_dir().join("web.pid").display()),
        "Next steps:",
        "1. ",
    ] {
        assert!(out.stdout.contains(want), "{want}:\n{}", out.stdout);
    }
    // Doctor changes nothing.
    assert!(sb.state_dir().join("web.pid").exists());
    drop(listener);
}

#[test]
fn doctor_is_quiet_when_all_is_well() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.web]\ncommand = [\"sleep\", \"300\"]\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(Duration::from_secs(30), || sb
        .pid_of(&cfg, "web")
        .is_some()));
    let out = sb.client(&cfg, &["doctor"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("no problems found"), "{}", out.stdout);
    assert!(out.stdout.contains("verified"), "{}", out.stdout);
    assert!(out.stdout.contains("state running"), "{}", out.stdout);
    let bad = sb.write("bad.toml", "[services.web]\ncomand = 1\n");
    let out = sb.client(&bad, &["doctor"]);
    // A config that does not load is a config error (exit 2), shown with the rest.
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.contains("invalid") && out.stdout.contains("command"),
        "{}",
        out.stdout
    );
}
