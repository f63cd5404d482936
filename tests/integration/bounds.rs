//! SPEC §11 against real processes and sockets: output floods, events rotation and memory,
//! half-open API connections, health rounds that outlast their interval, bodies of any content.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use guardian::api::HEAD_DEADLINE;

use crate::support::*;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn a_service_that_never_writes_a_newline_is_drained_and_guardian_stays_small() {
    let sb = Sandbox::new();
    let done = sb.path().join("done");
    // 400 MiB of NUL bytes: not one newline.
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.flood]\ncommand = [\"sh\", \"-c\", \"head -c 419430400 /dev/zero; touch {}; exec sleep 300\"]\nlog = {{ max_size_mb = 1, backup_count = 1 }}\n",
            done.display()
        ),
    );
    let g = sb.start(&cfg);
    assert!(
        wait_for(Duration::from_secs(240), || done.exists()),
        "the service's writes never finished: guardian did not drain its pipe"
    );
    let peak_mib = proc_status_kib(g.pid(), "VmHWM") / 1024;
    assert!(
        peak_mib < 64,
        "guardian's peak RSS was {peak_mib} MiB while a service wrote 400 MiB without a newline"
    );
    // Every line in the log is a piece of at most 64 KiB.
    // The log rotates at 1 MiB: between its rename and the next write there is only the
    // rotated file.
    let logs = sb.state_dir().join("logs");
    let log = std::fs::read(logs.join("flood.log"))
        .or_else(|_| std::fs::read(logs.join("flood.log.1")))
        .unwrap();
    let lines: Vec<&[u8]> = log.split(|b| *b == b'\n').collect();
    assert!(lines.len() > 1, "no line was cut");
    assert!(
        lines.iter().all(|l| l.len() <= 64 * 1024),
        "a log line is longer than 64 KiB: {:?}",
        lines.iter().map(|l| l.len()).max()
    );
    assert_eq!(sb.service(&cfg, "flood")["state"], "running");
}

fn write_events(path: &Path, service: &str, lines: usize, marker: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..lines {
        writeln!(
            f,
            r#"{{"timestamp": {i}.0, "timestamp_iso": "x", "service": "{service}", "action": "note", "trigger": "test", "health_status": null, "success": true, "duration_ms": null, "error_message": null, "detail": "{marker} {i}"}}"#
        )
        .unwrap();
    }
}

#[test]
fn events_rotate_keep_their_backup_count_and_are_answered_from_memory() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[guardian]\nevents_max_size_mb = 1\nevents_backup_count = 2\n[services.svc]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let events = sb.state_dir().join("events.jsonl");
    let backup = |n: u32| sb.state_dir().join(format!("events.jsonl.{n}"));
    for round in 0..3 {
        // A file just over 1 MiB: guardian's first event rotates it.
        write_events(&events, "svc", 7_000, &format!("round{round}"));
        let mut g = sb.start(&cfg);
        assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
        if round == 0 {
            // The events of the file guardian started with are answered, newest last.
            let (code, body) = sb.get_json("/services/svc/events?n=200");
            assert_eq!(code, 200);
            let details: Vec<String> = body
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["detail"].as_str().map(str::to_owned))
                .collect();
            assert!(details.iter().any(|d| d == "round0 6999"), "{details:?}");
            let all = sb.get_json("/events?n=5").1;
            assert_eq!(all.as_array().unwrap().len(), 5);
            assert_eq!(all[4]["service"], "svc");
        }
        assert_eq!(g.stop(), Some(0));
    }
    assert!(backup(1).exists(), "events.jsonl.1 is missing");
    assert!(backup(2).exists(), "events.jsonl.2 is missing");
    assert!(
        !backup(3).exists(),
        "events.jsonl.3 exists with a backup count of 2"
    );
    assert!(std::fs::metadata(&events).unwrap().len() < 1024 * 1024);
}

