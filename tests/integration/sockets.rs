//! SPEC §13: listening sockets held by guardian. Real sockets, real processes, the reference
//! server, and clients that count every refused connection and failed request.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

/// The socket inode behind `/proc/PID/fd/FD`.
fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inode of the TCP socket listening on `port` (/proc/net/tcp, state 0A).
fn listening_inode(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
        (local_port == port && f.get(3) == Some(&"0A")).then(|| f.get(9)?.parse().ok())?
    })
}

#[test]
fn held_sockets_are_passed_with_the_systemd_protocol() {
    let sb = Sandbox::new();
    let port = free_port();
    let unix = sb.path().join("app.sock");
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"[services.a]
command = ["sh", "-c", "echo \"$LISTEN_FDS $LISTEN_FDNAMES $LISTEN_PID $$\" > env; exec sleep 300"]
cwd = "."
sockets = {{ web = "tcp://127.0.0.1:{port}", admin = "unix://{}" }}
"#,
            unix.display()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "a").is_some()));
    let pid = sb.pid_of(&cfg, "a").unwrap();
    assert!(wait_for(LONG, || std::fs::read_to_string(
        sb.path().join("env")
    )
    .is_ok_and(|t| t.ends_with('\n'))));
    let env = std::fs::read_to_string(sb.path().join("env")).unwrap();
    // Names sorted: admin is fd 3, web fd 4; LISTEN_PID is the service's own PID.
    assert_eq!(env.trim(), format!("2 admin:web {pid} {pid}"));
    assert_eq!(
        socket_inode(pid, 4),
        listening_inode(port),
        "fd 4 is the tcp socket"
    );
    let unix_meta = std::fs::metadata(&unix).unwrap();
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    assert!(unix_meta.file_type().is_socket());
    assert_eq!(unix_meta.permissions().mode() & 0o777, 0o660);
    assert!(socket_inode(pid, 3).is_some(), "fd 3 is a socket");
    assert!(
        socket_inode(pid, 5).is_none(),
        "nothing beyond the two sockets"
    );
    // The port is the first tcp socket's, and status lists the sockets.
    let svc = sb.service(&cfg, "a");
    assert_eq!(svc["port"], port);
    assert_eq!(svc["sockets"]["web"], format!("tcp://127.0.0.1:{port}"));
    assert_eq!(
        svc["sockets"]["admin"],
        format!("unix://{}", unix.display())
    );
    // The running guardian holds the port on purpose: validate does not call it in use.
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
    let out = sb.client(&cfg, &["status", "a"]);
    assert!(
        out.stdout.contains(&format!(
            "sockets of a (held by guardian): admin unix://{}, web tcp://127.0.0.1:{port}",
            unix.display()
        )),
        "{}",
        out.stdout
    );
    // A connection made now is queued by the kernel (nobody accepts): never refused.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// The reference server behind a held socket, and a client that connects in a loop and
