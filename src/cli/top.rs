//! `guardian top`: a live terminal view of every service with its log, events and controls.
//! It speaks the same API as the CLI (the Unix socket, or `--api`), reads the selected service's
//! log over the API too, and draws with ratatui. `App` and `draw` are plain: the rendering
//! tests run them on ratatui's `TestBackend`.

use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use serde_json::Value;

use super::client::{Endpoint, call_at};
use crate::error::{FatalError, exit};

/// How often the view asks for the status: the API's answer is a snapshot read, cheap.
const REFRESH: Duration = Duration::from_millis(1000);
/// The log pane shows this many of the last lines (`GET /services/NAME/logs?n=`).
const LOG_LINES: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Filter,
    Search,
    ConfirmStop,
    Help,
}

/// Everything the screen shows.
pub struct App {
    pub services: Vec<Value>,
    pub selected: usize,
    pub filter: String,
    pub search: String,
    pub mode: Mode,
    pub show_events: bool,
    pub message: String,
    pub log: Vec<String>,
    pub events: Vec<String>,
    pub color: bool,
    pub header: String,
    /// Recent health of each service, oldest first, for the sparkline.
    pub history: std::collections::BTreeMap<String, std::collections::VecDeque<String>>,
    /// CPU % and memory MB of each running service (from /diagnostics).
    pub usage: std::collections::BTreeMap<String, (f64, f64)>,
}

/// At most this many points in a sparkline.
const HISTORY: usize = 12;

fn spark(history: Option<&std::collections::VecDeque<String>>) -> String {
    history
        .into_iter()
        .flatten()
        .map(|h| match h.as_str() {
            "healthy" => '▁',
            "warning" => '▄',
            "critical" => '█',
            _ => '·',
        })
        .collect()
}

impl App {
    pub fn new(color: bool) -> Self {
        App {
            services: Vec::new(),
            selected: 0,
            filter: String::new(),
            search: String::new(),
            mode: Mode::Normal,
            show_events: false,
            message: "? help · q quit".to_owned(),
            log: Vec::new(),
            events: Vec::new(),
            color,
            header: String::new(),
            history: Default::default(),
            usage: Default::default(),
        }
    }

    /// The services the filter lets through (name or state contains it).
    pub fn shown(&self) -> Vec<&Value> {
        let f = self.filter.to_ascii_lowercase();
        self.services
            .iter()
            .filter(|s| {
                f.is_empty()
                    || s["name"].as_str().unwrap_or("").contains(&f)
                    || s["state"].as_str().unwrap_or("") == f
            })
            .collect()
    }

    pub fn selected_name(&self) -> Option<String> {
        self.shown()
            .get(self.selected)
            .and_then(|s| s["name"].as_str())
            .map(str::to_owned)
    }

    fn paint(&self, style: Style) -> Style {
        if self.color { style } else { Style::default() }
    }
}

fn state_color(state: &str) -> Color {
    match state {
        "running" => Color::Green,
        "failed" | "blocked" => Color::Red,
        "backoff" | "starting" | "stopping" | "waiting" => Color::Yellow,
        _ => Color::Gray,
    }
}

fn human(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 60.0 => format!("{}s", s as u64),
        Some(s) if s < 3600.0 => format!("{}m{:02}s", s as u64 / 60, s as u64 % 60),
        Some(s) => format!("{}h{:02}m", s as u64 / 3600, s as u64 % 3600 / 60),
    }
}

