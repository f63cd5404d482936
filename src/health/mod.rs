//! Health checks, the IO half: tcp, http, exec and the resources of the process tree, run
//! concurrently under the check timeout. Verdicts come from `policy::health`. A check that
//! cannot decide says `unknown`, never healthy.

pub mod http;
pub mod resources;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::join_all;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{CheckSpec, ResourcesSpec, Threshold};
use crate::policy::health::{Status, judge};
use resources::{ProcessInfo, Sample};

/// Everything one service's checks need, placeholders already expanded.
#[derive(Clone, Debug)]
pub struct Probe {
    pub host: String,
    pub port: Option<u16>,
    pub pid: i32,
    pub checks: Vec<CheckSpec>,
    pub resources: ResourcesSpec,
    pub timeout: Duration,
    pub cwd: Option<PathBuf>,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub status: Status,
    pub message: String,
    pub duration_ms: f64,
}

/// One round of every check.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tick {
    pub status: Status,
    pub results: Vec<CheckResult>,
    pub process: Option<ProcessInfo>,
}

impl Tick {
    /// The messages of the checks that were not healthy.
    pub fn problems(&self) -> String {
        self.results
            .iter()
            .filter(|r| r.status != Status::Healthy)
            .map(|r| format!("{}: {}", r.check, r.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The span of the two samples of a first CPU figure.
const CPU_FIRST_SPAN: Duration = Duration::from_millis(200);

/// Keeps the previous CPU sample between ticks.
#[derive(Default)]
pub struct Sampler {
    prev: Option<(Sample, Instant)>,
}

impl Probe {
    pub fn has_checks(&self) -> bool {
        !self.checks.is_empty() || !self.resources.is_empty()
    }

    /// Runs every check at once; the tick's status is the worst result.
    pub async fn tick(&self, sampler: &mut Sampler) -> Tick {
        let pid = self.pid;
        let read = || async move {
            let s = tokio::task::spawn_blocking(move || resources::sample(pid))
                .await
                .ok()
                .flatten();
            (s, Instant::now())
        };
        let checks = join_all(self.checks.iter().map(|c| self.run(c)));
        // /proc is read only when thresholds need it; the API reads it on request otherwise.
        let measure = !self.resources.is_empty();
        let sample = async {
            if !measure {
                return (None, Instant::now());
            }
            // A first CPU figure needs two samples: take a second one shortly after.
            if sampler.prev.is_none() && self.resources.cpu_percent.is_some() {
                if let (Some(s), t) = read().await {
                    sampler.prev = Some((s, t));
                }
                tokio::time::sleep(CPU_FIRST_SPAN).await;
            }
            read().await
        };
        let (mut results, (sample, now)) = tokio::join!(checks, sample);
        let process = sample.as_ref().map(|s| ProcessInfo {
            // A first sample (thresholds without CPU) shows the average over the process's
            // life, as the API does before the first tick: the figure never comes and goes.
            cpu_percent: match sampler.prev.as_ref() {
                Some((p, t)) => {
                    resources::cpu_percent(p, s, now.saturating_duration_since(*t).as_secs_f64())
                }
                None => resources::life_cpu_percent(s),
            },
            ..s.info.clone()
        });
        sampler.prev = sample.map(|s| (s, now));
        if !self.resources.is_empty() {
            results.push(judge_resources(&self.resources, process.as_ref()));
        }
        Tick {
            status: Status::worst(results.iter().map(|r| r.status)),
            results,
            process,
        }
    }

    async fn run(&self, check: &CheckSpec) -> CheckResult {
        let t0 = Instant::now();
        let (name, status, message) = match check {
            CheckSpec::Tcp {} => {
                let (s, m) = self.bounded(self.tcp()).await;
                ("tcp".to_owned(), s, m)
            }
            CheckSpec::Http {
                path,
                expect_status,
                body_contains,
            } => {
                let (s, m) = self
                    .bounded(self.http(path, *expect_status, body_contains.as_deref()))
                    .await;
                (format!("http {path}"), s, m)
            }
            CheckSpec::Exec { command } => {
                let (s, m) = run_command(command, self.cwd.as_deref(), self.timeout).await;
                (format!("exec {}", command.join(" ")), s, m)
            }
        };
        CheckResult {
            check: name,
            status,
            message,
            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// A check that does not answer within the timeout is critical.
    async fn bounded(&self, f: impl Future<Output = (Status, String)>) -> (Status, String) {
        tokio::time::timeout(self.timeout, f).await.unwrap_or((
            Status::Critical,
            format!(
                "no answer within the timeout of {}",
                crate::config::duration::Secs(self.timeout)
            ),
        ))
    }

    fn port(&self) -> Result<u16, (Status, String)> {
        self.port
            .ok_or((Status::Unknown, "the service has no port".to_owned()))
    }

    async fn tcp(&self) -> (Status, String) {
        let port = match self.port() {
            Ok(p) => p,
            Err(e) => return e,
        };
        match tokio::net::TcpStream::connect((self.host.as_str(), port)).await {
            Ok(_) => (Status::Healthy, format!("{}:{port} accepts", self.host)),
            Err(e) => (
                Status::Critical,
                format!("cannot connect to {}:{port}: {e}", self.host),
            ),
        }
    }

    async fn http(&self, path: &str, expect: u16, contains: Option<&str>) -> (Status, String) {
        let port = match self.port() {
            Ok(p) => p,
            Err(e) => return e,
        };
        match http::request_tcp(&self.host, port, "GET", path).await {
            Err(e) => (Status::Critical, format!("GET {path}: {e}")),
            Ok((code, _)) if code != expect => (
                Status::Critical,
                format!("GET {path} answered {code}, expected {expect}"),
            ),
            Ok((_, body)) => match contains {
                Some(want) if !String::from_utf8_lossy(&body).contains(want) => (
                    Status::Critical,
                    format!("GET {path}: the body does not contain `{want}`"),
                ),
                _ => (Status::Healthy, format!("GET {path} answered {expect}")),
            },
        }
    }
}

/// Runs a command in its own process group; exit 0 is healthy. At the timeout the whole
/// group is killed, so nothing it started is left behind.
pub async fn run_command(
    command: &[String],
    cwd: Option<&std::path::Path>,
    timeout: Duration,
) -> (Status, String) {
    let Some(program) = command.first() else {
        return (Status::Unknown, "no command".into());
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(&command[1..]);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    match run_to_end(cmd, timeout).await {
        Ran::Exited { ok: true, .. } => (Status::Healthy, "exit 0".to_owned()),
        Ran::Exited { how, .. } => (Status::Critical, format!("`{program}` failed: {how}")),
        Ran::TimedOut => (
            Status::Critical,
            format!(
                "`{program}` did not finish within the timeout of {}; its process group was killed",
                crate::config::duration::Secs(timeout)
            ),
        ),
        Ran::CannotRun(e) => (Status::Unknown, format!("cannot run `{program}`: {e}")),
    }
}

/// How a command run by `run_to_end` ended.
#[derive(Debug, PartialEq)]
pub enum Ran {
    /// It exited (`ok`: with 0); `how` in words.
    Exited {
        ok: bool,
        how: String,
    },
    /// Past the timeout: its process group was killed.
    TimedOut,
    CannotRun(String),
}

/// Runs `cmd` in its own process group with stdin, stdout and stderr on the null device,
/// bounded by `timeout` (then the group is killed): an exec check, a clear_connections
/// command, an alert's exec sink. Under a running guardian it starts from the spawning
/// thread and is reaped with the services (see `spawn_check`).
pub async fn run_to_end(mut cmd: std::process::Command, timeout: Duration) -> Ran {
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let cmd = match crate::process::unix::spawn_check(cmd).await {
        Err(cmd) => cmd,
        Ok(Err(e)) => return Ran::CannotRun(e.to_string()),
        Ok(Ok(mut child)) => {
            return tokio::select! {
                exit = child.wait() => Ran::Exited { ok: exit.code == Some(0), how: exit.to_string() },
                _ = tokio::time::sleep(timeout) => {
                    child.kill_group();
                    let _ = child.wait().await;
                    Ran::TimedOut
                }
            };
        }
    };
    // Without one (the supervisor's tests, the CLI): tokio spawns it here.
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let (mut child, _waited) = match crate::process::spawn_waited(&mut cmd) {
        Ok(c) => c,
        Err(e) => return Ran::CannotRun(e.to_string()),
    };
    let pid = child.id().map(|p| p as i32);
    tokio::select! {
        r = child.wait() => match r {
            Ok(s) => Ran::Exited { ok: s.success(), how: s.to_string() },
            Err(e) => Ran::CannotRun(format!("cannot wait for it: {e}")),
        },
        _ = tokio::time::sleep(timeout) => {
            if let Some(pid) = pid {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Ran::TimedOut
        }
    }
}

fn judge_resources(spec: &ResourcesSpec, info: Option<&ProcessInfo>) -> CheckResult {
    let Some(info) = info else {
        return CheckResult {
            check: "resources".into(),
            status: Status::Unknown,
            message: "the process could not be read".into(),
            duration_ms: 0.0,
        };
    };
    let measured: [(&str, Option<Threshold>, Option<f64>); 4] = [
        ("cpu_percent", spec.cpu_percent, info.cpu_percent),
        ("memory_mb", spec.memory_mb, Some(info.memory_mb)),
        (
            "file_descriptors",
            spec.file_descriptors,
            Some(info.file_descriptors as f64),
        ),
        ("threads", spec.threads, Some(info.thread_count as f64)),
    ];
    let mut status = Status::Healthy;
    let mut parts = Vec::new();
    for (key, t, v) in measured {
        let Some(t) = t else { continue };
        let s = judge(v, &t);
        status = status.max(s);
        parts.push(match (s, v) {
            (_, None) => format!("{key} not measured yet"),
            (Status::Critical, Some(v)) => format!("{key} {v:.1} ≥ critical {}", t.critical),
            (Status::Warning, Some(v)) => format!("{key} {v:.1} ≥ warning {}", t.warning),
            (_, Some(v)) => format!("{key} {v:.1}"),
        });
    }
    CheckResult {
        check: "resources".into(),
        status,
        message: parts.join(", "),
        duration_ms: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(port: Option<u16>, checks: Vec<CheckSpec>) -> Probe {
        Probe {
            host: "127.0.0.1".into(),
            port,
            pid: std::process::id() as i32,
            checks,
            resources: ResourcesSpec::default(),
            timeout: Duration::from_millis(500),
            cwd: None,
        }
    }

    #[tokio::test]
    async fn tcp_check_follows_the_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let p = probe(Some(port), vec![CheckSpec::Tcp {}]);
        assert_eq!(
            p.tick(&mut Sampler::default()).await.status,
            Status::Healthy
        );
        // Nothing listens on that port at another loopback address (dropping the listener
        // would race with other tests that bind port 0 and may get the same port).
        let elsewhere = Probe {
            host: "127.0.0.2".into(),
            ..p
        };
        let t = elsewhere.tick(&mut Sampler::default()).await;
        assert_eq!(t.status, Status::Critical, "{t:?}");
        assert!(t.problems().contains("cannot connect"));
    }

    #[tokio::test]
    async fn exec_check_exit_code_and_timeout() {
        let sh = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
        let t = Duration::from_millis(300);
        assert_eq!(run_command(&sh("exit 0"), None, t).await.0, Status::Healthy);
        assert_eq!(
            run_command(&sh("exit 3"), None, t).await.0,
            Status::Critical
        );
        let (s, m) = run_command(&sh("sleep 30"), None, t).await;
        assert_eq!(s, Status::Critical);
        assert!(m.contains("did not finish"), "{m}");
        let (s, _) = run_command(&["/no/such/probe".to_owned()], None, t).await;
        assert_eq!(s, Status::Unknown, "a probe that cannot run cannot decide");
    }

    #[tokio::test]
    async fn resources_are_judged_against_thresholds() {
        let mut p = probe(None, vec![]);
        p.resources.memory_mb = Some(Threshold {
            warning: 0.5,
            critical: 1.0e9,
        });
        let t = p.tick(&mut Sampler::default()).await;
        assert_eq!(t.status, Status::Warning, "{t:?}");
        assert!(t.problems().contains("memory_mb"), "{t:?}");
        // Memory only: the first tick still carries a CPU figure (the life average, as the
        // API shows before it), so `guardian_service_cpu_percent` never comes and goes.
        let cpu = t.process.as_ref().and_then(|i| i.cpu_percent);
        assert!(cpu.is_some_and(|c| c >= 0.0), "{t:?}");
        p.pid = -5;
        assert_eq!(
            p.tick(&mut Sampler::default()).await.status,
            Status::Unknown
        );
    }
}
