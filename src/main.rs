//! The `missionctl` binary: parse flags, call the library, map outcomes to
//! exit codes (0 ok, 1 invalid or blocked, 2 usage or I/O error).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // One TLS provider for the whole process (reqwest, sqlx): see rust-stack notes.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == cli::reference::ARG)
    {
        return cli::reference::print();
    }
    let args = cli::Cli::parse();
    let quiet = cli::log::init();
    // On a thread with the runtime workers' stack: validation walks what
    // a cases file nests (a JSON schema 120 levels deep overflowed the
    // main thread's 8 MiB).
    // Packs and cases load on rayon's pool: the same stack there. (This
    // fails only when the pool already exists, which nothing before here
    // creates.)
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(missionctl::WORKER_STACK_BYTES)
        .build_global();
    let run = std::thread::Builder::new()
        .name("missionctl".into())
        .stack_size(missionctl::WORKER_STACK_BYTES)
        .spawn(move || cli::run(args).map_err(|e| format!("{e:#}")))
        .map_err(|e| format!("cannot start: {e}"))
        .and_then(|t| {
            t.join()
                .map_err(|_| "internal error: the command panicked".to_string())
        })
        .and_then(|r| r);
    let code = match run {
        Ok(code) => code,
        Err(e) => {
            // An error may quote what a remote endpoint answered: its
            // control characters (terminal escape sequences) are shown as
            // escapes, never sent to the operator's terminal.
            let mut text = String::with_capacity(e.len());
            for c in e.chars() {
                if c == '\n' || c == '\t' || !c.is_control() {
                    text.push(c);
                } else {
                    text.extend(c.escape_unicode());
                }
            }
            eprintln!("error: {text}");
            ExitCode::from(2)
        }
    };
    if let Some(q) = quiet {
        q.summary();
    }
    code
}
