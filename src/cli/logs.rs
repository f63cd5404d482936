//! `guardian logs [-f] [-n N] NAME...`: the last lines of each service's log, and with `-f`
//! the lines as they are written, from the API's `/services/NAME/logs?follow=1` (Server-Sent
//! Events) over the Unix socket or `--api`. Several services (or a replicated one) interleave
//! line by line, each prefixed `NAME | `, in colour on a terminal, like `docker compose logs`.
//! A follower that lost lines (it read too slowly, or was away) says how many on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;

use super::client::{Endpoint, call_at, open_at};
use crate::config::Loaded;
use crate::error::{FatalError, exit};
use crate::process::output::{color_wanted, prefix, tail};

/// Reconnections in a row without a line before `-f` gives up.
const RETRIES: u32 = 5;

/// The instances to show and where each one's log is (known locally only).
type Instances = Vec<(String, Option<PathBuf>)>;

pub async fn run(
    at: &Endpoint,
    local: Option<(&Path, Option<&Loaded>)>,
    services: &[String],
    follow: bool,
    n: usize,
) -> Result<u8, FatalError> {
    let instances = resolve(at, local, services).await?;
    let color = color_wanted();
    let label = |name: &str| {
        if instances.len() > 1 {
            prefix(name, color)
        } else {
            String::new()
        }
    };
    if !follow {
        for (name, file) in &instances {
            let lines = match file {
                Some(file) => local_tail(file, n)?,
                None => remote_tail(at, name, n).await?,
            };
            let label = label(name);
            let mut out = std::io::stdout().lock();
            for l in lines {
                let _ = out.write_all(label.as_bytes());
                let _ = out.write_all(&l);
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
        }
        return Ok(exit::OK);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (name, _) in &instances {
        tasks.spawn(follow_one(at.clone(), name.clone(), label(name), n));
    }
    // The first follower that cannot go on ends the command.
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(e);
        }
    }
    Ok(exit::OK)
}

/// The instances `services` name: from the config when there is one, else from the state
/// dir's logs folder, else (over `--api`) from the running guardian.
async fn resolve(
    at: &Endpoint,
    local: Option<(&Path, Option<&Loaded>)>,
    services: &[String],
) -> Result<Instances, FatalError> {
    let known: Vec<(String, String, Option<PathBuf>)> = match local {
        Some((_, Some(l))) => l
            .config
            .instances()
            .map(|s| (s.name.to_string(), s.group.to_string(), Some(s.log.file)))
            .collect(),
        Some((dir, None)) => std::fs::read_dir(dir.join("logs"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                let name = name.strip_suffix(".log")?.to_owned();
                let group = match name.rsplit_once('.') {
                    Some((g, k)) if k.parse::<u32>().is_ok() => g.to_owned(),
                    _ => name.clone(),
                };
                Some((name, group, Some(e.path())))
            })
            .collect(),
        None => {
            let (_, status) = call_at(at, "GET", "/status", "logs").await?;
            status["services"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    let name = s["name"].as_str()?.to_owned();
                    let group = s["replica_of"].as_str().unwrap_or(&name).to_owned();
                    Some((name, group, None))
                })
                .collect()
        }
    };
    let mut picked: Instances = Vec::new();
    for want in services {
        let found: Vec<_> = known
            .iter()
            .filter(|(name, group, _)| name == want || group == want)
            .collect();
        if found.is_empty() {
            let mut names: Vec<String> = known.iter().map(|(n, _, _)| n.clone()).collect();
            names.sort();
            return Err(FatalError::NoSuchService {
                name: want.clone(),
                known: names,
            });
        }
        for (name, _, file) in found {
            if !picked.iter().any(|(n, _)| n == name) {
                picked.push((name.clone(), file.clone()));
            }
        }
    }
    picked.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(picked)
}

fn local_tail(file: &Path, n: usize) -> Result<Vec<Vec<u8>>, FatalError> {
    if let Err(source) = std::fs::metadata(file) {
        return Err(FatalError::Io {
            action: "read the log of the service at",
            path: file.to_owned(),
            source,
        });
    }
    Ok(tail(file, n))
}

