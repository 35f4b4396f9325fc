//! GTK4 windows (feature `gui`). Work in progress: see the GUI issue.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::transport::server::ServerOptions;

/// The server window.
pub fn run_server(_opts: ServerOptions) -> ExitCode {
    eprintln!("livewire: the server window is not built yet; use --headless");
    ExitCode::from(2)
}

/// The client window.
pub fn run_client(_config_dir: PathBuf) -> ExitCode {
    eprintln!("livewire: the client window is not built yet; use `livewire chat`");
    ExitCode::from(2)
}

/// The demo.
pub fn run_demo(_data_dir: Option<PathBuf>) -> ExitCode {
    eprintln!("livewire: the demo is not built yet");
    ExitCode::from(2)
}
