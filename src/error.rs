//! Exit codes are a contract (CONTRACT.md): scripts branch on them. This module maps an error
//! to its code and prints it the one way the tool reports errors.

use std::io;

/// The process exit codes of CONTRACT.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// The operation failed: database, network, provider, interrupted.
    Failed = 1,
    /// Usage error, or an input file that is unreadable or not a valid backup. Nothing was written.
    InvalidInput = 2,
    /// A check ran and found problems.
    ProblemsFound = 3,
    /// Interrupted by Ctrl-C; the current transaction was rolled back.
    Interrupted = 130,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// Marks an error as the user's input being wrong (exit 2): a bad file or a bad argument.
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// Builds an exit-2 error.
pub fn invalid_input(message: impl Into<String>) -> color_eyre::Report {
    color_eyre::Report::new(InvalidInput(message.into()))
}

/// The exit code an error stands for.
pub fn exit_code_of(report: &color_eyre::Report) -> Exit {
    if report
        .chain()
        .any(|cause| cause.is::<crate::interrupt::Interrupted>())
    {
        Exit::Interrupted
    } else if report.chain().any(|cause| cause.is::<InvalidInput>()) {
        Exit::InvalidInput
    } else {
        Exit::Failed
    }
}

/// True when the error is only that whoever read our output went away (`golden … | head`):
/// that is not a failure, as in ripgrep and xsv.
pub fn is_broken_pipe(report: &color_eyre::Report) -> bool {
    report.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Reports a command stopped by an interruption: what the interruption left, as the command
/// described it; what the work was doing when it stopped only with `-v` (a cancelled
/// statement's error is the interruption's echo, not a second failure).
pub fn report_interrupted(report: &color_eyre::Report) {
    let signal = crate::interrupt::stopped_by().unwrap_or("an interruption");
    eprintln!(
        "error: interrupted by {signal}: {}",
        crate::secrets::redact(&crate::interrupt::outcome())
    );
    let mut causes = report.chain();
    if let Some(first) = causes.next() {
        log::debug!("the work stopped at: {first}");
    }
    for cause in causes {
        log::debug!("  caused by: {cause}");
    }
}

/// Prints an error and its causes on stderr, one per line, the way the tool reports failures,
/// without any trace of the run's secrets (see [`crate::secrets`]).
pub fn report(report: &color_eyre::Report) {
    let mut causes = report.chain();
    if let Some(first) = causes.next() {
        eprintln!("error: {}", crate::secrets::redact(&first.to_string()));
    }
    for cause in causes {
        eprintln!(
            "  caused by: {}",
            crate::secrets::redact(&cause.to_string())
        );
    }
}