pub(super) async fn remote_tail(
    at: &Endpoint,
    name: &str,
    n: usize,
) -> Result<Vec<Vec<u8>>, FatalError> {
    let path = format!("/services/{name}/logs?n={n}");
    let resp = open_at(at, "GET", &path, &[], "logs").await?;
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| FatalError::Message(format!("the guardian's answer was cut off: {e}")))?
        .to_bytes();
    if code != 200 {
        return Err(refused(code, &body));
    }
    Ok(body
        .strip_suffix(b"\n")
        .unwrap_or(&body)
        .split(|b| *b == b'\n')
        .filter(|_| !body.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn refused(code: u16, body: &[u8]) -> FatalError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let why = v["error"].as_str().unwrap_or("no reason given");
    let hint = match code {
        401 | 403 => "\n  off loopback the API needs the token: pass --token-file",
        _ => "",
    };
    FatalError::Message(format!("the guardian answered {code}: {why}{hint}"))
}

/// Follows one instance until guardian ends the stream and cannot be reached again.
async fn follow_one(at: Endpoint, name: String, label: String, n: usize) -> Result<(), FatalError> {
    let mut last: Option<u64> = None;
    let mut tries = 0;
    loop {
        let mut headers = Vec::new();
        if let Some(id) = last {
            headers.push(("last-event-id", id.to_string()));
        }
        let path = format!("/services/{name}/logs?n={n}&follow=1");
        let resp = match open_at(&at, "GET", &path, &headers, "logs -f").await {
            Ok(r) => r,
            Err(e) if tries >= RETRIES || last.is_none() => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let code = resp.status().as_u16();
        let mut body = resp.into_body();
        if code != 200 {
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(match code {
                404 => {
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    FatalError::Message(v["error"].as_str().unwrap_or("no such service").into())
                }
                _ => refused(code, &bytes),
            });
        }
        let mut events = EventStream::default();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for e in events.push(&data) {
                tries = 0;
                let mut out = std::io::stdout().lock();
                match e.kind.as_deref() {
                    Some("lost") => {
                        let _ = out.flush();
                        eprintln!("{label}({})", e.data);
                    }
                    _ => {
                        if let Some(id) = e.id {
                            last = Some(id);
                        }
                        for line in e.data.split('\n') {
                            let _ = writeln!(out, "{label}{line}");
                        }
                    }
                }
            }
        }
        // The stream ended (guardian stopped, or dropped this follower): come back once it
        // answers again, from the last line seen.
        if tries >= RETRIES {
            return Err(FatalError::Message(format!(
                "the stream of {name} ended and guardian did not answer again"
            )));
        }
        tries += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    pub id: Option<u64>,
    pub kind: Option<String>,
    pub data: String,
}

/// Server-Sent Events from the bytes as they come: fields up to a blank line make an event;
/// comments (the heartbeat) make none.
#[derive(Default)]
pub struct EventStream {
    buf: Vec<u8>,
}

impl EventStream {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let mut e = Event::default();
            let (mut fields, mut data) = (false, false);
            for line in String::from_utf8_lossy(&block).lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => e.id = value.parse().ok(),
                    "event" => e.kind = Some(value.to_owned()),
                    "data" => {
                        if data {
                            e.data.push('\n');
                        }
                        e.data.push_str(value);
                        data = true;
                    }
                    _ => continue,
                }
                fields = true;
            }
            if fields {
                out.push(e);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_heartbeats_make_none() {
        let mut s = EventStream::default();
        assert!(s.push(b": heartbeat\n\nid: 4\nda").is_empty());
        let got = s.push(b"ta: hello: world\n\nevent: lost\ndata: 3 lines lost\n\n");
        assert_eq!(
            got,
            vec![
                Event {
                    id: Some(4),
                    kind: None,
                    data: "hello: world".into()
                },
                Event {
                    id: None,
                    kind: Some("lost".into()),
                    data: "3 lines lost".into()
                },
            ]
        );
    }
}
