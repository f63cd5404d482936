//! The only figment code: built-in defaults < each config file in order < environment <
//! command-line flags. Reads the files and takes a snapshot of the environment; everything
//! after that is pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::DeserializeOwned;

use super::raw::RawConfig;
use super::suggest::nearest;
use super::validate::{Context, ValidationErrors, validate};
use super::{Config, duration::Secs};

/// What the command line and the process environment bring to a load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `-c FILE`, in order; empty means discovery (SPEC §1).
    pub files: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    /// A snapshot of the environment: read again on every reload.
    pub env: BTreeMap<String, String>,
    /// The variables whose value is not UTF-8 text: an error if guardian would read one.
    pub not_utf8: Vec<String>,
}

impl LoadOptions {
    pub fn with_process_env(mut self) -> Self {
        self.env.clear();
        self.not_utf8.clear();
        for (k, v) in std::env::vars_os() {
            // A name that is not UTF-8 cannot be one of guardian's.
            let Ok(k) = k.into_string() else { continue };
            match v.into_string() {
                Ok(v) => {
                    self.env.insert(k, v);
                }
                Err(_) => self.not_utf8.push(k),
            }
        }
        self
    }

    /// Fails naming `var` when the environment holds it with a value that is not UTF-8.
    fn check_utf8(&self, var: &str) -> Result<(), LoadError> {
        if self.not_utf8.iter().any(|v| v == var) {
            return Err(LoadError::Env {
                var: var.to_owned(),
                message: format!(
                    "its value is not UTF-8 text\n  1. look: printenv {var} | od -c | head\n  2. set it again as UTF-8 text, or unset it: unset {var}"
                ),
            });
        }
        Ok(())
    }
}

/// A validated config and what it was made from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub files: Vec<PathBuf>,
    pub figment: Figment,
}

