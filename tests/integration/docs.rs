//! The README and the guide (docs/) say what the binary does: every complete TOML example
//! validates (one marked `toml,fails` must fail, a `toml,fragment` must at least parse), the
//! configuration reference is what `guardian schema --markdown` prints, the guide's pages
//! and links are all there; the Debian package installs and runs; the Dockerfile's pieces
//! exist and its config validates with its environment.

use std::path::{Path, PathBuf};

use crate::support::*;

/// Every fenced ```toml block of the README and the guide: (file, line, info, text).
fn toml_blocks() -> Vec<(PathBuf, usize, String, String)> {
    let mut files = vec![repo_file("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo_file("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines().enumerate();
        while let Some((i, l)) = lines.next() {
            let Some(info) = l.strip_prefix("```") else {
                continue;
            };
            if !info.starts_with("toml") {
                // Skip any other block whole, so its closing fence is not taken for an opening.
                for (_, l) in lines.by_ref() {
                    if l.starts_with("```") {
                        break;
                    }
                }
                continue;
            }
            let mut body = String::new();
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            out.push((f.clone(), i + 1, info.to_owned(), body));
        }
    }
    out
}

#[test]
fn every_toml_example_in_the_readme_and_the_guide_validates() {
    let sb = Sandbox::new();
    let blocks = toml_blocks();
    let complete = blocks.iter().filter(|b| b.2 == "toml").count();
    assert!(complete >= 6, "only {complete} complete examples found");
    assert!(
        blocks.iter().any(|b| b.2 == "toml,fails"),
        "no failing example is checked"
    );
    for (file, line, info, body) in &blocks {
        let at = format!("{}:{line} ({info})", file.display());
        match info.as_str() {
            "toml" | "toml,fails" => {
                let cfg = sb.write("example.toml", body);
                let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
                let want = if info == "toml" { 0 } else { 2 };
                assert_eq!(out.code, want, "{at}:\n{body}\n{}", out.all());
                if want == 2 {
                    assert!(
                        out.stderr.contains("example.toml:"),
                        "{at}: no position: {}",
                        out.stderr
                    );
                }
            }
            "toml,fragment" => {
                if let Err(e) = toml::from_str::<toml::Value>(body) {
                    panic!("{at}: the fragment is not TOML: {e}");
                }
            }
            other => panic!("{at}: unknown marking `{other}` (toml, toml,fails, toml,fragment)"),
        }
    }
}

#[test]
fn the_configuration_reference_is_what_the_schema_says() {
    let sb = Sandbox::new();
    let out = sb.run(&["schema", "--markdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = std::fs::read_to_string(repo_file("docs/reference.md")).unwrap();
    assert!(
        out.stdout == file,
        "docs/reference.md is out of date; regenerate it: guardian schema --markdown > docs/reference.md"
    );
    for key in [
        "`[services.NAME]`",
        "`restart_strategy`",
        "`[alerts.NAME]`",
        "`kind = \"exec\"`",
    ] {
        assert!(file.contains(key), "{key} missing from the reference");
    }
}

#[test]
fn the_guide_has_its_pages_and_its_links_resolve_and_the_readme_fits_a_screen() {
    let docs = repo_file("docs");
    let summary = std::fs::read_to_string(docs.join("SUMMARY.md")).unwrap();
    let linked: Vec<String> = summary
        .split("](")
        .skip(1)
        .filter_map(|s| s.split(')').next().map(str::to_owned))
        .collect();
    let pages: Vec<&String> = linked.iter().filter(|p| *p != "README.md").collect();
    assert!(
        pages.len() >= 10,
        "the guide has {} pages: {pages:?}",
        pages.len()
    );
    for name in std::fs::read_dir(&docs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
    {
        let name = name.to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(linked.contains(&name), "docs/{name} is not in SUMMARY.md");
        }
    }
    assert!(docs.join("book.toml").exists());
    // Every relative link of the README and the guide points at a file that exists.
    let mut files = vec![repo_file("README.md")];
    files.extend(linked.iter().map(|p| docs.join(p)));
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if target.starts_with("http") || target.starts_with('#') || target.contains(' ') {
                continue;
            }
            let path = target.split('#').next().unwrap_or(target);
            let base = f.parent().unwrap_or(Path::new("."));
            assert!(
                base.join(path).exists(),
                "{}: broken link {target}",
                f.display()
            );
        }
    }
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let n = readme.lines().count();
    assert!(n <= 300, "README.md has {n} lines (at most 300)");
}

#[test]
fn the_debian_package_installs_into_a_scratch_root_and_runs() {
    require("dpkg-deb", "dpkg");
    let sb = Sandbox::new();
    let out_dir = sb.path().join("deb");
    let made = std::process::Command::new(repo_file("scripts/package"))
        .env("GUARDIAN_BIN", env!("CARGO_BIN_EXE_guardian"))
        .env("OUT_DIR", &out_dir)
        .env("DEB_COMPRESS", "none")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let deb = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let listing = std::process::Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for want in [
        "./usr/bin/guardian",
        "./lib/systemd/system/guardian.service",
        "./usr/share/man/man1/guardian.1.gz",
        "./usr/share/bash-completion/completions/guardian",
        "./usr/share/zsh/vendor-completions/_guardian",
        "./usr/share/fish/vendor_completions.d/guardian.fish",
        "./usr/share/doc/guardian/examples/guardian.toml",
        "./usr/share/doc/guardian/copyright",
    ] {
        assert!(
            listing.contains(want),
            "{want} missing from the package:\n{listing}"
        );
    }
    // dpkg -i into a scratch root with a dpkg database of its own.
    let root = sb.path().join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
    let installed = std::process::Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-depends",
            "--force-not-root",
            "--log=/dev/null",
            "-i",
            &deb,
        ])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "dpkg -i: {}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    let bin = root.join("usr/bin/guardian");
    let v = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("guardian "),
        "{v:?}"
    );
    let example = root.join("usr/share/doc/guardian/examples/guardian.toml");
    let checked = std::process::Command::new(&bin)
        .args(["validate", "-c", example.to_str().unwrap()])
        .current_dir(sb.path())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/guardian.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/guardian run"), "{unit}");
}

