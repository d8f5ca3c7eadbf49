//! The `golden` binary: parse the command line, run one command, report at most one error,
//! exit with the code CONTRACT.md fixes.

use std::process::ExitCode;

fn main() -> ExitCode {
    golden::cli::main()
}
