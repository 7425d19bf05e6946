//! Background tasks (the `/metrics` server, the signal watcher), each on a
//! single-threaded tokio runtime in a thread of its own, so the timely workers
//! never share a thread with I/O they do not own.

use std::future::Future;

/// Runs the future `task()` makes on a new thread named `name` until it ends.
/// The future is made on that thread, inside the runtime.
pub fn spawn<F, Fut>(name: &str, task: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task()),
                Err(e) => eprintln!(
                    "causeway: cannot start a runtime for {}: {e}",
                    std::thread::current().name().unwrap_or("a task")
                ),
            }
        })
}

/// Sets `flag` on SIGTERM or SIGINT; `who` names the command in the message.
pub fn watch_signals(who: &'static str, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let watcher = spawn("causeway-signals", move || async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("{who}: shutting down: finishing the current step and committing");
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    if let Err(e) = watcher {
        eprintln!("{who}: cannot watch for SIGTERM/SIGINT: {e}");
    }
}
