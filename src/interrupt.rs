//! Ctrl-C as a flag instead of a kill: commands that write check it between steps, stop,
//! roll back the open transaction and exit 130. A second Ctrl-C quits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::error::Exit;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The error of a command stopped by Ctrl-C (exit 130).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by Ctrl-C; the open transaction was rolled back")
    }
}

impl std::error::Error for Interrupted {}

/// Routes Ctrl-C to the flag. Called by the commands that check it.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(Exit::Interrupted as i32);
            }
            eprintln!("\ninterrupted: stopping and rolling back (Ctrl-C again to quit at once)");
        });
        if let Err(e) = result {
            log::debug!("Ctrl-C handler not installed: {e}");
        }
    });
}

/// Fails with [`Interrupted`] once Ctrl-C was pressed.
pub fn check() -> color_eyre::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(color_eyre::Report::new(Interrupted))
    } else {
        Ok(())
    }
}

/// Sleeps for `duration`, waking early to fail when Ctrl-C is pressed.
pub fn sleep(duration: std::time::Duration) -> color_eyre::Result<()> {
    let deadline = std::time::Instant::now() + duration;
    loop {
        check()?;
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(std::time::Duration::from_millis(50)));
    }
}