#[test]
fn three_hundred_half_open_connections_leave_the_api_answering() {
    let sb = Sandbox::new();
    let (api, addr) = sb.api_section("tok");
    let cfg = sb.write(
        "g.toml",
        &format!("{api}[services.svc]\ncommand = [\"sleep\", \"300\"]\n"),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
    // 300 connections that start a request head and never finish it. Each one's deadline
    // starts when guardian accepts it, so never before this instant.
    let opened = Instant::now();
    let mut half_open: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n").unwrap();
            s
        })
        .collect();
    // The Unix socket answers at once, whatever happens on TCP.
    let (code, body) = sb.get_json("/status");
    assert_eq!(code, 200);
    assert_eq!(body["services"][0]["name"], "svc");
    // TCP holds 256 connections at once: the 301st is served only once the head deadline
    // (10 s) has closed the stalled ones ahead of it. Without the cap it would be answered
    // at once; without the deadline, never.
    let (code, body) = http(Target::Tcp(&addr), "GET", "/status", &[], b"");
    let waited = opened.elapsed();
    assert_eq!(code, 200, "{body}");
    assert!(
        waited >= HEAD_DEADLINE - Duration::from_secs(1),
        "answered after {waited:?}: more than 256 connections were served at once"
    );
    // Every stalled connection was closed by guardian (end of stream, not our timeout).
    for (i, s) in half_open.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let mut buf = Vec::new();
        let end = s.read_to_end(&mut buf);
        assert!(
            end.is_ok(),
            "stalled connection {i} was not closed: {end:?}"
        );
    }
    assert!(opened.elapsed() >= HEAD_DEADLINE - Duration::from_secs(1));
    // An idle keep-alive connection is closed as well, after its answer, by the same deadline.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let asked = Instant::now();
    let mut all = Vec::new();
    let end = idle.read_to_end(&mut all);
    let idled = asked.elapsed();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(end.is_ok(), "the idle connection was not closed: {end:?}");
    assert!(
        idled >= HEAD_DEADLINE - Duration::from_secs(1),
        "the idle connection was closed after {idled:?}, before the deadline"
    );
}

#[test]
fn health_rounds_never_overlap_when_a_check_outlasts_the_interval() {
    let sb = Sandbox::new();
    let marks = sb.path().join("marks");
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.svc]\ncommand = [\"sleep\", \"300\"]\n[services.svc.health]\ninterval = \"200ms\"\ntimeout = \"3s\"\nchecks = [{{ kind = \"exec\", command = [\"sh\", \"-c\", \"echo start >> {m}; sleep 0.7; echo end >> {m}\"] }}]\n",
            m = marks.display()
        ),
    );
    let _g = sb.start(&cfg);
    let rounds = || {
        std::fs::read_to_string(&marks)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "end")
            .count()
    };
    assert!(wait_for(LONG, || rounds() >= 3), "fewer than 3 rounds ran");
    let text = std::fs::read_to_string(&marks).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Strictly start, end, start, end: a round begins only after the previous one ended.
    for (i, l) in lines.iter().enumerate() {
        let want = if i % 2 == 0 { "start" } else { "end" };
        assert_eq!(*l, want, "rounds overlapped: {lines:?}");
    }
    // A check that takes longer than the interval but less than the timeout is healthy.
    assert_eq!(sb.service(&cfg, "svc")["health"], "healthy");
}

#[test]
fn api_bodies_of_any_content_are_refused_cleanly() {
    use rand::{RngExt, SeedableRng};
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.svc]\ncommand = [\"sleep\", \"300\"]\n");
    let g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
    let sock = sb.state_dir().join("guardian.sock");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let paths = [
        "/services/svc/nonsense",
        "/services/%ff%fe/start",
        "/services/nobody/restart",
        "/status",
        "/events?n=notanumber",
        "/services/svc/events?n=99999999999999999999",
    ];
    for i in 0..120 {
        let body: Vec<u8> = (0..rng.random_range(0..2048))
            .map(|_| rng.random::<u8>())
            .collect();
        let path = paths[i % paths.len()];
        let method = if i % 2 == 0 { "POST" } else { "GET" };
        let (code, text) = http(Target::Unix(&sock), method, path, &[], &body);
        // 0: guardian answered before the body arrived and closed the connection, so the
        // kernel reset it under the client; anything else is an HTTP answer below 500.
        assert!(
            code == 0 || (200..500).contains(&code),
            "{method} {path} with {} random bytes: {code} {text}",
            body.len()
        );
    }
    assert!(alive(g.pid()));
    assert_eq!(sb.get_json("/status").0, 200);
    assert_eq!(sb.service(&cfg, "svc")["state"], "running");
}

