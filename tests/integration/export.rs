//! SPEC §10: `guardian export` against golden files, `systemd-analyze verify` on the emitted
//! units, and the bad inputs. A run compares, never writes: after a deliberate change,
//! `GUARDIAN_BLESS=1` rewrites the golden files and fails the test, so that the diff is read
//! and the run repeated without it.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn golden(name: &str, got: &str) {
    let path = repo_file(&format!("tests/fixtures/export/{name}"));
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want && std::env::var_os("GUARDIAN_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        panic!("{name} rewritten: read `git diff`, then run again without GUARDIAN_BLESS");
    }
    assert!(
        got == want,
        "{name} differs from the golden file (GUARDIAN_BLESS=1 to rewrite it):\n{got}"
    );
}

fn stack() -> String {
    repo_file("tests/fixtures/export/stack.toml")
        .display()
        .to_string()
}

#[test]
fn systemd_units_match_the_golden_file_and_are_deterministic() {
    let sb = Sandbox::new();
    let out = sb.run(&["export", "systemd", "-c", &stack()]);
    assert_eq!(out.code, 0, "{}", out.all());
    let again = sb.run(&["export", "systemd", "-c", &stack()]);
    assert_eq!(out.stdout, again.stdout, "same input, same bytes");
    golden("systemd.golden", &out.stdout);
    // A chosen service only.
    let one = sb.run(&["export", "systemd", "-c", &stack(), "migrate"]);
    assert_eq!(one.code, 0);
    assert!(one.stdout.starts_with("# guardian-migrate.service\n"));
    assert_eq!(
        one.stdout.matches("\n[Unit]\n").count(),
        1,
        "{}",
        one.stdout
    );
}

/// The second fixture: user, group, env_file, on-failure, an exec check and port_range,
/// exported from a sandbox holding its env file (written as SANDBOX in the golden files).
#[test]
fn host_bound_keys_match_the_golden_files_for_both_engines() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "host.toml",
        &std::fs::read_to_string(repo_file("tests/fixtures/export/host.toml")).unwrap(),
    );
    sb.write("app.env", "LEVEL=info\n");
    let cfg = cfg.to_str().unwrap();
    let here = sb.path().display().to_string();
    let systemd = sb.run(&["export", "systemd", "-c", cfg]);
    assert_eq!(systemd.code, 0, "{}", systemd.all());
    golden(
        "host-systemd.golden",
        &systemd.stdout.replace(&here, "SANDBOX"),
    );
    let k8s = sb.run(&[
        "export",
        "kubernetes",
        "-c",
        cfg,
        "--image",
        "registry.example/web:2",
    ]);
    assert_eq!(k8s.code, 0, "{}", k8s.all());
    golden(
        "host-kubernetes.golden",
        &k8s.stdout.replace(&here, "SANDBOX"),
    );
    // Both pass their engine's own checks.
    let dir = sb.path().join("units");
    let files = export_units(&sb, cfg, &dir);
    // The held sockets: a socket unit each for api's two, one named after edge for its one.
    assert_eq!(
        files,
        [
            "guardian-api-admin.socket",
            "guardian-api-http.socket",
            "guardian-api.service",
            "guardian-edge.service",
            "guardian-edge.socket",
            "guardian-web.service"
        ]
    );
    verify_units(files.iter().map(|f| dir.join(f)));
    // Kubernetes: a tcp socket's port is the container port.
    assert!(k8s.stdout.contains("containerPort: 9200"), "{}", k8s.stdout);
    let file = sb.write("web.yaml", &k8s.stdout);
    let check = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.33.0"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (scripts/test installs it with pip)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn exported_units_pass_systemd_analyze_verify() {
    let sb = Sandbox::new();
    let dir = sb.path().join("units");
    let files = export_units(&sb, &stack(), &dir);
    assert_eq!(files.len(), 4, "{files:?}");
    verify_units(files.iter().map(|f| dir.join(f)));
}

/// `guardian export systemd --out DIR` on `cfg`: the names of the files written, sorted.
fn export_units(sb: &Sandbox, cfg: &str, dir: &Path) -> Vec<String> {
    let out = sb.run(&[
        "export",
        "systemd",
        "-c",
        cfg,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

/// `systemd-analyze verify` passes on these units. Allowed: keys newer than this systemd
/// (254+ backoff steps), and its warning about `nobody` (the second fixture's user: it exists
/// on every Debian machine).
fn verify_units(files: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>) {
    let verify = Command::new(require("systemd-analyze", "systemd"))
        .args(["verify", "--man=no"])
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stderr).into_owned()
        + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("Unknown key 'RestartSteps'")
                || line.contains("Unknown key 'RestartMaxDelaySec'")
                || line.contains("Special user nobody configured"),
            "unexpected: {line}"
        );
    }
}

