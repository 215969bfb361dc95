//! `sealsync`: the one binary for servers, operators and devices.
//!
//! Exit codes: 0 success; 1 the asked-for record does not exist (`device get`); 2 any other
//! error. Every failure prints exactly one line on stderr saying what went wrong and, where
//! it helps, what to do.
#![forbid(unsafe_code)]

mod alloc_tune;
mod bench;
mod cli;
mod demo;
mod device_cmd;
mod pairing_cmd;
mod proxy;
mod server_cmd;
mod sync_cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// An error that ends the process with a given exit code.
#[derive(Debug)]
pub(crate) struct Exit {
    code: u8,
    message: String,
}

impl Exit {
    /// Exit code 1: the asked-for record is absent.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

fn main() -> ExitCode {
    alloc_tune::tune();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.downcast_ref::<Exit>().map_or(2, |e| e.code);
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(code)
        }
    }
}

/// Handles a command line clap could not accept: help and version are printed as asked;
/// anything else becomes one line on stderr and exit code 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let text = err.render().to_string();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Help and version are answers, not failures.
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let usage = usage_line(&text).unwrap_or("sealsync <COMMAND>");
            let help = help_command(usage);
            eprintln!("error: a command is missing: usage is `{usage}` (run `{help}`)");
            ExitCode::from(2)
        }
        _ => {
            // clap's message spans lines (the missing arguments are listed below the first);
            // keep everything before the usage block, on one line.
            let message = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.trim_start_matches("error: ");
            let help = help_command(usage_line(&text).unwrap_or("sealsync"));
            eprintln!("error: {message} (run `{help}` for usage)");
            ExitCode::from(2)
        }
    }
}

/// The `Usage: ...` line of a rendered clap error, without the prefix.
fn usage_line(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.trim().strip_prefix("Usage: "))
}

/// The `--help` command of the (sub)command a usage line is about: its command words, with
/// options, their values and arguments left out, e.g. `sealsync device --home <HOME> put
/// <COLLECTION> <KEY>` gives `sealsync device put --help`.
fn help_command(usage: &str) -> String {
    let mut words = Vec::new();
    let mut tokens = usage.split_whitespace().peekable();
    while let Some(t) = tokens.next() {
        if t.starts_with('-') {
            // An option; skip its value, if it has one.
            if tokens.peek().is_some_and(|v| v.starts_with('<')) {
                tokens.next();
            }
        } else if t.starts_with('<') || t.starts_with('[') {
            // An argument placeholder: the command words are done.
            break;
        } else {
            words.push(t);
        }
    }
    if words.is_empty() {
        words.push("sealsync");
    }
    format!("{} --help", words.join(" "))
}

/// Joins an error and its causes into one line.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(cmd) => server_cmd::server(cmd),
        Command::Admin(args) => server_cmd::admin(args),
        Command::Device(args) => device_cmd::run(args),
        Command::Demo => demo::run(),
        Command::Bench(args) => bench::run(args),
    }
}

/// A multi-threaded Tokio runtime for commands that do network I/O.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}
