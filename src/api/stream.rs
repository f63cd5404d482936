//! Live output and events (issue 35): `GET /services/NAME/logs?n=N` (the log's last lines)
//! and `?follow=1`, `GET /events?follow=1`, as Server-Sent Events: one event per batch of
//! lines (a `data:` field each) or per guardian event, numbered (`id:`) so a follower that
//! comes back with `Last-Event-ID` resumes or is told what it lost, a heartbeat comment
//! every few seconds. At most
//! `MAX_STREAMS` followers at once (then 503 with Retry-After); a follower that reads too
//! slowly is told how many lines it lost, and the engine never waits for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as Sse_, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiState, error, unknown_service};
use crate::process::output::tail;

/// Followers at once, across services and events.
pub const MAX_STREAMS: usize = 256;
/// The most lines `n` may ask for.
pub const MAX_LINES: usize = 10_000;
/// Between heartbeats (an SSE comment) on a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
pub struct LogsQuery {
    n: Option<usize>,
    follow: Option<String>,
}

fn following(f: Option<&str>) -> bool {
    matches!(f, Some("1" | "true" | "yes"))
}

/// One follower's place among `MAX_STREAMS`, given back when its stream ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Option<Slot> {
        let mut now = count.load(Ordering::Relaxed);
        loop {
            if now >= MAX_STREAMS {
                return None;
            }
            match count.compare_exchange(now, now + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(count.clone())),
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn busy() -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{MAX_STREAMS} followers are connected already; try again later"),
    );
    r.headers_mut()
        .insert("retry-after", HeaderValue::from_static("5"));
    r
}

fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Result<Sse_, Infallible>> + Send + 'static,
{
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response()
}

fn lost(n: u64, why: &str) -> Sse_ {
    Sse_::default()
        .event("lost")
        .data(format!("{n} lines lost: {why}"))
}

/// `GET /services/NAME/logs?n=N[&follow=1]`.
pub async fn service_logs(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
) -> Response {
    let snap = state.handle.snapshot();
    let Some(svc) = snap.services.iter().find(|s| s.name == name) else {
        return unknown_service(&snap, &name);
    };
    let follow = following(q.follow.as_deref());
    let n = q.n.unwrap_or(if follow { 10 } else { 100 });
    if n > MAX_LINES {
        return error(
            StatusCode::BAD_REQUEST,
            format!("n = {n} is out of range: ask for 0 to {MAX_LINES} lines"),
        );
    }
    let file = svc.detail.log_file.clone();
    if !follow {
        let lines = tokio::task::spawn_blocking(move || tail(&file, n))
            .await
            .unwrap_or_default();
        let mut body = Vec::new();
        for l in lines {
            body.extend_from_slice(&l);
            body.push(b'\n');
        }
        return ([("content-type", "text/plain; charset=utf-8")], body).into_response();
    }
    let Some(slot) = Slot::take(&state.streams) else {
        return busy();
    };
    // Subscribed before the backlog is read: a line written meanwhile may come twice, never
    // not at all. A returning follower gets what it missed from the replay ring instead.
    let resumed = last_event_id(&headers);
    let sub = state.followers.subscribe(&name, resumed);
    let backlog = match resumed {
        Some(last) if last < sub.next => Vec::new(),
        _ => tokio::task::spawn_blocking(move || tail(&file, n))
            .await
            .unwrap_or_default(),
    };
    let stream = async_stream(move |tx| async move {
        let _slot = slot;
        let mut rx = sub.rx;
        if sub.lost > 0 {
            let why = "written while this follower was away, no longer kept";
            if tx.send(lost(sub.lost, why)).await.is_err() {
                return;
            }
        }
        for l in backlog {
            let text = String::from_utf8_lossy(&l).into_owned();
            if tx.send(Sse_::default().data(text)).await.is_err() {
                return;
            }
        }
        let after = resumed.unwrap_or(0);
        for batch in &sub.replay {
            if let Some(e) = lines(batch.numbered().filter(|(k, _)| *k > after))
                && tx.send(e).await.is_err()
            {
                return;
            }
        }
        let mut expected = sub.next;
        loop {
            match rx.recv().await {
                Ok(batch) => {
                    if batch.first > expected {
                        let why = "this follower read too slowly";
                        if tx.send(lost(batch.first - expected, why)).await.is_err() {
                            return;
                        }
                    }
                    if let Some(e) = lines(batch.numbered())
                        && tx.send(e).await.is_err()
                    {
                        return;
                    }
                    expected = batch.first + batch.count();
                }
                // Counted at the next batch that arrives (its first line's number).
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    sse(stream)
}

/// The lines the pump read at once as one event, one `data:` field a line, numbered by the
/// last (for `Last-Event-ID`): one event a batch, not a line, is what lets a hundred
/// followers keep up with a chatty service. A carriage return inside a line would end an SSE
/// field (and so count as a line): a line keeps what follows its last one, as a terminal
/// shows a progress bar.
fn lines<'a>(numbered: impl Iterator<Item = (u64, &'a [u8])>) -> Option<Sse_> {
    let (mut text, mut last) = (String::new(), None);
    for (k, l) in numbered {
        if last.is_some() {
            text.push('\n');
        }
        let shown = l.rsplit(|b| *b == b'\r').next().unwrap_or(l);
        text.push_str(&String::from_utf8_lossy(shown));
        last = Some(k);
    }
    Some(Sse_::default().id(last?.to_string()).data(text))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    n: Option<usize>,
    follow: Option<String>,
}

/// `GET /events?n=N[&follow=1]`: the recent events as JSON, or followed as SSE (each event's
/// JSON, numbered; `Last-Event-ID` replays those still in memory).
pub async fn events(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let n = q.n.unwrap_or(50);
    if !following(q.follow.as_deref()) {
        return axum::Json(serde_json::json!(state.events.recent(None, n))).into_response();
    }
    let Some(slot) = Slot::take(&state.streams) else {
        return busy();
    };
    let (mut rx, backlog) = state
        .events
        .follow(last_event_id(&headers), n.min(MAX_LINES));
    let stream = async_stream(move |tx| async move {
        let _slot = slot;
        let mut seen = 0;
        for (seq, e) in backlog {
            seen = seq;
            let json = serde_json::to_string(&e).unwrap_or_default();
            let ev = Sse_::default().id(seen.to_string()).data(json);
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        loop {
            match rx.recv().await {
                Ok((seq, e)) if seq > seen => {
                    seen = seq;
                    let json = serde_json::to_string(&e).unwrap_or_default();
                    if tx
                        .send(Sse_::default().id(seq.to_string()).data(json))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(k)) => {
                    let e = Sse_::default()
                        .event("lost")
                        .data(format!("{k} events lost: this follower read too slowly"));
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    sse(stream)
}

/// A stream fed by a task through a channel of one: the task runs only as fast as the
/// client reads, and ends when the client goes.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Sse_, Infallible>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Sse_>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_event_numbered_by_its_last_line_and_carriage_returns_stay_inside() {
        let batch = crate::process::output::Lines {
            first: 7,
            bytes: std::sync::Arc::from(&b"one\r\n10%\r20%\rdone\nthree\n"[..]),
        };
        let event = lines(batch.numbered()).expect("an event");
        let wire = format!("{event:?}");
        assert!(wire.contains("id: 9"), "{wire}");
        assert!(
            wire.contains("data: one\\ndata: done\\ndata: three"),
            "{wire}"
        );
        assert!(lines(std::iter::empty()).is_none());
    }
}
