//! `sealsync`: the one binary for servers, operators and devices.
//!
//! Exit codes: 0 success; 1 the asked-for record does not exist (`device get`); 2 any other
//! error. Every failure prints exactly one line on stderr saying what went wrong and, where
//! it helps, what to do.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod demo;
mod device_cmd;
mod proxy;
mod server_cmd;

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                // Help and version are answers, not failures.
                let _ = err.print();
                return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            eprintln!("error: {first} (run `sealsync --help` for usage)");
            return ExitCode::from(2);
        }
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