/// Why a config could not be loaded. Each names the file, variable or flag, and the next step.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no config file found (looked for {}); write one with `guardian init`, or pass `-c FILE`", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { searched: Vec<PathBuf> },
    #[error("cannot read config file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("config file {} must end in .toml or .json; rename it, or convert it", path.display())]
    Extension { path: PathBuf },
    #[error("{}", render_parse(.file, *.line, *.column, .key.as_deref(), .message, .suggestion.as_deref()))]
    Parse {
        file: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        key: Option<String>,
        message: String,
        suggestion: Option<String>,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{origin}: {message}")]
    Layer { origin: String, message: String },
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

impl LoadError {
    /// The same facts as the text, one JSON object per problem (`validate --json`, and every
    /// command's error with `--log-format json`): file, line, column, key, origin, message.
    pub fn problems(&self) -> Vec<serde_json::Value> {
        use serde_json::json;
        match self {
            LoadError::Invalid(errors) => errors
                .0
                .iter()
                .map(|e| {
                    let at = e.at.as_ref();
                    json!({
                        "file": at.map(|a| a.file.display().to_string()),
                        "line": at.map(|a| a.line),
                        "column": at.map(|a| a.column),
                        "key": e.key,
                        "origin": e.origin,
                        "message": e.message,
                    })
                })
                .collect(),
            LoadError::Parse {
                file,
                line,
                column,
                key,
                message,
                suggestion,
            } => vec![json!({
                "file": file.display().to_string(),
                "line": line,
                "column": column,
                "key": key,
                "origin": file.display().to_string(),
                "message": match suggestion {
                    Some(s) => format!("{message}; did you mean `{s}`?"),
                    None => message.clone(),
                },
            })],
            other => vec![
                json!({"file": null, "line": null, "column": null, "key": null, "origin": null, "message": other.to_string()}),
            ],
        }
    }
}

fn render_parse(
    file: &Path,
    line: Option<usize>,
    column: Option<usize>,
    key: Option<&str>,
    message: &str,
    suggestion: Option<&str>,
) -> String {
    let mut m = String::new();
    if let Some(k) = key.filter(|k| !k.is_empty() && *k != ".") {
        m += &format!("at `{k}`: ");
    }
    m += message;
    if let Some(sug) = suggestion {
        m += &format!("; did you mean `{sug}`?");
    }
    // The file is read again only to show the offending line: this is the error path.
    if let (Some(l), Ok(text)) = (line, std::fs::read_to_string(file)) {
        let at = super::report::Located::line_col(file, &text, l, column.unwrap_or(1));
        return super::report::render(&at, &m).trim_end().to_owned();
    }
    format!("{}: {m}", file.display())
}

/// Default `state_dir`: `$RUNTIME_DIRECTORY` (systemd), else `$XDG_RUNTIME_DIR/guardian`, else
/// `/tmp/guardian-$UID`.
pub fn default_state_dir(env: &BTreeMap<String, String>) -> PathBuf {
    // systemd's RuntimeDirectory= (the unit's own folder, e.g. /run/guardian) comes first:
    // it may list several, separated by ':'; the first is ours.
    if let Some(dir) = env
        .get("RUNTIME_DIRECTORY")
        .and_then(|d| d.split(':').next())
        .filter(|d| !d.is_empty())
    {
        return PathBuf::from(dir);
    }
    match env.get("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(dir).join("guardian"),
        None => PathBuf::from(format!("/tmp/guardian-{}", nix::unistd::getuid())),
    }
}

/// The config files `run` would read, in order (SPEC §1 discovery when no `-c` is given).
pub fn discover(opts: &LoadOptions) -> Result<Vec<PathBuf>, LoadError> {
    if !opts.files.is_empty() {
        return Ok(opts.files.clone());
    }
    let mut searched = Vec::new();
    if let Some(p) = opts.env.get("GUARDIAN_CONFIG").filter(|p| !p.is_empty()) {
        // An explicit variable is used even if missing, so that the read error names it.
        return Ok(vec![PathBuf::from(p)]);
    }
    searched.push(PathBuf::from("./guardian.toml"));
    let xdg = opts
        .env
        .get("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| opts.env.get("HOME").map(|h| Path::new(h).join(".config")));
    if let Some(x) = xdg {
        searched.push(x.join("guardian").join("guardian.toml"));
    }
    searched
        .iter()
        .find(|p| p.is_file())
        .map(|p| vec![p.clone()])
        .ok_or(LoadError::NotFound { searched })
}

/// One layer of data with its own name: a file, one environment variable, or one flag.
struct Layer {
    meta: Metadata,
    data: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.meta.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

fn keyed(name: String, key: &str, value: Value) -> Layer {
    let data = match figment::util::nest(key, value) {
        Value::Dict(_, d) => d,
        _ => Dict::new(),
    };
    Layer {
        meta: Metadata::named(name),
        data,
    }
}

/// Loads, merges and validates every layer.
pub fn load(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    for var in opts.not_utf8.iter().filter(|v| v.starts_with("GUARDIAN_")) {
        opts.check_utf8(var)?;
    }
    let files = discover(opts)?;
    let mut base = Figment::new();
    for path in &files {
        base = base.merge(file_layer(path)?);
    }
    let guardian_env = guardian_env_layers(&opts.env);

    // The flat PREFIX_* names need each service's env_prefix, which any layer may set.
    let mut probe = base.clone();
    for l in &guardian_env {
        probe = probe.merge(Layer {
            meta: l.meta.clone(),
            data: l.data.clone(),
        });
    }
    let prelim: RawConfig = probe.extract().map_err(|e| figment_error(e, &probe))?;
    let mut figment = base;
    for l in flat_env_layers(&prelim, opts)? {
        figment = figment.merge(l);
    }
    for l in guardian_env {
        figment = figment.merge(l);
    }
    let flags = [
        (
            "--state-dir",
            "guardian.state_dir",
            opts.state_dir.as_ref().map(|p| p.display().to_string()),
        ),
        ("--log-level", "guardian.log_level", opts.log_level.clone()),
        (
            "--log-format",
            "guardian.log_format",
            opts.log_format.clone(),
        ),
    ];
    for (flag, key, value) in flags {
        if let Some(v) = value {
            figment = figment.merge(keyed(
                format!("command-line flag {flag}"),
                key,
                Value::from(v),
            ));
        }
    }

    let raw: RawConfig = figment.extract().map_err(|e| figment_error(e, &figment))?;
    let origin = |key: &str| origin_of(&figment, key);
    let ctx = Context {
        default_state_dir: default_state_dir(&opts.env),
        origin: &origin,
    };
    let here = std::env::current_dir().unwrap_or_default();
    let mut config = validate(raw, &ctx).map_err(locate_all)?;
    super::host::resolve(&mut config, &here, &origin).map_err(locate_all)?;
    Ok(Loaded {
        config,
        files,
        figment,
    })
}

/// Reads one file, checks it alone (so errors carry its line and column), and returns it as
/// a layer.
fn file_layer(path: &Path) -> Result<Layer, LoadError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let json = match ext.as_deref() {
        Some("toml") => false,
        Some("json") => true,
        _ => {
            return Err(LoadError::Extension {
                path: path.to_owned(),
            });
        }
    };
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
        path: path.to_owned(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such file; check the path, or write one with `guardian init PATH`".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => format!(
                "permission denied; check its mode and owner with `ls -l {}`",
                path.display()
            ),
            std::io::ErrorKind::InvalidData => "it is not UTF-8 text".to_owned(),
            _ => e.to_string(),
        },
    })?;
    if text.trim().is_empty() {
        return Err(LoadError::Parse {
            file: path.to_owned(),
            line: None,
            column: None,
            key: None,
            message: "the file is empty: it must define at least one `[services.NAME]` with a `command` (run `guardian init` for a commented example)".to_owned(),
            suggestion: None,
        });
    }
    let data: Dict = if json {
        parse_json(path, &text)?
    } else {
        parse_toml(path, &text)?
    };
    Ok(Layer {
        meta: Metadata::from(
            format!("config file {}", path.display()),
            Source::File(path.to_owned()),
        ),
        data,
    })
}