/// No image registry is reachable here, so the Dockerfile is checked piece by piece: what it
/// copies exists, its build command builds what it copies, and the config it runs validates
/// with its ENV.
#[test]
fn the_dockerfiles_pieces_exist_and_its_config_validates_with_its_environment() {
    let text = std::fs::read_to_string(repo_file("contrib/Dockerfile")).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut in_env = false;
    for line in text.lines() {
        let l = line.trim().trim_end_matches('\\').trim();
        if let Some(rest) = line
            .strip_prefix("COPY ")
            .filter(|r| !r.starts_with("--from"))
        {
            let src = rest.split_whitespace().next().unwrap();
            assert!(repo_file(src).exists(), "COPY {src}: not in the repository");
        }
        if let Some(rest) = line.strip_prefix("COPY --from=build /src/") {
            let built = rest.split_whitespace().next().unwrap();
            let name = Path::new(built)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(
                text.contains("cargo build --release --locked --bins")
                    && (built.ends_with("release/guardian")
                        || text.contains(&format!("--example {name}"))),
                "{built} is copied but not built"
            );
        }
        if line.starts_with("ENV ") || in_env {
            let l = l.strip_prefix("ENV ").unwrap_or(l);
            for pair in l.split_whitespace() {
                if let Some((k, v)) = pair.split_once('=') {
                    env.push((k.to_owned(), v.to_owned()));
                }
            }
            in_env = line.trim_end().ends_with('\\');
        }
    }
    assert!(
        env.iter()
            .any(|(k, _)| k == "GUARDIAN_SERVICES__SOCKETIO__HOST"),
        "{env:?}"
    );
    assert!(text.contains(
        "ENTRYPOINT [\"/usr/local/bin/guardian\", \"run\", \"-c\", \"/app/guardian.toml\"]"
    ));
    let sb = Sandbox::new();
    let cfg = repo_file("examples/guardian.toml");
    let env: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| k != "GUARDIAN_GUARDIAN__STATE_DIR")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = sb.run_with(
        &["validate", "-c", cfg.to_str().unwrap(), "--print", "toml"],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("0.0.0.0"),
        "the image's host reaches the config: {}",
        out.stdout
    );
}
