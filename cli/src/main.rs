//! `edgecache`: the command-line tool that operates an EdgeCache deployment through the
//! worker's admin API.

mod api;
mod cli;
mod commands;
mod config;
mod duration;
mod error;
mod learn;
mod model;
mod path;
mod record;
mod render;
mod table;
mod warm;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2, the code for usage errors here too.
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
