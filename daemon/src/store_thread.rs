//! The store's writes on a thread of their own, in the order they were
//! asked for. A commit waits for the disk (`synchronous=FULL`), which the
//! async runtime must not; and a step that is dropped mid-way (its module
//! removed or forgotten) may already have asked for a save: whatever is
//! asked for after it, a delete or a fresh read, lands after it.

use std::sync::Arc;
use std::sync::mpsc;

use forklet_state::store::Store;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce(&Store) + Send>;

#[derive(Clone)]
pub struct StoreThread {
    jobs: mpsc::Sender<Job>,
    /// Counts the writes done: watchers of the event stream wake on it.
    written: tokio::sync::watch::Receiver<u64>,
}

impl StoreThread {
    /// Starts the thread; it ends when every handle is dropped.
    pub fn start(store: Arc<Store>) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (done, written) = tokio::sync::watch::channel(0u64);
        std::thread::Builder::new()
            .name("forklet-store".into())
            .spawn(move || {
                for job in queue {
                    job(&store);
                    done.send_modify(|n| *n = n.wrapping_add(1));
                }
            })
            .expect("a thread can be started at start-up");
        Self { jobs, written }
    }

    /// Changes after every write.
    pub fn written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.clone()
    }

    /// Queues `work` without waiting for it (progress lines, history
    /// entries): it still lands in order.
    pub fn submit(&self, work: impl FnOnce(&Store) + Send + 'static) {
        if self.jobs.send(Box::new(work)).is_err() {
            tracing::error!("the store thread has ended; a write is lost");
        }
    }

    /// Runs `work` on the store thread, after everything asked for before.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> T {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            // A panic in `work` drops `answer`: re-raised below, in the caller.
            let _ = answer.send(work(store));
        });
        if self.jobs.send(job).is_err() {
            panic!("the store thread has ended");
        }
        match answered.await {
            Ok(value) => value,
            Err(_) => panic!("a store operation panicked on the store thread"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forklet_state::ObjectKey;
    use forklet_state::store::ModuleRecord;

    #[tokio::test]
    async fn work_lands_in_the_order_it_was_asked_for_even_when_nobody_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("forklet.db")).unwrap());
        let thread = StoreThread::start(store);
        let key = ObjectKey::new("default", "app").unwrap();
        let record = ModuleRecord::new(
            key.clone(),
            ObjectKey::new("default", "dev").unwrap(),
            crate::test_support::settings(),
            chrono::Utc::now(),
        );
        // A save whose caller gave up (its future dropped after the ask)...
        let save = thread.run(move |s| {
            s.save(
                &record,
                forklet_state::event::EventReason::Installing,
                "calling",
            )
        });
        let mut save = Box::pin(save);
        tokio::select! {
            biased;
            _ = &mut save => {}
            _ = std::future::ready(()) => {}
        }
        drop(save);
        // ...still lands before the delete asked for after it.
        let deleted = key.clone();
        thread.run(move |s| s.delete(&deleted)).await.unwrap();
        let found = thread.run(move |s| s.module(&key)).await.unwrap();
        assert_eq!(found, None);
    }
}
