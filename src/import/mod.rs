//! `guardian import` (SPEC §16): another tool's config in, a guardian.toml out.
//!
//! Each format (`supervisord`, `pm2`, `compose`, `procfile`) reads its file the way its own
//! tool does and fills the same `Draft`: services as `RawService`s under their original
//! names, what could not come along (`LeftOut`, with its line), and notes on what changed
//! meaning on the way. `finish` then maps names to guardian's rules, drops dependencies on
//! services that are not there, and `emit` writes the TOML: one table per service, keys in
//! the schema's order, the left-out keys as comments next to the service they belong to.

mod compose;
mod ini;
mod pm2;
mod procfile;
mod supervisord;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::raw::{RawDependency, RawService};

/// The formats `guardian import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Supervisord,
    Pm2,
    Compose,
    Procfile,
}

/// What a format's reader produced, before names are mapped.
#[derive(Debug, Default)]
pub struct Draft {
    pub services: Vec<Service>,
    /// Left out with no service to sit next to (a whole section, a tool's own settings).
    pub left_out: Vec<LeftOut>,
    /// Said once at the top of the output.
    pub notes: Vec<String>,
}

/// One service as its tool named it.
#[derive(Debug, Default)]
pub struct Service {
    pub name: String,
    /// Where it was defined: `FILE:LINE [program:web]`.
    pub origin: String,
    pub raw: RawService,
    /// Dependencies by their original names (mapped with the names in `finish`).
    pub depends_on: Vec<(String, RawDependency)>,
    pub left_out: Vec<LeftOut>,
    pub notes: Vec<String>,
}

/// A key that did not come along, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    pub file: PathBuf,
    /// 1-based, where the format has lines and the key was found.
    pub line: Option<usize>,
    /// The key as the tool spells it: `program:web.stdout_logfile`, `services.db.image`.
    pub key: String,
    pub why: String,
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: {}", self.key, self.why)
    }
}

/// The input could not be read as the format: exit 2, with the position where there is one.
#[derive(Debug)]
pub struct ImportError(pub String);

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options a reader may use.
#[derive(Debug, Default)]
pub struct Options {
    /// PM2: merge `env_NAME` over `env`.
    pub env: Option<String>,
    /// The environment interpolation reads (Compose `${X}`, supervisord `%(ENV_X)s`).
    pub environ: HashMap<String, String>,
}

/// Reads `file` as `format`.
pub fn read(format: Format, file: &Path, opts: &Options) -> Result<Draft, ImportError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ImportError(format!(
            "cannot read {}: {e}\n  check the path, then: guardian import {} FILE",
            file.display(),
            format_name(format)
        ))
    })?;
    match format {
        Format::Supervisord => supervisord::read(file, &text, opts),
        Format::Pm2 => pm2::read(file, &text, opts),
        Format::Compose => compose::read(file, &text, opts),
        Format::Procfile => procfile::read(file, &text),
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Supervisord => "supervisord",
        Format::Pm2 => "pm2",
        Format::Compose => "compose",
        Format::Procfile => "procfile",
    }
}

/// The result: the TOML text and every left-out key (already in the text as comments).
pub struct Imported {
    pub toml: String,
    pub left_out: Vec<LeftOut>,
    /// Names that had to change, `(from, to)`: said on stderr too.
    pub renamed: Vec<(String, String)>,
}

