//! Procfiles → guardian (SPEC §16), as Foreman reads them: `name: command` lines (the name
//! letters, digits, `_` and `-`), `#` comments, blank lines; each command runs through
//! `sh -c`. Foreman gives each process type a `PORT`: 5000, then 5100, 5200… in file order;
//! a command that reads `$PORT` gets that as its `port`, and `PORT = "{port}"`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Draft, ImportError, Service};
use crate::config::raw::Text;

/// Foreman's first port and its step per process type.
const BASE_PORT: u16 = 5000;
const STEP: u16 = 100;

pub fn read(file: &Path, text: &str) -> Result<Draft, ImportError> {
    let mut draft = Draft::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(':').filter(|(name, cmd)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !cmd.trim().is_empty()
        });
        let Some((name, command)) = parsed else {
            return Err(ImportError(format!(
                "{}:{}: `{trimmed}` is not `name: command`",
                file.display(),
                i + 1
            )));
        };
        let index = draft.services.len() as u16;
        let command = command.trim().to_owned();
        let mut svc = Service {
            name: name.to_owned(),
            origin: format!("{}:{}", file.display(), i + 1),
            ..Default::default()
        };
        if command.contains("$PORT") || command.contains("${PORT}") {
            let port = BASE_PORT.saturating_add(STEP.saturating_mul(index));
            svc.raw.port = Some(port);
            svc.raw.env = Some(BTreeMap::from([("PORT".to_owned(), Text("{port}".into()))]));
            svc.notes.push(format!(
                "reads $PORT: port {port}, as Foreman numbers process types"
            ));
        }
        svc.raw.command = Some(vec!["sh".into(), "-c".into(), format!("exec {command}")]);
        draft.services.push(svc);
    }
    draft.notes.push("Foreman stops every process when one exits; guardian restarts each one (restart = \"always\"): give a one-shot line restart = \"no\"".into());
    if draft.services.is_empty() {
        return Err(ImportError(format!(
            "{}: no `name: command` line: not a Procfile",
            file.display()
        )));
    }
    Ok(draft)
}
