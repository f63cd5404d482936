//! The `guardian` binary: parse the command line, run the command, map its error to an exit
//! code. Errors print as their full chain, never as a debug dump or a backtrace.

use std::process::ExitCode;

use clap::Parser;
use guardian::cli::Cli;

fn main() -> ExitCode {
    // `COMPLETE=bash guardian` prints a completion script that asks guardian itself, so
    // service names complete from the config; with COMPLETE set by that script, this answers
    // and exits.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                guardian::error::exit::CONFIG
            } else {
                guardian::error::exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A one-shot command piped into `head` ends quietly when the reader goes, as every Unix
    // tool does (Rust ignores SIGPIPE, and println! would panic on EPIPE). `run` keeps it
    // ignored: a closed pipe must not kill the guardian of every service.
    if !matches!(cli.command, guardian::cli::Command::Run) {
        // SAFETY: restores the default disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let json = cli.global.log_format.as_deref() == Some("json");
    match guardian::cli::commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if json => {
            // One JSON object on stderr, for CI annotations and log collectors.
            let problems = match &e {
                guardian::error::FatalError::Config(c) => c.problems(),
                _ => vec![],
            };
            let doc = serde_json::json!({
                "level": "error",
                "message": e.to_string(),
                "exit_code": e.exit_code(),
                "problems": problems,
            });
            eprintln!("{doc}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            // A located config error already reads `FILE:LINE:COL: error: …`.
            let shown = e.to_string();
            let located = shown
                .split_once(": error: ")
                .is_some_and(|(at, _)| !at.contains(' ') && at.matches(':').count() >= 2);
            let mut text = if located {
                shown
            } else {
                format!("error: {shown}")
            };
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{text}");
            ExitCode::from(e.exit_code())
        }
    }
}