fn parse_toml(path: &Path, text: &str) -> Result<Dict, LoadError> {
    let located = |e: &toml::de::Error| e.span().map(|s| line_and_column(path, text, s.start));
    // Syntax first, then shape: serde_path_to_error gives the key path of a shape error.
    let data: Dict = toml::from_str(text).map_err(|e| {
        let (line, column) = located(&e).unzip();
        LoadError::Parse {
            file: path.to_owned(),
            line,
            column,
            key: None,
            message: one_line(e.message()),
            suggestion: None,
        }
    })?;
    check_shape::<RawConfig, _>(path, toml::Deserializer::new(text), |e| {
        (one_line(e.message()), located(e))
    })?;
    Ok(data)
}

fn parse_json(path: &Path, text: &str) -> Result<Dict, LoadError> {
    let located = |e: &serde_json::Error| {
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map_or(msg.as_str(), |(m, _)| m)
            .to_owned();
        // serde_json counts the column in bytes: where it points is turned into characters.
        let at = (e.line() > 0).then(|| {
            let line_start: usize = text
                .split_inclusive('\n')
                .take(e.line() - 1)
                .map(str::len)
                .sum();
            line_and_column(path, text, line_start + e.column().saturating_sub(1))
        });
        (msg, at)
    };
    let data: Dict = serde_json::from_str(text).map_err(|e| {
        let (message, at) = located(&e);
        let (line, column) = at.unzip();
        LoadError::Parse {
            file: path.to_owned(),
            line,
            column,
            key: None,
            message,
            suggestion: None,
        }
    })?;
    check_shape::<RawConfig, _>(path, &mut serde_json::Deserializer::from_str(text), located)?;
    Ok(data)
}

/// The 1-based line and column (in characters) of a byte offset that a parser reported.
fn line_and_column(path: &Path, text: &str, offset: usize) -> (usize, usize) {
    let at = super::report::Located::at(path, text, offset, 1);
    (at.line, at.column)
}

fn check_shape<'de, T: DeserializeOwned, D>(
    path: &Path,
    de: D,
    describe: impl Fn(&D::Error) -> (String, Option<(usize, usize)>),
) -> Result<(), LoadError>
where
    D: serde::Deserializer<'de>,
{
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(_) => Ok(()),
        Err(e) => {
            let key = e.path().to_string();
            let (message, at) = describe(e.inner());
            let (line, column) = at.unzip();
            let suggestion = suggest_key(&message);
            // An unknown field's path ends with the field itself: name the table around it.
            let key = if message.starts_with("unknown field") {
                key.rsplit_once('.')
                    .map(|(t, _)| t.to_owned())
                    .unwrap_or_default()
            } else {
                key
            };
            let message = if message.starts_with("unknown field") {
                let field = message.split('`').nth(1).unwrap_or("?");
                let table = if key.is_empty() {
                    "the top level".to_owned()
                } else {
                    format!("[{key}]")
                };
                format!("unknown key `{field}` in {table}")
            } else {
                message
            };
            let key = (!message.starts_with("unknown key")).then_some(key);
            Err(LoadError::Parse {
                file: path.to_owned(),
                line,
                column,
                key,
                message,
                suggestion,
            })
        }
    }
}

fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The nearest valid key named in a serde "unknown field" message, if one is close.
pub fn suggest_key(message: &str) -> Option<String> {
    let (head, expected) = message.split_once("expected")?;
    let unknown = head.split('`').nth(1)?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    nearest(unknown, &candidates).map(str::to_owned)
}

/// `GUARDIAN_A__B__C=value` → key `a.b.c`, one layer per variable so every error and every
/// `--explain` line names the variable itself. `GUARDIAN_CONFIG` (discovery) and
/// `GUARDIAN_LOG` (a tracing filter for guardian's own log) are not config keys.
/// `GUARDIAN_*` variables that the CLI reads itself.
const NOT_KEYS: &[&str] = &["CONFIG", "LOG"];

fn guardian_env_layers(env: &BTreeMap<String, String>) -> Vec<Layer> {
    env.iter()
        .filter_map(|(var, value)| {
            let rest = var.strip_prefix("GUARDIAN_")?;
            if rest.is_empty() || NOT_KEYS.contains(&rest) {
                return None;
            }
            // Only a key path (`GUARDIAN_SERVICES__WEB__PORT`) is config: a user's own
            // `GUARDIAN_BIN` or `GUARDIAN_HOME` is none of guardian's business.
            if !rest.contains("__") {
                eprintln!(
                    "warning: environment variable {var} is not a config key path (those have `__` between levels, e.g. GUARDIAN_GUARDIAN__LOG_LEVEL); ignored"
                );
                return None;
            }
            // Keys are lowercase, but the names under `services.NAME.env` are the child's
            // variable names and keep their case.
            let parts: Vec<&str> = rest.split("__").collect();
            let key = parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let is_env_name = i == 3
                        && parts[0].eq_ignore_ascii_case("services")
                        && parts[2].eq_ignore_ascii_case("env");
                    if is_env_name {
                        (*p).to_owned()
                    } else {
                        p.to_ascii_lowercase()
                    }
                })
                .collect::<Vec<_>>()
                .join(".");
            let value: Value = value
                .parse()
                .unwrap_or_else(|never: std::convert::Infallible| match never {});
            Some(keyed(format!("environment variable {var}"), &key, value))
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Count,
    Seconds,
    Float,
    Port,
    Text,
    Bool,
}

/// SPEC §3: the flat names a service with `env_prefix` takes.
const FLAT: &[(&str, &str, Kind)] = &[
    ("MAX_RETRIES", "backoff.max_retries", Kind::Count),
    (
        "INITIAL_RETRY_DELAY",
        "backoff.initial_delay",
        Kind::Seconds,
    ),
    ("MAX_RETRY_DELAY", "backoff.max_delay", Kind::Seconds),
    ("BACKOFF_FACTOR", "backoff.factor", Kind::Float),
    ("HEALTH_CHECK_INTERVAL", "health.interval", Kind::Seconds),
    ("HEALTH_CHECK_TIMEOUT", "health.timeout", Kind::Seconds),
    (
        "UNHEALTHY_THRESHOLD",
        "health.unhealthy_threshold",
        Kind::Count,
    ),
    ("STARTUP_TIMEOUT", "startup_timeout", Kind::Seconds),
    ("SHUTDOWN_TIMEOUT", "shutdown_timeout", Kind::Seconds),
    ("HOST", "host", Kind::Text),
    ("PORT", "port", Kind::Port),
    ("LOG_LEVEL", "log_level", Kind::Text),
    ("METRICS_ENABLED", "metrics.enabled", Kind::Bool),
    ("METRICS_FILE", "metrics.file", Kind::Text),
];

/// The flat variables, documented for `--explain` and the README.
pub fn flat_variables() -> impl Iterator<Item = (&'static str, &'static str)> {
    FLAT.iter().map(|(suffix, key, _)| (*suffix, *key))
}

