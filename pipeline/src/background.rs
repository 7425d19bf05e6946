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