/// Maps names, resolves dependencies and writes the TOML.
pub fn finish(format: Format, file: &Path, mut draft: Draft) -> Imported {
    // Names: guardian's rule (lowercase letters, digits, `_`), unique after mapping.
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut renamed = Vec::new();
    let mut by_original: HashMap<String, String> = HashMap::new();
    for s in &mut draft.services {
        let base = service_name(&s.name);
        let n = {
            let n = taken.entry(base.clone()).or_default();
            *n += 1;
            *n
        };
        let name = if n == 1 {
            base
        } else {
            let mut k = n;
            loop {
                let candidate = format!("{base}_{k}");
                if !taken.contains_key(&candidate) {
                    break candidate;
                }
                k += 1;
            }
        };
        if name != s.name {
            let why = if n > 1 {
                format!(
                    "named `{name}`: `{}` is taken by another service after mapping",
                    s.name
                )
            } else {
                format!(
                    "named `{name}`: a guardian name is lowercase letters, digits and `_` (`{}` is not)",
                    s.name
                )
            };
            s.notes.push(why);
            renamed.push((s.name.clone(), name.clone()));
        }
        taken.entry(name.clone()).or_insert(1);
        by_original
            .entry(s.name.clone())
            .or_insert_with(|| name.clone());
        s.name = name;
    }
    // Dependencies on services that are not there are dropped and listed.
    for s in &mut draft.services {
        let mut deps = BTreeMap::new();
        for (dep, cond) in std::mem::take(&mut s.depends_on) {
            match by_original.get(&dep) {
                Some(to) if *to != s.name => {
                    deps.insert(to.clone(), cond);
                }
                _ => s.left_out.push(LeftOut {
                    file: file.to_owned(),
                    line: None,
                    key: format!("{}.depends_on.{dep}", s.name),
                    why: format!(
                        "there is no service `{dep}` to depend on (or it was left out); dropped"
                    ),
                }),
            }
        }
        if !deps.is_empty() {
            s.raw.depends_on = Some(deps);
        }
    }
    let toml = emit(format, file, &draft);
    let mut left_out = draft.left_out;
    for s in draft.services {
        left_out.extend(s.left_out);
    }
    Imported {
        toml,
        left_out,
        renamed,
    }
}

/// A name guardian accepts: lowercase, anything else `_`, at most 64 bytes.
pub fn service_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches('_');
    let mut name = if trimmed.is_empty() {
        "service".to_owned()
    } else {
        trimmed.to_owned()
    };
    name.truncate(64);
    name
}

/// Keys written as inline tables (`env = { A = "1" }`), as a person would.
const INLINE: &[&str] = &[
    "env",
    "depends_on",
    "limits",
    "sockets",
    "log",
    "metrics",
    "cpu_percent",
    "memory_mb",
    "file_descriptors",
    "threads",
];

fn emit(format: Format, file: &Path, draft: &Draft) -> String {
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let mut out = format!(
        "# Imported from {source} by `guardian import {}`.\n# Check it with: guardian validate -c THIS_FILE\n",
        format_name(format)
    );
    out.push_str("# Relative paths (cwd, env_file) are as the original wrote them: run guardian from\n# the folder the original file is in.\n");
    for n in &draft.notes {
        out.push_str(&comment(n));
    }
    for l in &draft.left_out {
        out.push_str(&comment(&format!("left out: {}", line_and_key(l))));
    }
    for s in &draft.services {
        out.push('\n');
        out.push_str(&comment(&format!("from {}", s.origin)));
        for n in &s.notes {
            out.push_str(&comment(n));
        }
        for l in &s.left_out {
            out.push_str(&comment(&format!("left out: {}", line_and_key(l))));
        }
        out.push_str(&service_table(&s.name, &s.raw));
    }
    out
}

fn line_and_key(l: &LeftOut) -> String {
    match l.line {
        Some(n) => format!("{} (line {n}): {}", l.key, l.why),
        None => format!("{}: {}", l.key, l.why),
    }
}

fn comment(text: &str) -> String {
    text.lines().map(|l| format!("# {l}\n")).collect()
}

/// `[services.NAME]` and its sub-tables, fields in `RawService`'s (the schema's) order.
fn service_table(name: &str, raw: &RawService) -> String {
    // Serialized from the struct itself, so its fields keep their declared order.
    #[derive(serde::Serialize)]
    struct Root<'a> {
        services: BTreeMap<&'a str, &'a RawService>,
    }
    let root = Root {
        services: BTreeMap::from([(name, raw)]),
    };
    let Ok(mut doc) = toml_edit::ser::to_document(&root) else {
        return String::new();
    };
    let services = doc
        .get_mut("services")
        .and_then(|s| s.as_inline_table_mut())
        .map(|t| std::mem::take(t).into_table());
    if let Some(mut services) = services {
        services.set_implicit(true);
        if let Some(item) = services.get_mut(name) {
            tables(item);
        }
        doc.insert("services", toml_edit::Item::Table(services));
    }
    doc.to_string()
}

/// Nested tables become `[services.NAME.x]` sections, but for the small ones a person
/// writes inline (`env = { A = "1" }`).
fn tables(item: &mut toml_edit::Item) {
    let Some(inline) = item.as_inline_table_mut() else {
        return;
    };
    let mut t = std::mem::take(inline).into_table();
    let keys: Vec<String> = t.iter().map(|(k, _)| k.to_owned()).collect();
    for k in keys {
        if !INLINE.contains(&k.as_str())
            && let Some(sub) = t.get_mut(&k)
        {
            tables(sub);
        }
    }
    t.fmt();
    *item = toml_edit::Item::Table(t);
}