fn flat_env_layers(prelim: &RawConfig, opts: &LoadOptions) -> Result<Vec<Layer>, LoadError> {
    let env = &opts.env;
    let mut layers = Vec::new();
    let services = prelim.services.iter().flatten();
    for (name, svc) in services {
        let Some(prefix) = &svc.env_prefix else {
            continue;
        };
        for (suffix, key, kind) in FLAT {
            let var = format!("{prefix}_{suffix}");
            opts.check_utf8(&var)?;
            let Some(text) = env.get(&var) else { continue };
            let value = typed(&var, text.trim(), *kind)?;
            layers.push(keyed(
                format!("environment variable {var}"),
                &format!("services.{name}.{key}"),
                value,
            ));
        }
        for bound in ["START", "END"] {
            opts.check_utf8(&format!("{prefix}_PORT_{bound}"))?;
        }
        let start = env.get(&format!("{prefix}_PORT_START"));
        let end = env.get(&format!("{prefix}_PORT_END"));
        if start.is_some() || end.is_some() {
            let current = svc.port_range;
            let pick = |var: String,
                        v: Option<&String>,
                        fallback: Option<u16>|
             -> Result<u16, LoadError> {
                match (v, fallback) {
                    (Some(t), _) => {
                        t.trim()
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or_else(|| LoadError::Env {
                                message: format!("`{t}` is not a port (expected 1 to 65535)"),
                                var,
                            })
                    }
                    (None, Some(f)) => Ok(f),
                    (None, None) => Err(LoadError::Env {
                        message: format!(
                            "is not set, and the service has no port_range to take it from; set {var} too"
                        ),
                        var,
                    }),
                }
            };
            let a = pick(format!("{prefix}_PORT_START"), start, current.map(|r| r[0]))?;
            let b = pick(format!("{prefix}_PORT_END"), end, current.map(|r| r[1]))?;
            let var = if start.is_some() {
                format!("{prefix}_PORT_START")
            } else {
                format!("{prefix}_PORT_END")
            };
            layers.push(keyed(
                format!("environment variable {var}"),
                &format!("services.{name}.port_range"),
                Value::from(vec![a, b]),
            ));
        }
    }
    Ok(layers)
}

fn typed(var: &str, text: &str, kind: Kind) -> Result<Value, LoadError> {
    let err = |expected: &str| LoadError::Env {
        var: var.to_owned(),
        message: format!("`{text}` is not {expected}"),
    };
    Ok(match kind {
        Kind::Count => Value::from(
            text.parse::<u32>()
                .map_err(|_| err("a whole number (expected a count such as 10)"))?,
        ),
        Kind::Seconds => Value::from(
            Secs::parse(text)
                .map_err(|e| LoadError::Env {
                    var: var.to_owned(),
                    message: e,
                })?
                .to_string(),
        ),
        Kind::Float => {
            let f = text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| err("a number (expected e.g. 2.0)"))?;
            Value::from(f)
        }
        Kind::Port => Value::from(
            text.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| err("a port (expected 1 to 65535)"))?,
        ),
        Kind::Text => Value::from(text.to_owned()),
        Kind::Bool => Value::from(match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(err("a boolean (expected true or false)")),
        }),
    })
}

/// Where the value at `key` came from: a file path, "environment variable X" or a flag.
pub fn origin_of(figment: &Figment, key: &str) -> Option<String> {
    let mut key = key.split('[').next().unwrap_or(key).to_owned();
    loop {
        if let Some(meta) = figment.find_metadata(&key) {
            return Some(describe(meta));
        }
        key = key.rsplit_once('.')?.0.to_owned();
    }
}

fn describe(meta: &Metadata) -> String {
    match meta.source.as_ref() {
        Some(Source::File(p)) => p.display().to_string(),
        _ => meta.name.to_string(),
    }
}