/// counts what goes wrong.
struct Loop {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    ok: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loop {
    fn start(port: u16) -> Loop {
        let stop = Arc::new(AtomicBool::new(false));
        let (refused, failed, ok) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, r, f, o) = (stop.clone(), refused.clone(), failed.clone(), ok.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut c = match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(c) => c,
                    Err(_) => {
                        r.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
                let mut answer = String::new();
                let done = c
                    .write_all(b"GET /health HTTP/1.0\r\nhost: x\r\n\r\n")
                    .and_then(|()| c.read_to_string(&mut answer));
                if done.is_ok() && answer.starts_with("HTTP/1.0 200") {
                    o.fetch_add(1, Ordering::Relaxed);
                } else {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Loop {
            stop,
            refused,
            failed,
            ok,
            thread: Some(thread),
        }
    }

    fn end(mut self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
        )
    }
}

fn server_config(sb: &Sandbox, port: u16, extra: &str) -> std::path::PathBuf {
    sb.write(
        "g.toml",
        &format!(
            r#"[services.web]
command = ["{}"]
sockets = {{ http = "tcp://127.0.0.1:{port}" }}
backoff = {{ initial_delay = "300ms", jitter = 0, max_retries = 100 }}
{extra}"#,
            example_bin("socketio_server").display()
        ),
    )
}

#[test]
fn crashes_refuse_no_connection_while_guardian_holds_the_socket() {
    let sb = Sandbox::new();
    let port = free_port();
    let cfg = server_config(&sb, port, "");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let client = Loop::start(port);
    let kills = 5;
    for _ in 0..kills {
        let pid = sb.pid_of(&cfg, "web").unwrap();
        kill(pid, Signal::SIGKILL);
        // 300 ms without any server: the connections wait in the backlog.
        assert!(wait_for(LONG, || sb
            .pid_of(&cfg, "web")
            .is_some_and(|p| p != pid)));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (refused, failed, ok) = client.end();
    assert_eq!(refused, 0, "connections refused while the socket was held");
    // A SIGKILL can break the one request the killed process was answering, no more.
    assert!(
        failed <= kills,
        "{failed} failed requests for {kills} kills"
    );
    assert!(ok > 0);
}

#[test]
fn replicas_share_the_held_socket() {
    let sb = Sandbox::new();
    let port = free_port();
    let cfg = server_config(&sb, port, "replicas = 2\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web.1").is_some()
        && sb.pid_of(&cfg, "web.2").is_some()));
    let (one, two) = (
        sb.pid_of(&cfg, "web.1").unwrap(),
        sb.pid_of(&cfg, "web.2").unwrap(),
    );
    let inode = listening_inode(port);
    assert!(inode.is_some());
    assert_eq!(socket_inode(one, 3), inode);
    assert_eq!(socket_inode(two, 3), inode);
    for n in ["web.1", "web.2"] {
        assert_eq!(sb.service(&cfg, n)["port"], port, "{n}");
    }
    // Both serve; killing one leaves the other serving: nothing refused.
    let client = Loop::start(port);
    kill(one, Signal::SIGKILL);
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "web.1")
        .is_some_and(|p| p != one)));
    let (refused, _, ok) = client.end();
    assert_eq!(refused, 0);
    assert!(ok > 0);
}

#[test]
fn a_reload_moves_a_socket_or_is_refused_naming_the_address() {
    let sb = Sandbox::new();
    let (first, second) = (free_port(), free_port());
    let cfg = server_config(&sb, first, "");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let pid = sb.pid_of(&cfg, "web").unwrap();
    // An address in use by someone else: the reload is refused, nothing moves.
    let taken = std::net::TcpListener::bind(("127.0.0.1", second)).unwrap();
    server_config(&sb, second, "");
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all().contains(&format!(
            "`services.web.sockets.http`: tcp://127.0.0.1:{second} is in use by pid {}",
            std::process::id()
        )),
        "{}",
        out.all()
    );
    assert_eq!(sb.pid_of(&cfg, "web"), Some(pid));
    assert!(listening_inode(first).is_some());
    // Free: the new socket is bound, the service restarts onto it, the old one closes.
    drop(taken);
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "web")
        .is_some_and(|p| p != pid)));
    let new = sb.pid_of(&cfg, "web").unwrap();
    assert_eq!(socket_inode(new, 3), listening_inode(second));
    assert!(
        wait_for(LONG, || listening_inode(first).is_none()),
        "the old socket is still open"
    );
}

#[test]
fn bad_socket_settings_are_config_errors_before_anything_starts() {
    let sb = Sandbox::new();
    let port = free_port();
    let table: &[(&str, &str)] = &[
        (
            "sockets = { http = \"127.0.0.1:80\" }",
            "`services.a.sockets.http`: `127.0.0.1:80` is not an address",
        ),
        (
            "sockets = { http = \"tcp://example.com:80\" }",
            "must be an IP address and a port",
        ),
        (
            "sockets = { http = \"unix://relative.sock\" }",
            "needs an absolute path",
        ),
        (
            "sockets = { \"a:b\" = \"tcp://127.0.0.1:8080\" }",
            "a socket name is letters",
        ),
        (
            "sockets = { http = \"tcp://127.0.0.1:8080\" }\nport_range = [9000, 9010]",
            "remove port_range",
        ),
    ];
    for (extra, want) in table {
        let cfg = sb.write(
            "g.toml",
            &format!("[services.a]\ncommand = [\"sleep\", \"300\"]\n{extra}\n"),
        );
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{extra}: {}", out.all());
        assert!(out.stderr.contains(want), "{want}:\n{}", out.stderr);
    }
    // Two services, one address (or one port on a wildcard address).
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sleep\", \"300\"]\nsockets = {{ http = \"tcp://127.0.0.1:{port}\" }}\n[services.b]\ncommand = [\"sleep\", \"301\"]\nsockets = {{ web = \"tcp://0.0.0.0:{port}\" }}\n"
        ),
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("is also held for service `a` (sockets.http)"),
        "{}",
        out.stderr
    );
    // A port in use: run exits 2 naming the holder, and starts nothing.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", \"touch started; exec sleep 300\"]\ncwd = \".\"\nsockets = {{ http = \"tcp://127.0.0.1:{port}\" }}\n[services.b]\ncommand = [\"sh\", \"-c\", \"touch b-started; exec sleep 300\"]\ncwd = \".\"\n"
        ),
    );
    let in_use = format!(
        "`services.a.sockets.http`: tcp://127.0.0.1:{port} is in use by pid {}",
        std::process::id()
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains(&in_use), "{}", out.stderr);
    let out = output(&mut sb.run_cmd(&cfg));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains(&in_use), "{}", out.stderr);
    assert!(!sb.path().join("started").exists() && !sb.path().join("b-started").exists());
    drop(taken);
}

