//! Verifies an exported audit chain offline.
//!
//! ```text
//! audit-verify [--anchor SEQ:HEX]... [FILE | -]
//! ```
//! Reads the NDJSON export (a file, or stdin when FILE is absent or `-`), recomputes every
//! hash, and prints the verdict as JSON: `{"ok":true,"count":N,"head":"HEX"}`, or
//! `{"ok":false,"count":N,"broken_at":{"seq":..,"event_id":..,"reason":..,"detail":..}}` for
//! the first record that does not verify. `--anchor` also requires that the record at SEQ
//! has hash HEX (a head kept from an earlier export). Exit status: 0 intact, 1 broken,
//! 2 usage or I/O error.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use runwarden_audit::offline::{Anchor, verify_export};

const USAGE: &str = "usage: audit-verify [--anchor SEQ:HEX]... [FILE | -]";

fn main() -> ExitCode {
    let mut anchors = Vec::new();
    let mut path: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--anchor" => match args.next().map(|a| a.parse::<Anchor>()) {
                Some(Ok(anchor)) => anchors.push(anchor),
                Some(Err(e)) => return usage(&format!("--anchor: {e}")),
                None => return usage("--anchor needs SEQ:HEX"),
            },
            _ if path.is_none() => path = Some(arg),
            _ => return usage("more than one file"),
        }
    }
    let verdict = match path.as_deref() {
        None | Some("-") => verify_export(std::io::stdin().lock(), &anchors),
        Some(p) => match std::fs::File::open(p) {
            Ok(file) => verify_export(BufReader::new(file), &anchors),
            Err(e) => {
                eprintln!("audit-verify: {p}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    match verdict {
        Ok(verdict) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(&verdict).unwrap_or_default()
            );
            if verdict.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("audit-verify: read error: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("audit-verify: {problem}\n{USAGE}");
    ExitCode::from(2)
}