/// Points each problem that came from a file at its line and column.
fn locate_all(mut errors: ValidationErrors) -> ValidationErrors {
    let mut texts: BTreeMap<String, Option<String>> = BTreeMap::new();
    for e in &mut errors.0 {
        let Some(origin) = e.origin.clone() else {
            continue;
        };
        let text = texts
            .entry(origin.clone())
            .or_insert_with(|| std::fs::read_to_string(&origin).ok());
        let Some(text) = text.as_deref() else {
            continue;
        };
        let json = origin.ends_with(".json");
        let mut key = e.key.as_str();
        let found = loop {
            if let Some(hit) = super::report::locate(text, json, key) {
                break Some(hit);
            }
            match key.rsplit_once('.') {
                Some((parent, _)) => key = parent,
                None => break None,
            }
        };
        if let Some((offset, len)) = found {
            e.at = Some(super::report::Located::at(
                Path::new(&origin),
                text,
                offset,
                len,
            ));
        }
    }
    errors
}

/// Turns a figment error into one that names the variable or file and the key.
fn figment_error(e: figment::Error, figment: &Figment) -> LoadError {
    let origin = e
        .metadata
        .as_ref()
        .map(describe)
        .unwrap_or_else(|| "the config".to_owned());
    let key = e.path.join(".");
    use figment::error::Kind as K;
    let message = match &e.kind {
        K::UnknownField(field, expected) => {
            let key = key
                .strip_suffix(field.as_str())
                .map_or(key.as_str(), |k| k.trim_end_matches('.'));
            let table = if key.is_empty() {
                "the top level".to_owned()
            } else {
                format!("[{key}]")
            };
            let hint = nearest(field, expected)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            // The full key path, so that a GUARDIAN_* spelling error is easy to spot.
            format!("unknown key `{field}` in {table}{hint}")
        }
        K::InvalidType(actual, expected) => {
            format!("at `{key}`: found {actual}, expected {expected}")
        }
        K::InvalidValue(actual, expected) => {
            format!("at `{key}`: invalid value {actual}, expected {expected}")
        }
        other => format!("at `{key}`: {other}"),
    };
    let _ = figment;
    match origin.strip_prefix("environment variable ") {
        Some(var) => LoadError::Env {
            var: var.to_owned(),
            message,
        },
        None => LoadError::Layer { origin, message },
    }
}