/// Descriptors guardian holds for each running service: guardian with 120 services against
/// guardian with 80, both settled, divided by the 40 more. Both run more services than
/// guardian keeps log files open (64), so the open logs cancel out. `stdio`: where guardian's
/// stdout and stderr go ("one" file for both, or "two" streams).
fn fds_per_service(guardian_section: &str, stdio: &str) -> f64 {
    let mut counts = Vec::new();
    for n in [80, 120] {
        let sb = Sandbox::new();
        let services: String = (0..n)
            .map(|i| {
                format!(
                    "[services.s{i}]\ncommand = [\"sh\", \"-c\", \"echo out{i}; echo err{i} >&2; exec sleep 300\"]\n"
                )
            })
            .collect();
        let cfg = sb.write("g.toml", &format!("{guardian_section}{services}"));
        let out = std::fs::File::create(sb.path().join("guardian.out")).unwrap();
        let err = match stdio {
            "one" => out.try_clone().unwrap(),
            _ => std::fs::File::create(sb.path().join("guardian.stderr")).unwrap(),
        };
        let mut c = sb.run_cmd(&cfg);
        c.stdout(out).stderr(err);
        let mut g = GuardianUnderTest {
            child: c.spawn().unwrap(),
            state_dir: sb.state_dir(),
            config: cfg.clone(),
        };
        assert!(
            wait_for(LONG, || {
                let s = sb.status_json(&cfg);
                s["services"]
                    .as_array()
                    .is_some_and(|a| a.len() == n && a.iter().all(|s| s["state"] == "running"))
            }),
            "the services did not all start"
        );
        // Every service has written both lines (so the output path is in use), and the
        // client connections above are closed.
        let both = |i: usize| {
            let text = std::fs::read_to_string(sb.state_dir().join(format!("logs/s{i}.log")))
                .unwrap_or_default();
            text.contains(&format!("out{i}")) && text.contains(&format!("err{i}"))
        };
        assert!(wait_for(LONG, || (0..n).all(both)));
        // The count settles once the clients' connections above are closed.
        let fds = || {
            std::fs::read_dir(format!("/proc/{}/fd", g.pid()))
                .unwrap()
                .count()
        };
        let mut last = fds();
        assert!(wait_for(LONG, || {
            std::thread::sleep(Duration::from_millis(100));
            let now = fds();
            std::mem::replace(&mut last, now) == now
        }));
        counts.push(
            std::fs::read_dir(format!("/proc/{}/fd", g.pid()))
                .unwrap()
                .count() as f64,
        );
        if guardian_section.is_empty() && stdio == "one" {
            // Both streams are still echoed, each line with its service's prefix.
            let echoed = std::fs::read_to_string(sb.path().join("guardian.out")).unwrap();
            assert!(
                echoed.contains("s3 | out3") && echoed.contains("s3 | err3"),
                "{echoed}"
            );
        }
        assert_eq!(g.stop(), Some(0));
    }
    (counts[1] - counts[0]) / 40.0
}

#[test]
fn a_running_service_costs_guardian_two_descriptors() {
    // One stream for guardian's stdout and stderr (a terminal, journald, `>file 2>&1`): one
    // pipe per service carries both, plus its PID file's lock.
    let one = fds_per_service("", "one");
    assert!(one <= 2.0, "{one} descriptors per service");
    // Nothing echoed: the same.
    let quiet = fds_per_service("[guardian]\necho = false\n", "two");
    assert!(quiet <= 2.0, "{quiet} descriptors per service");
    // stdout and stderr as two streams (docker): stderr keeps its own pipe.
    let two = fds_per_service("", "two");
    assert!(two <= 3.0, "{two} descriptors per service");
}

/// `guardian status` reads a `/status` of several MiB: thousands of services are an ordinary
/// stack, and the client's cap on answers is for health checks, not for guardian itself.
#[test]
fn guardian_status_answers_for_thousands_of_services() {
    let sb = Sandbox::new();
    let name = "a_service_with_a_long_name_to_make_each_entry_bigger";
    let cfg = sb.write(
        "g.toml",
        &(1..=3)
            .map(|i| {
                format!("[services.{name}_{i}]\ncommand = [\"sleep\", \"300\"]\nreplicas = 1000\n")
            })
            .collect::<String>(),
    );
    let _g = sb.start(&cfg);
    assert!(
        wait_for(Duration::from_secs(120), || sb
            .get_json("/status?state=running")
            .1["services"]
            .as_array()
            .is_some_and(|a| a.len() == 3000)),
        "3000 replicas did not all start"
    );
    let (_, whole) = sb.get_json("/status");
    assert!(
        whole.to_string().len() > 1 << 20,
        "the answer is under 1 MiB"
    );
    let out = sb.client(&cfg, &["status"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout.lines().filter(|l| l.contains(name)).count(),
        3000,
        "{}",
        &out.stdout[..out.stdout.len().min(2000)]
    );
}