/// The 1-based line of the key at `path` in a YAML, JSON or JSON5 text, found by key as
/// written: each segment is searched after the one before it.
pub fn locate(text: &str, from: usize, path: &[&str]) -> Option<usize> {
    let mut at = from;
    for seg in path {
        at = find_key(text, at, seg)?;
    }
    Some(line_of(text, at))
}

pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The byte offset just past `key` used as a key (`key:`, `"key":`, `'key' :`) at or
/// after `from`.
pub fn find_key(text: &str, from: usize, key: &str) -> Option<usize> {
    let hay = text.get(from..)?;
    for (i, _) in hay.match_indices(key) {
        let start = from + i;
        let before = text[..start].chars().next_back();
        let quoted = matches!(before, Some('"' | '\''));
        let starts = match before {
            None => true,
            Some(c) => c.is_whitespace() || matches!(c, '{' | ',' | '-' | '"' | '\''),
        };
        if !starts {
            continue;
        }
        let mut rest = &text[start + key.len()..];
        if quoted {
            match rest.chars().next() {
                Some('"' | '\'') => rest = &rest[1..],
                _ => continue,
            }
        }
        if rest.trim_start_matches([' ', '\t']).starts_with(':') {
            return Some(start + key.len());
        }
    }
    None
}

/// Writes `text` to `path`, which must not exist, whole or not at all: a temporary file
/// beside it is linked into place (link never replaces), then removed.
pub fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or("guardian".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_mapped_to_guardians_rule() {
        for (from, to) in [
            ("web", "web"),
            ("HTTP-API", "http_api"),
            ("my.worker:1", "my_worker_1"),
            ("--", "service"),
            ("Ünïcode app", "n_code_app"),
        ] {
            assert_eq!(service_name(from), to, "{from}");
            assert!(crate::config::ServiceName::new(&service_name(from)).is_ok());
        }
        assert_eq!(service_name(&"a".repeat(80)).len(), 64);
    }

    #[test]
    fn keys_are_located_by_path_in_yaml_and_json5() {
        let yaml = "services:\n  web:\n    image: x\n  db:\n    image: y\n    build: .\n";
        assert_eq!(locate(yaml, 0, &["services", "db", "image"]), Some(5));
        assert_eq!(locate(yaml, 0, &["services", "web", "image"]), Some(3));
        assert_eq!(locate(yaml, 0, &["services", "db", "nope"]), None);
        let json5 = "{\n  apps: [{\n    name: 'a',\n    'watch' : true,\n    \"cwd\": '/'\n  }]\n}";
        assert_eq!(locate(json5, 0, &["apps", "watch"]), Some(4));
        assert_eq!(locate(json5, 0, &["apps", "cwd"]), Some(5));
        // A key inside a value is not a key.
        assert_eq!(locate("a: xwatch: 1\n", 0, &["watch"]), None);
    }

    #[test]
    fn duplicate_names_and_missing_dependencies_are_said() {
        let mut draft = Draft::default();
        for n in ["Web", "web", "worker"] {
            draft.services.push(Service {
                name: n.into(),
                origin: "x".into(),
                raw: RawService {
                    command: Some(vec!["true".into()]),
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        draft.services[2].depends_on = vec![
            ("Web".into(), RawDependency::Condition("started".into())),
            ("db".into(), RawDependency::Condition("started".into())),
        ];
        let out = finish(Format::Compose, Path::new("c.yaml"), draft);
        assert_eq!(
            out.renamed,
            vec![("Web".into(), "web".into()), ("web".into(), "web_2".into())]
        );
        assert_eq!(out.left_out.len(), 1);
        assert_eq!(out.left_out[0].key, "worker.depends_on.db");
        assert!(out.toml.contains("[services.web_2]"), "{}", out.toml);
        assert!(
            out.toml.contains("depends_on = { web = \"started\" }"),
            "{}",
            out.toml
        );
        let parsed: crate::config::raw::RawConfig = toml::from_str(&out.toml).unwrap();
        assert_eq!(parsed.services.unwrap().len(), 3);
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        write_new(&p, "a = 1\n").unwrap();
        let e = write_new(&p, "b = 2\n").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 1\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