fn or_dash(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One frame: the header, the table of services, the log (or events) pane, the status line,
/// and the help or a confirmation on top when asked.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let [head, table_area, pane, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(50),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(app.header.as_str())
            .style(app.paint(Style::new().add_modifier(Modifier::BOLD))),
        head,
    );
    let narrow = area.width < 80;
    let columns: &[(&str, u16)] = if narrow {
        &[("SERVICE", 14), ("STATE", 10), ("PID", 8), ("HEALTH", 8)]
    } else {
        &[
            ("SERVICE", 16),
            ("STATE", 10),
            ("PID", 8),
            ("PORT", 6),
            ("UPTIME", 8),
            ("RESTARTS", 8),
            ("HEALTH", 8),
            ("BREAKER", 9),
            ("CPU%", 6),
            ("MEM MB", 7),
            ("HISTORY", 12),
            ("DETAIL", 30),
        ]
    };
    let rows: Vec<Row> = app
        .shown()
        .into_iter()
        .map(|s| {
            let state = s["state"].as_str().unwrap_or("?");
            let detail = s["waiting_for"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| {
                    s["last_error"]
                        .as_str()
                        .map(|e| e.lines().next().unwrap_or("").to_owned())
                })
                .or_else(|| {
                    // What the service says of itself (SPEC §14), then its held sockets.
                    s["status_text"]
                        .as_str()
                        .filter(|t| !t.is_empty())
                        .map(|t| t.lines().next().unwrap_or("").to_owned())
                })
                .or_else(|| {
                    s["last_watchdog"].as_f64().map(|at| {
                        let ago = (crate::process::pidfile::unix_now() - at).max(0.0);
                        format!("watchdog ping {} ago", human(Some(ago)))
                    })
                })
                .or_else(|| {
                    s["sockets"].as_object().map(|m| {
                        let held: Vec<String> = m
                            .iter()
                            .map(|(n, a)| format!("{n} {}", a.as_str().unwrap_or("?")))
                            .collect();
                        format!("holds {}", held.join(", "))
                    })
                })
                .unwrap_or_default();
            let name = s["name"].as_str().unwrap_or("");
            let (cpu, mem) = app
                .usage
                .get(name)
                .map_or(("-".to_owned(), "-".to_owned()), |(c, m)| {
                    (format!("{c:.1}"), format!("{m:.1}"))
                });
            let all = [
                or_dash(&s["name"]),
                state.to_owned(),
                or_dash(&s["pid"]),
                or_dash(&s["port"]),
                human(s["uptime_seconds"].as_f64()),
                or_dash(&s["restarts"]),
                or_dash(&s["health"]),
                or_dash(&s["circuit_breaker"]),
                cpu,
                mem,
                spark(app.history.get(name)),
                detail,
            ];
            let cells: Vec<Cell> = if narrow {
                vec![
                    Cell::from(all[0].clone()),
                    Cell::from(all[1].clone())
                        .style(app.paint(Style::new().fg(state_color(state)))),
                    Cell::from(all[2].clone()),
                    Cell::from(all[6].clone()),
                ]
            } else {
                all.iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let c = Cell::from(t.clone());
                        if i == 1 {
                            c.style(app.paint(Style::new().fg(state_color(state))))
                        } else {
                            c
                        }
                    })
                    .collect()
            };
            Row::new(cells)
        })
        .collect();
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|(_, w)| Constraint::Length(*w))
        .collect();
    let header = Row::new(columns.iter().map(|(h, _)| Cell::from(*h)))
        .style(app.paint(Style::new().add_modifier(Modifier::BOLD)));
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(format!(
            " services{} ",
            if app.filter.is_empty() {
                String::new()
            } else {
                format!(" (filter: {})", app.filter)
            }
        )))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::default();
    state.select((!app.shown().is_empty()).then_some(app.selected));
    f.render_stateful_widget(table, table_area, &mut state);

    let name = app.selected_name().unwrap_or_default();
    let (title, lines): (String, Vec<Line>) = if app.show_events {
        (
            format!(" events of {name} (e: log) "),
            app.events.iter().map(|l| Line::from(l.as_str())).collect(),
        )
    } else {
        let hits: Vec<Line> = app
            .log
            .iter()
            .filter(|l| app.search.is_empty() || l.contains(&app.search))
            .map(|l| {
                if app.search.is_empty() {
                    Line::from(l.as_str())
                } else {
                    Line::from(Span::styled(
                        l.as_str(),
                        app.paint(Style::new().fg(Color::Cyan)),
                    ))
                }
            })
            .collect();
        (
            format!(
                " log of {name}{} (e: events, /: search) ",
                if app.search.is_empty() {
                    String::new()
                } else {
                    format!(", lines with \"{}\"", app.search)
                }
            ),
            hits,
        )
    };
    let height = pane.height.saturating_sub(2) as usize;
    let start = lines.len().saturating_sub(height);
    f.render_widget(
        Paragraph::new(lines[start..].to_vec())
            .block(Block::default().borders(Borders::ALL).title(title))
            .wrap(Wrap { trim: false }),
        pane,
    );
    let prompt = match app.mode {
        Mode::Filter => format!("filter (name or state): {}▏", app.filter),
        Mode::Search => format!("search the log: {}▏", app.search),
        Mode::ConfirmStop => format!("stop {name}? y/n"),
        _ => app.message.clone(),
    };
    f.render_widget(Paragraph::new(prompt), status);
    if app.mode == Mode::Help {
        let help = [
            "↑/↓ or j/k   select a service",
            "s            start it",
            "x            stop it (asks first)",
            "r            restart it (replicas: one at a time)",
            "R            reload the config",
            "f            filter by name or state",
            "/            search the log",
            "e            events instead of the log",
            "?            this help        q  quit",
        ];
        let w = 56.min(area.width);
        let h = (help.len() as u16 + 2).min(area.height);
        let r = Rect::new((area.width - w) / 2, (area.height - h) / 2, w, h);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(help.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
                .block(Block::default().borders(Borders::ALL).title(" keys ")),
            r,
        );
    }
}