#[test]
fn export_refuses_bad_input_and_writes_nothing_half() {
    let sb = Sandbox::new();
    let bad = sb.write(
        "bad.toml",
        "[services.a]\ncommand = [\"x\"]\nrestart = \"sometimes\"\n",
    );
    let out = sb.run(&["export", "systemd", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("`sometimes` is not one of"),
        "{}",
        out.stderr
    );

    let out = sb.run(&["export", "systemd", "-c", &stack(), "nope"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no service `nope` to export"),
        "{}",
        out.stderr
    );

    let out = sb.run(&["export", "nomad", "-c", &stack()]);
    assert_eq!(out.code, 2, "{}", out.all());

    let missing = sb.write(
        "prog.toml",
        "[services.a]\ncommand = [\"no-such-program-q\"]\n",
    );
    let out = sb.run(&["export", "systemd", "-c", missing.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("`services.a.command[0]`: `no-such-program-q` is not on PATH"),
        "{}",
        out.stderr
    );

    // --out names a file, not a folder: a clear error, and nothing written anywhere.
    let file = sb.write("not-a-dir", "x");
    let out = sb.run(&[
        "export",
        "systemd",
        "-c",
        &stack(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("cannot write"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    let left: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("guardian-export"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!Path::new(&file).is_dir());

    // A failure after three of the four files were staged and put in place (a folder sits
    // where the last one goes): the three are taken back, and the file one of them replaced
    // is there again as it was.
    let dir = sb.path().join("units");
    std::fs::create_dir_all(dir.join("guardian-worker.service/keep")).unwrap();
    std::fs::write(dir.join("guardian-db.service"), "old unit\n").unwrap();
    let out = sb.run(&[
        "export",
        "systemd",
        "-c",
        &stack(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("guardian-worker.service"),
        "{}",
        out.stderr
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["guardian-db.service", "guardian-worker.service"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("guardian-db.service")).unwrap(),
        "old unit\n"
    );
}

#[test]
fn kubernetes_stream_matches_the_golden_file_and_validates_strictly() {
    let sb = Sandbox::new();
    let args = [
        "export",
        "kubernetes",
        "-c",
        &stack(),
        "--image",
        "registry.example/app:1.0",
        "--namespace",
        "shop",
    ];
    let out = sb.run(&args);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout, sb.run(&args).stdout, "same input, same bytes");
    golden("kubernetes.golden", &out.stdout);
    for (kind, name) in [
        ("Deployment", "api"),
        ("Deployment", "db"),
        ("Job", "migrate"),
        ("Deployment", "worker"),
        ("Service", "api"),
        ("Service", "db"),
    ] {
        assert!(
            out.stdout
                .contains(&format!("kind: {kind}\nmetadata:\n  labels:\n    app.kubernetes.io/managed-by: guardian-export\n    app.kubernetes.io/name: {name}\n")),
            "{kind} {name}"
        );
    }
    let file = sb.path().join("stack.yaml");
    let wrote = sb.run(&[&args[..], &["--out", file.to_str().unwrap()]].concat());
    assert_eq!(wrote.code, 0, "{}", wrote.all());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), out.stdout);
    let check = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.33.0"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (scripts/test installs it with pip)");
    let text = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{text}");
    assert_eq!(text.matches("passed for resource").count(), 6, "{text}");
}

#[test]
fn kubernetes_export_needs_an_image_for_every_service() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.web]\ncommand = [\"/bin/sleep\", \"1\"]\nimage = \"nginx:1\"\n[services.job_runner]\ncommand = [\"/bin/true\"]\nrestart = \"no\"\n",
    );
    let out = sb.run(&["export", "kubernetes", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("`services.job_runner.image`: no container image"),
        "{}",
        out.stderr
    );
    let out = sb.run(&[
        "export",
        "kubernetes",
        "-c",
        cfg.to_str().unwrap(),
        "--image",
        "busybox:1",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    // The service's own image wins over the flag; names become DNS labels.
    assert!(out.stdout.contains("image: nginx:1"));
    assert!(out.stdout.contains("name: job-runner"));
}
