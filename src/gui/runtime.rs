//! The one tokio runtime that lives beside the GLib main loop.
//!
//! Widgets never touch the network: they hand commands to the client or server drivers
//! running here and read their events from `async_channel`s on the GTK thread.

use std::future::Future;
use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The shared runtime (two worker threads are plenty for a desktop client or a small server).
pub fn handle() -> tokio::runtime::Handle {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("livewire-rt")
                .enable_all()
                .build()
                .expect("cannot start the tokio runtime")
        })
        .handle()
        .clone()
}

/// Runs `fut` on the tokio runtime; the returned handle can be awaited from GLib futures.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(fut)
}