/// What a key asks for, beyond changing the screen.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Post(String, String),
    Reload,
}

/// Applies one key to the app; pure.
pub fn on_key(app: &mut App, key: KeyEvent) -> Action {
    let count = app.shown().len();
    match app.mode {
        Mode::Filter | Mode::Search => {
            let text = if app.mode == Mode::Filter {
                &mut app.filter
            } else {
                &mut app.search
            };
            match key.code {
                KeyCode::Enter | KeyCode::Esc => app.mode = Mode::Normal,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            app.selected = app.selected.min(app.shown().len().saturating_sub(1));
            Action::None
        }
        Mode::ConfirmStop => {
            app.mode = Mode::Normal;
            match (key.code, app.selected_name()) {
                (KeyCode::Char('y'), Some(n)) => Action::Post(n, "stop".into()),
                _ => {
                    app.message = "not stopped".into();
                    Action::None
                }
            }
        }
        Mode::Help => {
            app.mode = Mode::Normal;
            Action::None
        }
        Mode::Normal => match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Down | KeyCode::Char('j') => {
                app.selected = (app.selected + 1).min(count.saturating_sub(1));
                Action::None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                app.selected = app.selected.saturating_sub(1);
                Action::None
            }
            KeyCode::Char('?') => {
                app.mode = Mode::Help;
                Action::None
            }
            KeyCode::Char('f') => {
                app.mode = Mode::Filter;
                Action::None
            }
            KeyCode::Char('/') => {
                app.mode = Mode::Search;
                Action::None
            }
            KeyCode::Char('e') => {
                app.show_events = !app.show_events;
                Action::None
            }
            KeyCode::Char('x') if app.selected_name().is_some() => {
                app.mode = Mode::ConfirmStop;
                Action::None
            }
            KeyCode::Char('s') => app
                .selected_name()
                .map_or(Action::None, |n| Action::Post(n, "start".into())),
            KeyCode::Char('r') => app
                .selected_name()
                .map_or(Action::None, |n| Action::Post(n, "restart".into())),
            KeyCode::Char('R') => Action::Reload,
            _ => Action::None,
        },
    }
}

/// `last alert 12:00:01 ops: failed api → sent` from `GET /alerts`.
fn last_alert(list: &Value) -> Option<String> {
    let a = list.as_array()?.last()?;
    let time = a["time"].as_str().unwrap_or("");
    let service = a["service"]
        .as_str()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    Some(format!(
        "last alert {} {}: {}{service} → {}",
        time.get(11..19).unwrap_or(time),
        a["sink"].as_str().unwrap_or("?"),
        a["event"].as_str().unwrap_or("?"),
        a["result"].as_str().unwrap_or("?"),
    ))
}

async fn refresh(app: &mut App, at: &Endpoint) -> Result<(), FatalError> {
    let (_, doc) = call_at(at, "GET", "/status", "top").await?;
    let g = &doc["guardian"];
    app.header = format!(
        "guardian pid {} · v{} · up {} · config generation {} · {}",
        g["pid"],
        g["version"].as_str().unwrap_or("?"),
        human(g["uptime_seconds"].as_f64()),
        g["config_generation"],
        match at {
            Endpoint::Unix(d) => d.display().to_string(),
            Endpoint::Tcp { addr, .. } => addr.clone(),
        }
    );
    // The last alert delivery and its result (SPEC §15), when there has been one.
    if let Ok((_, alerts)) = call_at(at, "GET", "/alerts", "top").await
        && let Some(line) = last_alert(&alerts)
    {
        app.header.push_str(" · ");
        app.header.push_str(&line);
    }
    app.services = doc["services"].as_array().cloned().unwrap_or_default();
    for s in &app.services {
        let name = s["name"].as_str().unwrap_or("").to_owned();
        let h = app.history.entry(name).or_default();
        h.push_back(s["health"].as_str().unwrap_or("unknown").to_owned());
        while h.len() > HISTORY {
            h.pop_front();
        }
    }
    if let Ok((_, diag)) = call_at(at, "GET", "/diagnostics", "top").await {
        app.usage = diag["services"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(name, d)| {
                let p = &d["process_info"];
                Some((
                    name.clone(),
                    (p["cpu_percent"].as_f64()?, p["memory_mb"].as_f64()?),
                ))
            })
            .collect();
    }
    app.selected = app.selected.min(app.shown().len().saturating_sub(1));
    if let Some(name) = app.selected_name() {
        // Over the API on either endpoint, so top from another host shows the log too.
        app.log = match super::logs::remote_tail(at, &name, LOG_LINES).await {
            Ok(lines) if lines.is_empty() => vec![format!("(nothing in the log of {name} yet)")],
            Ok(lines) => lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect(),
            Err(e) => vec![format!("(the log of {name} cannot be read: {e})")],
        };
        let (_, ev) = call_at(at, "GET", &format!("/services/{name}/events?n=50"), "top").await?;
        app.events = ev
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} {:<18} {}",
                    e["timestamp_iso"]
                        .as_str()
                        .unwrap_or("")
                        .get(11..19)
                        .unwrap_or(""),
                    e["action"].as_str().unwrap_or(""),
                    e["error_message"]
                        .as_str()
                        .or(e["detail"].as_str())
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("")
                )
            })
            .collect();
    }
    Ok(())
}

