//! Tasks asked for before the async runtime exists. `guardian run` makes its first starts
//! before it builds the runtime (see `daemon::run`), and a start asks for tasks: the exit
//! watch, the output pumps, the readiness probe, the timers. Until the runtime exists they
//! wait in this thread's queue; `spawn_queued`, called once inside the runtime, spawns them.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    static QUEUED: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
}

/// `tokio::spawn` inside a runtime; outside one, queued on this thread until `spawn_queued`.
pub fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(task);
    } else {
        QUEUED.with(|q| q.borrow_mut().push(Box::pin(task)));
    }
}

/// Spawns, in order, what this thread queued before the runtime existed.
pub fn spawn_queued() {
    for task in QUEUED.with(|q| std::mem::take(&mut *q.borrow_mut())) {
        tokio::spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_task_asked_for_before_the_runtime_runs_once_it_exists_in_order() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let ran = ran.clone();
            super::spawn(async move { ran.lock().unwrap().push(i) });
        }
        assert!(
            ran.lock().unwrap().is_empty(),
            "nothing runs without a runtime"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            super::spawn_queued();
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(*ran.lock().unwrap(), [0, 1, 2]);
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            super::spawn(async move { tx.send(()).unwrap() });
            rx.await.unwrap();
        });
    }
}