/// Every key set by a layer (not a built-in default), with where it came from, in key order.
pub fn provenance(figment: &Figment) -> Vec<(String, String)> {
    fn walk(prefix: &str, dict: &Dict, figment: &Figment, out: &mut Vec<(String, String)>) {
        for (k, v) in dict {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Dict(_, d) if !d.is_empty() => walk(&key, d, figment, out),
                _ => {
                    let origin = figment
                        .get_metadata(v.tag())
                        .map(describe)
                        .unwrap_or_else(|| "?".to_owned());
                    out.push((key, origin));
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(data) = figment.data()
        && let Some(dict) = data.get(&Profile::Default)
    {
        walk("", dict, figment, &mut out);
    }
    out
}

#[cfg(test)]
mod props {
    //! Property tests: config text, files and environment values of any content never panic
    //! the loader, and every rejection names the file or the variable.

    use super::*;
    use proptest::prelude::*;

    const EXAMPLE_TOML: &str = include_str!("../../examples/guardian.toml");
    const EXAMPLE_JSON: &str = include_str!("../../examples/guardian.json");

    fn load_text(name: &str, text: &[u8], env: &[(&str, &str)]) -> Result<Loaded, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        load(&LoadOptions {
            files: vec![path],
            state_dir: Some(dir.path().join("state")),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..LoadOptions::default()
        })
    }

    fn load_text_at(path: &Path, text: &[u8]) -> Result<Loaded, LoadError> {
        std::fs::write(path, text).unwrap();
        let dir = path.parent().unwrap();
        load(&LoadOptions {
            files: vec![path.to_owned()],
            state_dir: Some(dir.join("state")),
            ..LoadOptions::default()
        })
    }

    #[test]
    fn a_typo_next_to_a_multibyte_character_is_rendered_at_its_position() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text, at) in [
            (
                "a.toml",
                "[services.a]\ncommand = [\"true\"]\nport = é\n",
                ":3:8: error:",
            ),
            (
                "b.toml",
                "[services.a]\ncommand = [\"true\"]\néstartup_timeout = \"15s\"\n",
                ":3:1: error:",
            ),
            (
                "c.json",
                "{\"services\": {\"a\": {\"command\": [\"true\"], \"port\": é}}}",
                ":1:50: error:",
            ),
        ] {
            let file = dir.path().join(name);
            let e = load_text_at(&file, text.as_bytes())
                .unwrap_err()
                .to_string();
            let want = format!("{}{at}", file.display());
            assert!(e.starts_with(&want), "{name}: want {want}, got:\n{e}");
            assert!(e.contains('^'), "{name}: no caret:\n{e}");
        }
    }

    #[test]
    fn a_value_that_is_not_utf8_is_named_with_its_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, EXAMPLE_TOML).unwrap();
        for var in [
            "GUARDIAN_GUARDIAN__LOG_LEVEL",
            "SOCKETIO_MAX_RETRIES",
            "SOCKETIO_PORT_END",
            "GUARDIAN_CONFIG",
        ] {
            let e = load(&LoadOptions {
                files: vec![file.clone()],
                state_dir: Some(dir.path().join("state")),
                not_utf8: vec![var.to_owned()],
                ..LoadOptions::default()
            })
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with(&format!(
                    "environment variable {var}: its value is not UTF-8"
                )),
                "{e}"
            );
        }
        // Someone else's variable is none of guardian's business.
        load(&LoadOptions {
            files: vec![file.clone()],
            state_dir: Some(dir.path().join("state")),
            not_utf8: vec!["LANG".to_owned(), "OTHER_MAX_RETRIES".to_owned()],
            ..LoadOptions::default()
        })
        .unwrap();
    }

    #[test]
    fn an_env_file_line_that_is_not_utf8_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("app.env");
        std::fs::write(&env, b"A=1\nB=caf\xe9\n").unwrap();
        let cfg = format!(
            "[services.a]\ncommand = [\"true\"]\nenv_file = [\"{}\"]\n",
            env.display()
        );
        let e = load_text_at(&dir.path().join("g.toml"), cfg.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{}:2: this line is not UTF-8 text", env.display())),
            "{e}"
        );
    }

    /// The example with a few bytes changed: mostly near-valid text, which reaches deeper.
    fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6)
            .prop_map(move |edits| {
                let mut b = base.as_bytes().to_vec();
                for (at, byte, how) in edits {
                    let i = at.index(b.len().max(1)).min(b.len());
                    match how {
                        0 if i < b.len() => b[i] = byte,
                        1 => b.insert(i, byte),
                        _ if i < b.len() => {
                            b.remove(i);
                        }
                        _ => {}
                    }
                }
                b
            })
    }

    /// Text a person may paste or type by accident: multi-byte letters, combining marks,
    /// zero-width characters, a byte-order mark, emoji, right-to-left text, or any printable
    /// Unicode.
    fn odd_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("é".to_owned()),
            Just("e\u{301}".to_owned()),
            Just("\u{200b}".to_owned()),
            Just("\u{feff}".to_owned()),
            Just("🦀".to_owned()),
            Just("👩\u{200d}💻".to_owned()),
            Just("\u{202e}שלום".to_owned()),
            Just("日本".to_owned()),
            Just("\t".to_owned()),
            "\\PC{1,4}",
        ]
    }

    /// `base` with 1 to 4 pieces of odd text inserted at character boundaries: valid UTF-8
    /// that a parser rejects right at (or next to) a multi-byte character.
    fn with_odd_text(base: &'static str) -> impl Strategy<Value = String> {
        proptest::collection::vec((any::<prop::sample::Index>(), odd_text()), 1..5).prop_map(
            move |edits| {
                let mut s = base.to_owned();
                for (at, piece) in edits {
                    let i = s.floor_char_boundary(at.index(s.len() + 1));
                    s.insert_str(i, &piece);
                }
                s
            },
        )
    }

    /// A rejection of `file` is rendered as `FILE:LINE:COL: error:` (or names a key).
    fn rendered_at_a_position(e: &LoadError, file: &str) -> bool {
        let text = e.to_string();
        let positioned = text.lines().any(|l| {
            l.strip_prefix(file).is_some_and(|rest| {
                let mut parts = rest.splitn(4, ':');
                parts.next() == Some("")
                    && parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
                    && parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
            })
        });
        positioned || matches!(e, LoadError::Invalid(_)) && text.contains('`')
    }

    fn names_the_file(e: &LoadError, file: &str) -> bool {
        let text = e.to_string();
        text.contains(file) || matches!(e, LoadError::Invalid(_)) && text.contains('`')
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn mutated_toml_never_panics_and_names_the_file(text in mutated(EXAMPLE_TOML)) {
            if let Err(e) = load_text("fuzz.toml", &text, &[]) {
                prop_assert!(names_the_file(&e, "fuzz.toml"), "{e}");
            }
        }

        #[test]
        fn mutated_json_never_panics_and_names_the_file(text in mutated(EXAMPLE_JSON)) {
            if let Err(e) = load_text("fuzz.json", &text, &[]) {
                prop_assert!(names_the_file(&e, "fuzz.json"), "{e}");
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(text in proptest::collection::vec(any::<u8>(), 0..300), json in any::<bool>()) {
            let name = if json { "fuzz.json" } else { "fuzz.toml" };
            if let Err(e) = load_text(name, &text, &[]) {
                prop_assert!(names_the_file(&e, name), "{e}");
            }
        }

        /// 200 cases: odd Unicode anywhere in the example TOML; every error is rendered
        /// (snippet and caret included) at FILE:LINE:COL.
        #[test]
        fn unicode_anywhere_in_toml_is_rendered_at_its_position_200_cases(text in with_odd_text(EXAMPLE_TOML)) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("fuzz.toml");
            if let Err(e) = load_text_at(&file, text.as_bytes()) {
                prop_assert!(rendered_at_a_position(&e, &file.display().to_string()), "{e}");
            }
        }

        /// 200 cases: the same for JSON.
        #[test]
        fn unicode_anywhere_in_json_is_rendered_at_its_position_200_cases(text in with_odd_text(EXAMPLE_JSON)) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("fuzz.json");
            if let Err(e) = load_text_at(&file, text.as_bytes()) {
                prop_assert!(rendered_at_a_position(&e, &file.display().to_string()), "{e}");
            }
        }

        /// 200 cases: odd Unicode anywhere in an env file: loaded, or an error naming the
        /// file and its line.
        #[test]
        fn unicode_anywhere_in_an_env_file_is_loaded_or_named_with_its_line_200_cases(
            text in with_odd_text("# comment\nDB_URL=postgres://u:p@h/db\nexport MODE=\"fast\"\nEMPTY=\n"),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let env = dir.path().join("app.env");
            std::fs::write(&env, &text).unwrap();
            let cfg = format!(
                "[services.a]\ncommand = [\"true\"]\nenv_file = [\"{}\"]\n",
                env.display()
            );
            if let Err(e) = load_text_at(&dir.path().join("g.toml"), cfg.as_bytes()) {
                let shown = e.to_string();
                let named = format!("{}:", env.display());
                prop_assert!(shown.contains(&named), "{shown}");
            }
        }

        /// 200 cases: any Unicode value of any overriding variable is taken or named.
        #[test]
        fn any_unicode_environment_value_is_accepted_or_names_its_variable_200_cases(
            which in 0..5usize,
            value in with_odd_text("12"),
        ) {
            let var = [
                "SOCKETIO_MAX_RETRIES",
                "SOCKETIO_HEALTH_CHECK_INTERVAL",
                "SOCKETIO_PORT",
                "GUARDIAN_SERVICES__SOCKETIO__BACKOFF__FACTOR",
                "GUARDIAN_SERVICES__SOCKETIO__STARTUP_TIMEOUT",
            ][which];
            if let Err(e) = load_text("g.toml", EXAMPLE_TOML.as_bytes(), &[(var, &value)]) {
                prop_assert!(e.to_string().contains(var), "{var}={value:?}: {e}");
            }
        }

        #[test]
        fn any_environment_value_is_accepted_or_names_its_variable(
            which in 0..5usize,
            value in "\\PC{0,12}",
        ) {
            let var = [
                "SOCKETIO_MAX_RETRIES",
                "SOCKETIO_HEALTH_CHECK_INTERVAL",
                "SOCKETIO_PORT",
                "GUARDIAN_SERVICES__SOCKETIO__BACKOFF__FACTOR",
                "GUARDIAN_GUARDIAN__LOG_LEVEL",
            ][which];
            if let Err(e) = load_text("g.toml", EXAMPLE_TOML.as_bytes(), &[(var, &value)]) {
                prop_assert!(e.to_string().contains(var), "{var}={value:?}: {e}");
            }
        }
    }
}