#[test]
fn a_privileged_port_without_the_right_is_a_config_error() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nsockets = { http = \"tcp://127.0.0.1:81\" }\n",
    );
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (uid, gid) = (
        format!("--reuid={}", nobody.uid),
        format!("--regid={}", nobody.gid),
    );
    let setpriv = ["setpriv", &uid, &gid, "--clear-groups", "--inh-caps=-all"];
    let out = output(&mut sb.run_cmd_via(&setpriv, &cfg));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("port 81 is privileged"),
        "{}",
        out.stderr
    );
    assert!(!Path::new(&sb.state_dir().join("a.pid")).exists());
    // validate says the same, as nobody.
    let mut c = std::process::Command::new(setpriv[0]);
    c.args(&setpriv[1..])
        .arg(GUARDIAN)
        .args(["validate", "-c", cfg.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(sb.path());
    let out = output(&mut c);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("port 81 is privileged"),
        "{}",
        out.stderr
    );
}

/// SPEC §13: after a guardian crash the services keep serving on their copies of the
/// sockets; the next guardian adopts them and takes the sockets back from them (it cannot
/// bind what they hold), so a later crash still refuses nothing.
#[test]
fn a_new_guardian_takes_the_sockets_back_from_the_services_it_adopts() {
    let sb = Sandbox::new();
    let port = free_port();
    let unix = sb.path().join("admin.sock");
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"[services.web]
command = ["{}"]
sockets = {{ http = "tcp://127.0.0.1:{port}", admin = "unix://{}" }}
backoff = {{ initial_delay = "300ms", jitter = 0 }}
"#,
            example_bin("socketio_server").display(),
            unix.display()
        ),
    );
    let mut first = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let pid = sb.pid_of(&cfg, "web").unwrap();
    kill(first.pid(), Signal::SIGKILL);
    let _ = first.child.wait();
    assert!(alive(pid), "the service outlives a crashed guardian");
    let _second = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web") == Some(pid)));
    assert_eq!(sb.service(&cfg, "web")["adopted"], true);
    // The new guardian holds the very socket the service serves on.
    let inode = listening_inode(port).unwrap();
    let gpid = _second.pid();
    let holds = std::fs::read_dir(format!("/proc/{gpid}/task"))
        .unwrap()
        .flatten()
        .any(|t| {
            std::fs::read_dir(t.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| l.to_string_lossy() == format!("socket:[{inode}]"))
                })
        });
    assert!(holds, "the new guardian does not hold the socket");
    // So the adopted instance can crash without a refused connection.
    let client = Loop::start(port);
    kill(pid, Signal::SIGKILL);
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "web")
        .is_some_and(|p| p != pid)));
    std::thread::sleep(Duration::from_millis(200));
    let (refused, _, ok) = client.end();
    assert_eq!(refused, 0);
    assert!(ok > 0);
}

/// `doctor` names a service that binds the held port itself (EADDRINUSE in its log).
#[test]
fn doctor_names_a_service_that_binds_its_held_port_itself() {
    let sb = Sandbox::new();
    let port = free_port();
    require("python3", "python3");
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.py]\ncommand = [\"python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"{{port}}\"]\nsockets = {{ http = \"tcp://127.0.0.1:{port}\" }}\nbackoff = {{ initial_delay = \"50ms\", max_retries = 1 }}\n"
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.service(&cfg, "py")["state"] == "failed"));
    let out = sb.client(&cfg, &["doctor"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "it binds its own listener (port {port}) while guardian holds the socket"
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("LISTEN_FDS"), "{}", out.stdout);
}

