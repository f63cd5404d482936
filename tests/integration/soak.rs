//! The soak (SPEC §11): SIGKILLs, reloads, an API hammered from two threads and a service
//! flooding its output, all at once; then the invariants. 60 s by default;
//! `GUARDIAN_SOAK_SECS=600 scripts/test soak` runs it longer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

const SERVICES: [&str; 4] = ["calm", "flood", "crashy", "web"];

fn config(sb: &Sandbox, round: u32) -> String {
    let _ = sb;
    format!(
        r#"[services.calm]
command = ["sleep", "3000"]
env = {{ ROUND = "{parity}" }}
[services.flood]
command = ["sh", "-c", "while :; do head -c 200000 /dev/zero | tr '\\0' 'x'; echo; sleep 0.02; done"]
log = {{ max_size_mb = 1, backup_count = 1 }}
[services.crashy]
command = ["sh", "-c", "sleep 1.5; exit 3"]
[services.crashy.backoff]
initial_delay = "50ms"
max_retries = 100000
reset_after = "1s"
[services.web]
command = ["sleep", "3001"]
[services.web.health]
interval = "{interval}ms"
checks = [{{ kind = "exec", command = ["true"] }}]
"#,
        parity = round % 2,
        interval = 200 + 100 * (round % 3),
    )
}

/// Guardian's direct children, with their state letter.
fn children(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        if rest.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(pid) {
            out.push((child, rest[0].chars().next().unwrap_or('?')));
        }
    }
    out
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn marked(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        std::str::from_utf8(kv)
            .ok()?
            .strip_prefix("_GUARDIAN_SERVICE=")
            .map(str::to_owned)
    })
}

/// Every invariant at once, or what broke.
fn invariants(sb: &Sandbox, cfg: &std::path::Path, guardian: i32) -> Result<(), String> {
    let kids = children(guardian);
    if let Some((z, _)) = kids.iter().find(|(_, s)| *s == 'Z') {
        return Err(format!("zombie child {z}"));
    }
    for name in SERVICES {
        let leaders: Vec<i32> = kids
            .iter()
            .filter(|(p, _)| marked(*p).as_deref() == Some(name))
            .map(|(p, _)| *p)
            .collect();
        let s = sb.service(cfg, name);
        if s["state"] != "running" {
            return Err(format!("{name} is {}", s["state"]));
        }
        if leaders.len() != 1 {
            return Err(format!(
                "{name} has {} instances: {leaders:?}",
                leaders.len()
            ));
        }
        let pid = s["pid"].as_i64().unwrap_or_default() as i32;
        let file = std::fs::read_to_string(sb.state_dir().join(format!("{name}.pid")))
            .map_err(|e| format!("{name}.pid: {e}"))?;
        let record: serde_json::Value =
            serde_json::from_str(&file).map_err(|e| format!("{name}.pid: {e}"))?;
        if record["pid"].as_i64() != Some(i64::from(pid)) || leaders[0] != pid || !alive(pid) {
            return Err(format!(
                "{name}.pid says {} but the instance is {pid} (leaders {leaders:?})",
                record["pid"]
            ));
        }
    }
    Ok(())
}

#[test]
fn soak_kills_reloads_api_and_floods_at_once_then_holds_every_invariant() {
    let secs: u64 = std::env::var("GUARDIAN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", &config(&sb, 0));
    let g = sb.start(&cfg);
    let guardian = g.pid();
    let settle = Duration::from_secs(60);
    let mut why = String::new();
    assert!(
        wait_for(settle, || invariants(&sb, &cfg, guardian)
            .map_err(|e| why = e)
            .is_ok()),
        "before the soak: {why}"
    );
    let baseline = fd_count(guardian);

    let stop = Arc::new(AtomicBool::new(false));
    let sock = sb.state_dir().join("guardian.sock");
    let hammers: Vec<_> = (0..2)
        .map(|i| {
            let (stop, sock) = (stop.clone(), sock.clone());
            std::thread::spawn(move || {
                let paths = ["/status", "/metrics", "/events", "/health", "/diagnostics"];
                let mut n = 0usize;
                let mut bad = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (code, _) = http(Target::Unix(&sock), "GET", paths[(n + i) % 5], &[], b"");
                    if code != 200 && code != 503 {
                        bad.push((paths[(n + i) % 5], code));
                    }
                    n += 1;
                }
                (n, bad)
            })
        })
        .collect();

    let end = Instant::now() + Duration::from_secs(secs);
    // Memory is sampled halfway, once every ring and cache has filled, and after the soak.
    let half = Instant::now() + Duration::from_secs(secs / 2);
    let mut rss_half = None;
    let mut round = 0u32;
    let mut kills = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(300));
        if rss_half.is_none() && Instant::now() >= half {
            rss_half = Some(proc_status_kib(guardian, "VmRSS"));
        }
        let name = SERVICES[kills % SERVICES.len()];
        if let Some(pid) = sb.pid_of(&cfg, name) {
            kill(pid, nix::sys::signal::Signal::SIGKILL);
            kills += 1;
        }
        if kills % 7 == 0 {
            round += 1;
            std::fs::write(&cfg, config(&sb, round)).unwrap();
            let _ = sb.client(&cfg, &["reload"]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    for h in hammers {
        let (n, bad) = h.join().unwrap();
        assert!(bad.is_empty(), "API answers during the soak: {bad:?}");
        requests += n;
    }
    assert!(alive(guardian), "guardian died during the soak");
    assert!(
        wait_for(settle, || invariants(&sb, &cfg, guardian)
            .map_err(|e| why = e)
            .is_ok()),
        "after {kills} kills, {round} reloads and {requests} API requests: {why}"
    );
    let mut now = 0;
    assert!(
        wait_for(settle, || {
            now = fd_count(guardian);
            now <= baseline
        }),
        "guardian holds {now} descriptors, {baseline} before the soak"
    );
    // Flat: the second half of the soak did not grow guardian's memory beyond a small bound.
    let (half_kib, end_kib) = (
        rss_half.expect("sampled halfway"),
        proc_status_kib(guardian, "VmRSS"),
    );
    assert!(
        end_kib <= half_kib + 4096,
        "guardian's RSS grew from {half_kib} KiB halfway to {end_kib} KiB after the soak"
    );
    eprintln!("soak: RSS {half_kib} KiB halfway, {end_kib} KiB after");
}
