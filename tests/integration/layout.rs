//! The tree shows the design: `src/lib.rs` lists the rooms one per line, each room imports only
//! rooms listed below it, and no two files of one folder import each other, directly or
//! around a longer circle. Read from the source text (`crate::ROOM`, `super::FILE`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::support::repo_file;

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The code of a file without comments and without its unit tests (tests may reach anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .split_once("#[cfg(test)]\nmod tests")
        .map_or(text.as_str(), |(code, _)| code);
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rooms in the order `lib.rs`'s map lists them.
fn rooms() -> Vec<String> {
    let lib = std::fs::read_to_string(repo_file("src/lib.rs")).unwrap();
    let item = Regex::new(r"^//! - `([a-z_]+)`:").unwrap();
    lib.lines()
        .filter_map(|l| item.captures(l).map(|c| c[1].to_owned()))
        .collect()
}

#[test]
fn each_room_imports_only_rooms_below_it_in_the_map() {
    let order = rooms();
    let src = repo_file("src");
    let declared: BTreeSet<String> = std::fs::read_to_string(src.join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        declared,
        order.iter().cloned().collect(),
        "lib.rs's map lists {order:?}; its modules are {declared:?}"
    );
    let uses = Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut wrong = Vec::new();
    for f in sources(&src) {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let room = first.trim_end_matches(".rs").to_owned();
        if room == "lib" || room == "main" || f.file_name().unwrap() == "tests.rs" {
            continue;
        }
        let at = order.iter().position(|r| *r == room).unwrap();
        for c in uses.captures_iter(&code(&f)) {
            let dep = &c[1];
            if let Some(d) = order.iter().position(|r| r == dep)
                && d < at
            {
                wrong.push(format!(
                    "{} imports `{dep}`, listed above `{room}`",
                    rel.display()
                ));
            }
        }
    }
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the map:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_of_one_folder_import_each_other_in_a_circle() {
    let src = repo_file("src");
    let mut folders: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for f in sources(&src) {
        folders
            .entry(f.parent().unwrap().to_owned())
            .or_default()
            .push(f);
    }
    let mut circles = Vec::new();
    for (dir, files) in &folders {
        let path = dir.strip_prefix(&src).unwrap();
        let room_path: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let name = |f: &Path| f.file_stem().unwrap().to_string_lossy().into_owned();
        let mut siblings: Vec<String> = files.iter().map(|f| name(f)).collect();
        siblings.extend(
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .filter(|e| e.path().join("mod.rs").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
        siblings.retain(|s| !["mod", "lib", "main", "tests"].contains(&s.as_str()));
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let me = name(f);
            if ["mod", "lib", "main", "tests"].contains(&me.as_str()) {
                continue;
            }
            let text = code(f);
            let out = edges.entry(me.clone()).or_default();
            for s in siblings.iter().filter(|s| **s != me) {
                let mut pats = vec![format!(r"super::{s}\b")];
                if room_path.is_empty() {
                    pats.push(format!(r"crate::{s}\b"));
                } else {
                    pats.push(format!(r"crate::{}::{s}\b", room_path.join("::")));
                }
                if pats.iter().any(|p| Regex::new(p).unwrap().is_match(&text)) {
                    out.insert(s.clone());
                }
            }
        }
        // A circle is a file that reaches itself.
        for start in edges.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&String> = edges[start].iter().collect();
            while let Some(n) = todo.pop() {
                if n == start {
                    circles.push(format!("src/{}: {start} reaches itself", path.display()));
                    break;
                }
                if seen.insert(n) {
                    todo.extend(edges.get(n).into_iter().flatten());
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files importing each other:\n{}",
        circles.join("\n")
    );
}