/// `restart_strategy = "start-first"`: `guardian restart` starts the new instance, waits
/// until it says READY=1 (the reference server does once its listener is up), then stops the
/// old one, which drains: under a connect loop, no connection is refused and no request fails.
#[test]
fn a_start_first_restart_refuses_nothing_and_fails_nothing() {
    let sb = Sandbox::new();
    let port = free_port();
    let cfg = server_config(
        &sb,
        port,
        "restart_strategy = \"start-first\"\nready = \"notify\"\nshutdown_timeout = \"5s\"\n[services.web.health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\nchecks = [{ kind = \"http\", path = \"/health\" }]\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let client = Loop::start(port);
    let mut pids = vec![sb.pid_of(&cfg, "web").unwrap()];
    for _ in 0..3 {
        let out = sb.client(&cfg, &["restart", "web"]);
        assert_eq!(out.code, 0, "{}", out.all());
        let old = *pids.last().unwrap();
        let new = sb.pid_of(&cfg, "web").unwrap();
        assert_ne!(new, old);
        assert!(
            out.stdout.contains(&format!(
                "web restarted start-first: pid {new} serves, pid {old} drains"
            )),
            "{}",
            out.stdout
        );
        // The old one drains, then is gone (guardian has reaped it); its row with it.
        assert!(wait_for(LONG, || !alive(old)));
        assert!(wait_for(LONG, || sb
            .service(&cfg, "web.draining")
            .is_null()));
        pids.push(new);
    }
    let (refused, failed, ok) = client.end();
    assert_eq!((refused, failed), (0, 0), "{ok} answered");
    assert!(ok > 0);
    assert!(wait_for(LONG, || sb
        .actions("web")
        .iter()
        .filter(|a| *a == "drained")
        .count()
        == 3));
    let actions: Vec<String> = sb
        .actions("web")
        .into_iter()
        .filter(|a| ["start_first", "draining", "drained"].contains(&a.as_str()))
        .collect();
    assert_eq!(
        actions,
        ["start_first", "draining", "drained"].repeat(3),
        "{actions:?}"
    );
    assert!(wait_for(LONG, || sb
        .service(&cfg, "web.draining")
        .is_null()));
}

/// A reload that changes how the service starts replaces it start-first too.
#[test]
fn a_reload_of_a_start_first_service_starts_the_new_instance_first() {
    let sb = Sandbox::new();
    let port = free_port();
    let extra = "restart_strategy = \"start-first\"\nready = \"notify\"\n";
    let cfg = server_config(&sb, port, extra);
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let old = sb.pid_of(&cfg, "web").unwrap();
    let client = Loop::start(port);
    server_config(&sb, port, &format!("{extra}env = {{ MODE = \"two\" }}\n"));
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || !alive(old)));
    let new = sb.pid_of(&cfg, "web").unwrap();
    assert_ne!(new, old);
    let environ = std::fs::read(format!("/proc/{new}/environ")).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains("MODE=two"));
    let (refused, failed, ok) = client.end();
    assert_eq!((refused, failed), (0, 0), "{ok} answered");
    // Its end is recorded once guardian has reaped it.
    assert!(wait_for(LONG, || sb
        .actions("web")
        .iter()
        .any(|a| a == "drained")));
    let actions = sb.actions("web");
    let at = |a: &str| actions.iter().position(|x| x == a);
    assert!(
        at("start_first") < at("draining") && at("draining") < at("drained"),
        "{actions:?}"
    );
}

