//! The library's own tokio runtime, and how blocking C calls wait on it.
//!
//! One multi-threaded runtime per process, created on first use. Calls hand their work to it
//! as a task and wait on a channel, so the caller's thread (a goroutine's, a Python thread's)
//! never runs tokio code, any number of threads may call at once, and a timeout cancels the
//! work by dropping its future. After `fork()` the child gets a runtime of its own on first
//! use; the parent's (whose threads do not exist in the child) is left untouched.

use std::{
    cell::Cell,
    future::Future,
    sync::{Arc, mpsc},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use tokio::runtime::Runtime;

use crate::{error::Error, status::mesh_status};

/// Overrides the number of worker threads (default: [`default_workers`]).
const WORKER_THREADS_ENV: &str = "MESH_FFI_WORKER_THREADS";

/// Half the CPUs, at least one (tokio's own default is one per CPU). The library shares the
/// machine with the host's threads, which do the application's work and the socket reads and
/// writes at the other end of every tunnel; a runtime with a worker per CPU oversubscribes the
/// cores and spreads one tunnel's hops over several workers. Measured on 2 loaded cores (64-byte
/// echo through the ABI): one worker instead of two took context switches per round trip from
/// ~14.4 to ~7.6 (native Rust: ~6.1). ztunnel likewise runs two workers by default.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The runtime of one process.
pub(crate) struct ProcessRuntime {
    pid: u32,
    runtime: Runtime,
}

impl ProcessRuntime {
    /// The tokio runtime, for entering its context (drops that may deregister sockets).
    pub(crate) fn tokio(&self) -> &Runtime {
        &self.runtime
    }
}

static RUNTIME: ArcSwapOption<ProcessRuntime> = ArcSwapOption::const_empty();

thread_local! {
    /// Set on the runtime's own threads, where a blocking call could deadlock.
    static ON_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// This process's runtime, created when first needed.
pub(crate) fn get() -> Result<Arc<ProcessRuntime>, Error> {
    let pid = std::process::id();
    let current = RUNTIME.load_full();
    if let Some(rt) = &current {
        if rt.pid == pid {
            return Ok(rt.clone());
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .thread_name("mesh-ffi")
        .on_thread_start(|| {
            ON_RUNTIME_THREAD.with(|f| f.set(true));
            block_sigpipe();
        });
    let workers = std::env::var(WORKER_THREADS_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(default_workers);
    builder.worker_threads(workers);
    let fresh = Arc::new(ProcessRuntime {
        pid,
        runtime: builder
            .build()
            .map_err(|e| Error::io("cannot start the mesh runtime", &e))?,
    });
    let previous = RUNTIME.compare_and_swap(&current, Some(fresh.clone()));
    let won = match (&*previous, &current) {
        (Some(p), Some(c)) => Arc::ptr_eq(p, c),
        (None, None) => true,
        _ => false,
    };
    if !won {
        // Another thread installed one first: use it. Ours never ran a task.
        if let Some(fresh) = Arc::into_inner(fresh) {
            fresh.runtime.shutdown_background();
        }
        return get();
    }
    if let Some(parent) = current {
        // The parent's runtime, inherited by fork: its threads are gone, and dropping it
        // here would tear down epoll registrations the parent still uses. Leave it be.
        std::mem::forget(parent);
    }
    Ok(fresh)
}

/// Keeps SIGPIPE away from the runtime's threads. Vectored writes (`writev`, which rustls and
/// h2 use) cannot pass `MSG_NOSIGNAL`, and a write to a connection the peer reset would raise
/// SIGPIPE, whose default action kills the host process (Go re-raises it for threads it does
/// not own). Blocked, the signal stays pending on the thread and the write fails with EPIPE.
fn block_sigpipe() {
    // SAFETY: `set` is a local, initialised by `sigemptyset` before use; `pthread_sigmask` only
    // changes the calling thread's mask and accepts a NULL old-mask pointer.
    let failed = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0
    };
    if failed {
        tracing::warn!(
            "cannot block SIGPIPE on a mesh thread; writes to closed sockets may kill the process"
        );
    }
}

/// A call's `timeout_ms` argument: 0 means no limit of the call's own.
pub(crate) fn timeout(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// Runs `work` on the runtime and waits for it, for at most `limit`. `what` names the
/// operation in a timeout message.
pub(crate) fn block<T, F>(
    rt: &ProcessRuntime,
    limit: Option<Duration>,
    what: &str,
    work: F,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    if ON_RUNTIME_THREAD.with(Cell::get) {
        return Err(Error::new(
            mesh_status::MESH_ERR_WRONG_THREAD,
            format!(
                "{what} waits, and was called from one of the mesh's own threads (inside a \
                 callback), where waiting can deadlock; call it from another thread"
            ),
        ));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let what_owned = what.to_owned();
    rt.runtime.spawn(async move {
        let result = match limit {
            Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                Err(Error::new(
                    mesh_status::MESH_ERR_TIMEOUT,
                    format!(
                        "{what_owned} did not finish within {} ms; raise timeout_ms or check \
                             that the peer is reachable",
                        limit.as_millis()
                    ),
                ))
            }),
            None => work.await,
        };
        // The caller may have been interrupted by a panic; nobody to tell then.
        let _ = tx.send(result);
    });
    // A task that panics drops its sender without sending.
    rx.recv().unwrap_or_else(|_| {
        Err(Error::new(
            mesh_status::MESH_ERR_PANIC,
            format!(
                "internal error: the task doing {what} panicked; the handle is poisoned: free \
                 it and create a new one, and please report this"
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_the_runtime_with_a_timeout() {
        let rt = get().unwrap();
        let value = block(&rt, None, "adding", async { Ok(1 + 1) }).unwrap();
        assert_eq!(value, 2);
        let slow = block(&rt, timeout(20), "sleeping", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let e = slow.unwrap_err();
        assert_eq!(e.status, mesh_status::MESH_ERR_TIMEOUT);
        assert!(e.message.contains("sleeping"), "{}", e.message);
        assert!(Arc::ptr_eq(&rt, &get().unwrap()), "one runtime per process");
    }

    #[test]
    fn a_panicking_task_is_reported_not_propagated() {
        let rt = get().unwrap();
        let result: Result<(), Error> = block(&rt, None, "panicking", async {
            panic!("inside the task");
        });
        assert_eq!(result.unwrap_err().status, mesh_status::MESH_ERR_PANIC);
    }

    #[test]
    fn waiting_on_a_runtime_thread_is_refused() {
        let rt = get().unwrap();
        let inner = block(&rt, None, "outer", async {
            let rt = get()?;
            Ok(block(&rt, None, "inner", async { Ok(()) }).map_err(|e| e.status))
        })
        .unwrap();
        assert_eq!(inner, Err(mesh_status::MESH_ERR_WRONG_THREAD));
    }

    #[test]
    fn zero_means_no_limit() {
        assert_eq!(timeout(0), None);
        assert_eq!(timeout(1500), Some(Duration::from_millis(1500)));
    }
}