async fn act(at: &Endpoint, action: Action) -> String {
    let (path, what) = match &action {
        Action::Post(name, verb) => (format!("/services/{name}/{verb}"), format!("{verb} {name}")),
        Action::Reload => ("/reload".to_owned(), "reload".to_owned()),
        _ => return String::new(),
    };
    match call_at(at, "POST", &path, "top").await {
        Ok((code, body)) if code < 300 => {
            let m = body["message"].as_str().unwrap_or("done");
            format!("{what}: {}", m.lines().next().unwrap_or(""))
        }
        Ok((code, body)) => format!("{what}: {code} {}", body["error"].as_str().unwrap_or("")),
        Err(e) => format!("{what}: {e}"),
    }
}

/// Runs the view until `q`. Refuses without a terminal.
pub fn run(at: Endpoint) -> Result<u8, FatalError> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!(
            "error: guardian top needs a terminal\n  1. for scripts and pipes: guardian status (or status --json)"
        );
        return Ok(exit::FAILURE);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FatalError::Message(format!("cannot start the async runtime: {e}")))?;
    let mut app = App::new(crate::process::output::color_wanted());
    rt.block_on(refresh(&mut app, &at))?;
    // ratatui::init enters the alternate screen and raw mode, and installs a panic hook that
    // restores the terminal; restore() runs on every other way out.
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), FatalError> {
        let mut last = tokio::time::Instant::now();
        loop {
            terminal
                .draw(|f| draw(f, &app))
                .map_err(|e| FatalError::Message(format!("cannot draw: {e}")))?;
            // Test builds: a panic after the first screen proves the terminal is given back.
            #[cfg(debug_assertions)]
            if std::env::var_os("_GUARDIAN_TEST_TOP_PANIC").is_some() {
                panic!("a test build's injected panic");
            }
            let wait = REFRESH.saturating_sub(last.elapsed());
            if event::poll(wait).unwrap_or(false) {
                match event::read() {
                    Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                        match on_key(&mut app, k) {
                            Action::Quit => return Ok(()),
                            Action::None => {}
                            a => {
                                app.message = rt.block_on(act(&at, a));
                                last = tokio::time::Instant::now() - REFRESH;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(FatalError::Message(format!(
                            "cannot read the terminal: {e}"
                        )));
                    }
                }
            }
            if last.elapsed() >= REFRESH {
                if let Err(e) = rt.block_on(refresh(&mut app, &at)) {
                    app.message = format!("guardian does not answer: {e}");
                }
                last = tokio::time::Instant::now();
            }
        }
    })();
    ratatui::restore();
    result.map(|()| exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyModifiers;
    use serde_json::json;

    fn app() -> App {
        let mut a = App::new(false);
        a.header = "guardian pid 1".into();
        a.services = vec![
            json!({"name": "api.1", "state": "running", "pid": 41, "port": 8000, "uptime_seconds": 75.0, "restarts": 2, "health": "healthy", "circuit_breaker": "closed", "replica_of": "api"}),
            json!({"name": "cache", "state": "running", "pid": 60, "port": null, "uptime_seconds": 9.0, "restarts": 0, "health": "healthy", "circuit_breaker": "closed", "status_text": "warm: 3 maps\nsecond line"}),
            json!({"name": "cron", "state": "running", "pid": 61, "port": null, "uptime_seconds": 9.0, "restarts": 0, "health": "healthy", "circuit_breaker": "closed", "last_watchdog": crate::process::pidfile::unix_now() - 2.0}),
            json!({"name": "db", "state": "failed", "pid": null, "port": 5432, "uptime_seconds": null, "restarts": 10, "health": "unknown", "circuit_breaker": "open", "last_error": "10 consecutive failed starts\nmore"}),
            json!({"name": "worker", "state": "waiting", "pid": null, "port": null, "uptime_seconds": null, "restarts": 0, "health": "unknown", "circuit_breaker": "closed", "waiting_for": "waiting for api (ready)"}),
            json!({"name": "web", "state": "running", "pid": 52, "port": 8765, "uptime_seconds": 5.0, "restarts": 0, "health": "healthy", "circuit_breaker": "closed", "sockets": {"http": "tcp://127.0.0.1:8765"}}),
        ];
        a.log = vec![
            "booting".into(),
            "listening on 8000".into(),
            "GET /health 200".into(),
        ];
        a.usage.insert("api.1".into(), (12.5, 48.25));
        a.history.insert(
            "api.1".into(),
            ["healthy", "warning", "critical", "healthy"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        a
    }

    fn screen(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn the_table_shows_every_service_with_its_state_and_detail() {
        let s = screen(&app(), 160, 20);
        for want in [
            "12.5",
            "48.2",
            "▁▄█▁",
            "api.1",
            "running",
            "8000",
            "1m15s",
            "db",
            "failed",
            "10 consecutive failed starts",
            "worker",
            "waiting for api (ready)",
            "holds http tcp://127.0.0.1",
            "warm: 3 maps",
            "watchdog ping 2s ago",
            "log of api.1",
            "GET /health 200",
        ] {
            assert!(s.contains(want), "{want} missing:\n{s}");
        }
        assert!(!s.contains("more"), "only the first line of an error:\n{s}");
        assert!(
            !s.contains("second line"),
            "only the first line of STATUS=:\n{s}"
        );
    }

    #[test]
    fn the_last_alert_is_said_in_one_line() {
        let list = json!([
            {"sink": "ops", "event": "failed", "service": "api", "time": "2026-12-04T12:00:01.5Z", "result": "failed", "detail": "HTTP 500"},
            {"sink": "ops", "event": "guardian_started", "service": null, "time": "2026-12-04T12:00:09.0Z", "result": "sent", "detail": "HTTP 200"},
        ]);
        assert_eq!(
            last_alert(&list).as_deref(),
            Some("last alert 12:00:09 ops: guardian_started → sent")
        );
        assert_eq!(last_alert(&json!([])), None);
    }

    #[test]
    fn a_narrow_terminal_keeps_name_state_pid_and_health() {
        let s = screen(&app(), 50, 16);
        for want in ["api.1", "running", "41", "healthy", "worker"] {
            assert!(s.contains(want), "{want} missing:\n{s}");
        }
        assert!(!s.contains("BREAKER"), "{s}");
    }

    #[test]
    fn keys_select_filter_search_confirm_and_act() {
        let mut a = app();
        for _ in 0..3 {
            assert_eq!(on_key(&mut a, key('j')), Action::None);
        }
        assert_eq!(a.selected_name().as_deref(), Some("db"));
        assert_eq!(
            on_key(&mut a, key('r')),
            Action::Post("db".into(), "restart".into())
        );
        assert_eq!(on_key(&mut a, key('x')), Action::None);
        assert_eq!(a.mode, Mode::ConfirmStop);
        assert!(screen(&a, 100, 16).contains("stop db? y/n"));
        assert_eq!(
            on_key(&mut a, key('y')),
            Action::Post("db".into(), "stop".into())
        );
        on_key(&mut a, key('f'));
        for c in "work".chars() {
            on_key(&mut a, key(c));
        }
        on_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(a.shown().len(), 1);
        assert_eq!(a.selected_name().as_deref(), Some("worker"));
        on_key(&mut a, key('/'));
        for c in "health".chars() {
            on_key(&mut a, key(c));
        }
        on_key(&mut a, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        let s = screen(&a, 100, 20);
        assert!(
            s.contains("GET /health 200") && !s.contains("booting"),
            "{s}"
        );
        assert_eq!(on_key(&mut a, key('R')), Action::Reload);
        assert_eq!(on_key(&mut a, key('q')), Action::Quit);
    }

    #[test]
    fn help_lists_the_keys() {
        let mut a = app();
        on_key(&mut a, key('?'));
        let s = screen(&a, 100, 24);
        for want in ["keys", "restart it", "filter by name or state", "q  quit"] {
            assert!(s.contains(want), "{want} missing:\n{s}");
        }
        on_key(&mut a, key('z'));
        assert_eq!(a.mode, Mode::Normal);
    }
}