/// A new instance that never becomes ready leaves the old one serving, with an event; the
/// draining row shows while the new one starts.
#[test]
fn a_start_first_restart_whose_new_instance_fails_keeps_the_old_one() {
    let sb = Sandbox::new();
    let port = free_port();
    // The first start serves; every later one exits at once (the flag file is there then).
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"[services.web]
command = ["sh", "-c", "[ -e started ] && sleep 1 && exit 3; touch started; exec {} --port {{port}}"]
cwd = "."
sockets = {{ http = "tcp://127.0.0.1:{port}" }}
restart_strategy = "start-first"
ready = "notify"
backoff = {{ initial_delay = "100ms", jitter = 0 }}
[services.web.health]
interval = "200ms"
timeout = "150ms"
checks = [{{ kind = "http", path = "/health" }}]
"#,
            example_bin("socketio_server").display()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let old = sb.pid_of(&cfg, "web").unwrap();
    let restart = {
        let (cfg, sb_dir) = (cfg.clone(), sb.state_dir());
        std::thread::spawn(move || {
            let mut c = std::process::Command::new(GUARDIAN);
            c.args(["restart", "web", "-c", cfg.to_str().unwrap(), "--state-dir"])
                .arg(&sb_dir);
            output(&mut c)
        })
    };
    // While the new one starts, the old one has its own row.
    assert!(wait_for(LONG, || sb.service(&cfg, "web.draining")["state"]
        == "draining"));
    assert_eq!(sb.service(&cfg, "web.draining")["pid"], old);
    let out = restart.join().unwrap();
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains(&format!(
            "the new instance did not become ready (exit code 3); pid {old} serves on"
        )),
        "{}",
        out.all()
    );
    assert_eq!(sb.pid_of(&cfg, "web"), Some(old));
    assert!(sb.service(&cfg, "web.draining").is_null());
    assert!(
        std::fs::read_to_string(sb.state_dir().join("web.pid"))
            .unwrap()
            .contains(&format!("\"pid\": {old}"))
    );
    // It still serves, and still restarts when it crashes.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn start_first_without_sockets_or_notify_readiness_is_a_config_error() {
    let sb = Sandbox::new();
    for (extra, want) in [
        ("port = 8080\n", "start-first needs `sockets`"),
        (
            "sockets = { http = \"tcp://127.0.0.1:8080\" }\nhealth = { checks = [{ kind = \"http\", path = \"/\" }] }\n",
            "start-first needs ready = \"notify\"",
        ),
    ] {
        let cfg = sb.write(
            "g.toml",
            &format!(
                "[services.a]\ncommand = [\"sleep\", \"300\"]\nrestart_strategy = \"start-first\"\n{extra}"
            ),
        );
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(
            out.stderr.contains("`services.a.restart_strategy`") && out.stderr.contains(want),
            "{}",
            out.stderr
        );
    }
}

/// IPv6 addresses bind, and a unix socket belongs to the service's user and group.
#[test]
fn ipv6_and_unix_sockets_bind_with_the_services_user() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    let port = free_port();
    let unix = sb.path().join("app.sock");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sleep\", \"300\"]\nuser = \"nobody\"\nsockets = {{ v6 = \"tcp://[::1]:{port}\", local = \"unix://{}\" }}\n",
            unix.display()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "a").is_some()));
    assert!(std::net::TcpStream::connect(("::1", port)).is_ok());
    let meta = std::fs::metadata(&unix).unwrap();
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    assert_eq!(meta.gid(), nobody.gid.as_raw());
    assert_eq!(
        sb.service(&cfg, "a")["sockets"]["v6"],
        format!("tcp://[::1]:{port}")
    );
}

/// A guardian that crashes while an old instance drains: the next guardian finds it by its
/// set-aside PID file (NAME.pid.draining), proves it, and stops it.
#[test]
fn a_drain_left_by_a_crashed_guardian_is_finished_by_the_next() {
    let notify = require("systemd-notify", "systemd");
    let sb = Sandbox::new();
    let port = free_port();
    // Each instance ignores SIGTERM (so the old one drains until SIGKILL) and says READY=1.
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.web]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; {} --ready; exec sleep 300\"]\nsockets = {{ http = \"tcp://127.0.0.1:{port}\" }}\nrestart_strategy = \"start-first\"\nready = \"notify\"\nshutdown_timeout = \"2s\"\nidentity = {{ patterns = [\"sleep\", \"300\"] }}\n",
            notify.display()
        ),
    );
    let mut first = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let old = sb.pid_of(&cfg, "web").unwrap();
    let out = sb.client(&cfg, &["restart", "web"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let new = sb.pid_of(&cfg, "web").unwrap();
    // The old one drains (it ignores SIGTERM); guardian dies before its 2 s are over.
    kill(first.pid(), Signal::SIGKILL);
    let _ = first.child.wait();
    let aside = sb.state_dir().join("web.pid.draining");
    assert!(aside.exists() && alive(old));
    let _second = sb.start(&cfg);
    assert!(
        wait_for(LONG, || !alive(old)),
        "the old instance was left running"
    );
    assert!(wait_for(LONG, || !aside.exists()));
    assert_eq!(sb.pid_of(&cfg, "web"), Some(new), "the new one was adopted");
    assert!(wait_for(LONG, || sb
        .actions("web")
        .iter()
        .any(|a| a == "drained")));
}
