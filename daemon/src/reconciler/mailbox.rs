//! A worker's mail besides its intent: retry now, news of its runner, a
//! forced deletion. Small on purpose: a thousand idle workers hold one each,
//! and an unbounded channel takes over a kilobyte before its first message
//! (two of them were a tenth of forkletd's heap at 1000 modules).

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::worker::ForceReply;

/// What a worker is told besides its intent.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Signal {
    /// Try a failed step now.
    Retry,
    /// The runner with this container id changed; `None`: any may have.
    RunnerChanged(Option<String>),
}

/// Runner news kept apart before it is taken; more becomes "any runner
/// changed", which says as much.
const RUNNER_NEWS: usize = 8;

#[derive(Default)]
struct Mail {
    retry: bool,
    runner_changed: Vec<Option<String>>,
    forced: Vec<ForceReply>,
    /// The worker is gone: nothing more is taken.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    mail: Mutex<Mail>,
    arrived: Notify,
}

/// The supervisor's end.
pub(super) struct Post(Arc<Shared>);

/// The worker's end: closes the box when dropped.
pub(super) struct Mailbox {
    shared: Arc<Shared>,
}

/// Two ends of a new box.
pub(super) fn mailbox() -> (Post, Mailbox) {
    let shared = Arc::new(Shared::default());
    let worker = Mailbox {
        shared: shared.clone(),
    };
    (Post(shared), worker)
}

impl Post {
    /// `false` when the worker is gone.
    pub fn signal(&self, signal: Signal) -> bool {
        self.post(|mail| match signal {
            Signal::Retry => mail.retry = true,
            Signal::RunnerChanged(id) => {
                let news = &mut mail.runner_changed;
                // "Any" says all; the same id twice says it once.
                if news.contains(&None) || news.contains(&id) {
                } else if id.is_none() || news.len() >= RUNNER_NEWS {
                    *news = vec![None];
                } else {
                    news.push(id);
                }
            }
        })
    }

    /// Hands the reply back when the worker is gone.
    pub fn force(&self, reply: ForceReply) -> Result<(), ForceReply> {
        let mut reply = Some(reply);
        if self.post(|mail| mail.forced.extend(reply.take())) {
            Ok(())
        } else {
            Err(reply.take().expect("not posted"))
        }
    }

    fn post(&self, put: impl FnOnce(&mut Mail)) -> bool {
        {
            let mut mail = lock(&self.0);
            if mail.closed {
                return false;
            }
            put(&mut mail);
        }
        self.0.arrived.notify_waiters();
        true
    }
}

impl Mailbox {
    /// The next signal, once there is one.
    pub async fn signal(&self) -> Signal {
        self.take(|mail| {
            if let Some(id) = mail.runner_changed.pop() {
                Some(Signal::RunnerChanged(id))
            } else {
                std::mem::take(&mut mail.retry).then_some(Signal::Retry)
            }
        })
        .await
    }

    /// The next forced deletion, once there is one.
    pub async fn forced(&self) -> ForceReply {
        self.take(|mail| mail.forced.pop()).await
    }

    async fn take<T>(&self, mut what: impl FnMut(&mut Mail) -> Option<T>) -> T {
        loop {
            // Registered before the look, so a post between the two wakes it.
            let arrived = self.shared.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(taken) = what(&mut lock(&self.shared)) {
                return taken;
            }
            arrived.await;
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let mut mail = lock(&self.shared);
        mail.closed = true;
        // Whoever waits for these hears that the worker is gone.
        mail.forced.clear();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Mail> {
    // The mail stays consistent: every change is one assignment or push.
    shared.mail.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn soon<T>(future: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .ok()
    }

    #[tokio::test]
    async fn signals_wait_for_the_worker_and_news_of_many_runners_becomes_any() {
        let (mailbox, mail) = mailbox();
        assert!(mailbox.signal(Signal::RunnerChanged(Some("a".into()))));
        assert_eq!(
            soon(mail.signal()).await,
            Some(Signal::RunnerChanged(Some("a".into())))
        );
        for i in 0..=RUNNER_NEWS {
            mailbox.signal(Signal::RunnerChanged(Some(i.to_string())));
        }
        assert_eq!(soon(mail.signal()).await, Some(Signal::RunnerChanged(None)));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), mail.signal())
                .await
                .is_err(),
            "nothing more was posted"
        );
    }

    #[tokio::test]
    async fn a_waiting_worker_is_woken_by_a_post() {
        let (mailbox, mail) = mailbox();
        let waiting = tokio::spawn(async move { mail.signal().await });
        tokio::task::yield_now().await;
        mailbox.signal(Signal::Retry);
        assert_eq!(soon(waiting).await.map(Result::unwrap), Some(Signal::Retry));
    }

    #[tokio::test]
    async fn retries_coalesce() {
        let (mailbox, mail) = mailbox();
        mailbox.signal(Signal::Retry);
        mailbox.signal(Signal::Retry);
        assert_eq!(soon(mail.signal()).await, Some(Signal::Retry));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), mail.signal())
                .await
                .is_err(),
            "two retries are one"
        );
    }

    #[tokio::test]
    async fn a_gone_worker_takes_nothing_and_a_forced_deletion_comes_back() {
        let (mailbox, mail) = mailbox();
        let (reply, _answer) = tokio::sync::oneshot::channel();
        assert!(mailbox.force(reply).is_ok());
        assert!(soon(mail.forced()).await.is_some());
        drop(mail);
        assert!(!mailbox.signal(Signal::Retry));
        let (reply, _answer) = tokio::sync::oneshot::channel();
        assert!(mailbox.force(reply).is_err());
    }

    #[tokio::test]
    async fn a_forced_deletion_left_in_the_box_is_answered_when_the_worker_goes() {
        let (mailbox, mail) = mailbox();
        let (reply, answer) = tokio::sync::oneshot::channel();
        mailbox.force(reply).unwrap();
        drop(mail);
        assert!(answer.await.is_err(), "the asker hears the worker is gone");
    }
}
