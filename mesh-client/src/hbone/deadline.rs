//! The idle timeout and maximum lifetime of a raw tunnel (a DestinationRule's
//! `connectionPool.tcp.idleTimeout` and `maxConnectionDuration`), kept by the tunnel itself.
//!
//! Cheap by construction: a transfer only records when it happened (one clock read); the one
//! timer of the tunnel is armed at the earliest deadline known and, when it fires, either ends
//! the tunnel or is re-armed at the deadline the recorded activity moved it to. No timer is
//! armed or touched per read or write.
//!
//! The timer wakes both a task waiting to read and one waiting to write (they may differ when
//! the stream is split), so whichever waits sees the tunnel end. A tunnel nobody reads or
//! writes ends at its next read or write.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use tokio::time::{Instant, Sleep};

/// Why a tunnel was ended by its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No byte either way for this long (`tcp.idleTimeout`).
    Idle(Duration),
    /// Open this long (`tcp.maxConnectionDuration`).
    MaxDuration(Duration),
}

impl Expiry {
    /// The error reads and writes return from now on, naming the setting that ended the tunnel.
    pub(crate) fn to_io(self) -> io::Error {
        let message = match self {
            Self::Idle(after) => format!(
                "the tunnel was closed after {} with no bytes sent or received, the destination's \
                 connectionPool.tcp.idleTimeout; send or read more often, or raise the timeout \
                 (0s disables it)",
                mesh_core::traffic::format_duration(after)
            ),
            Self::MaxDuration(after) => format!(
                "the tunnel was closed when it reached {}, the destination's \
                 connectionPool.tcp.maxConnectionDuration; open a new tunnel",
                mesh_core::traffic::format_duration(after)
            ),
        };
        io::Error::new(io::ErrorKind::TimedOut, message)
    }
}

/// Which half of the stream is waiting.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    Read,
    Write,
}

/// A tunnel's deadlines and its one timer.
pub(crate) struct Deadlines {
    idle: Option<Duration>,
    /// The maximum duration and the instant the tunnel reaches it.
    max: Option<(Duration, Instant)>,
    /// When bytes last moved (or the tunnel opened).
    last_activity: Instant,
    /// Armed at the earliest deadline known when it was last set.
    timer: Pin<Box<Sleep>>,
    /// The tasks waiting on the tunnel, woken by the timer.
    waiting: Arc<Waiting>,
    /// Wakes `waiting`; the timer is always polled with it.
    timer_waker: Waker,
    expired: Option<Expiry>,
}

impl Deadlines {
    /// Limits for a tunnel opening now: `None` when there is neither an idle timeout nor a
    /// maximum duration. Must run inside a Tokio runtime with the timer enabled.
    pub(crate) fn new(idle: Option<Duration>, max_duration: Option<Duration>) -> Option<Self> {
        if idle.is_none() && max_duration.is_none() {
            return None;
        }
        let now = Instant::now();
        let max = max_duration.map(|d| (d, now + d));
        let first = earliest(idle.map(|d| now + d), max.map(|(_, at)| at))?;
        let waiting = Arc::new(Waiting::default());
        Some(Self {
            idle,
            max,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(first)),
            timer_waker: Waker::from(waiting.clone()),
            waiting,
            expired: None,
        })
    }

    /// Why the tunnel ended, once it has.
    pub(crate) fn expired(&self) -> Option<Expiry> {
        self.expired
    }

    /// Bytes are about to move: records it, unless a deadline already passed (nobody was
    /// waiting on the tunnel when it did).
    pub(crate) fn activity(&mut self) -> Result<(), Expiry> {
        self.activity_at(Instant::now())
    }

    fn activity_at(&mut self, now: Instant) -> Result<(), Expiry> {
        self.check(now)?;
        self.last_activity = now;
        Ok(())
    }

    /// `side` has nothing to do until the peer acts: have the timer wake its task, and report
    /// the expiry if a deadline has passed.
    pub(crate) fn poll_expired(&mut self, side: Side, cx: &mut Context<'_>) -> Poll<Expiry> {
        if let Some(expiry) = self.expired {
            return Poll::Ready(expiry);
        }
        self.waiting.register(side, cx.waker());
        loop {
            let mut timer_cx = Context::from_waker(&self.timer_waker);
            if self.timer.as_mut().poll(&mut timer_cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: either a deadline passed, or activity since it was armed moved
            // the idle deadline; then re-arm it there (and poll it again to register).
            let next = match self.check(Instant::now()) {
                Ok(next) => next,
                Err(expiry) => return Poll::Ready(expiry),
            };
            self.timer.as_mut().reset(next);
        }
    }

    /// The next deadline, or the expiry when one is `now` or earlier (remembered).
    fn check(&mut self, now: Instant) -> Result<Instant, Expiry> {
        if let Some(expiry) = self.expired {
            return Err(expiry);
        }
        let idle_at = self.idle.map(|d| self.last_activity + d);
        let expiry = match (self.max, self.idle, idle_at) {
            (Some((d, at)), _, _) if now >= at => Some(Expiry::MaxDuration(d)),
            (_, Some(d), Some(at)) if now >= at => Some(Expiry::Idle(d)),
            _ => None,
        };
        if let Some(expiry) = expiry {
            self.expired = Some(expiry);
            return Err(expiry);
        }
        // `new` guarantees one of them is set.
        Ok(earliest(idle_at, self.max.map(|(_, at)| at)).unwrap_or(now))
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The wakers of the tasks last waiting to read and to write.
#[derive(Default)]
struct Waiting {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl Waiting {
    fn register(&self, side: Side, waker: &Waker) {
        let slot = match side {
            Side::Read => &self.read,
            Side::Write => &self.write,
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Wake for Waiting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.read, &self.write] {
            let waker = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines")
            .field("idle", &self.idle)
            .field("max", &self.max.map(|(d, _)| d))
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn activity_moves_the_idle_deadline() {
        let mut d = Deadlines::new(Some(ms(300)), None).unwrap();
        let start = d.last_activity;
        assert_eq!(d.timer.deadline(), start + ms(300));
        assert_eq!(d.check(start + ms(200)), Ok(start + ms(300)));
        d.activity_at(start + ms(200)).unwrap();
        // The timer stays armed at 300 ms; when it fires, the deadline it finds is 500 ms.
        assert_eq!(d.timer.deadline(), start + ms(300));
        assert_eq!(d.check(start + ms(300)), Ok(start + ms(500)));
        assert_eq!(d.check(start + ms(499)), Ok(start + ms(500)));
        assert_eq!(d.check(start + ms(500)), Err(Expiry::Idle(ms(300))));
        // Ended for good, whatever the clock says.
        assert_eq!(d.activity(), Err(Expiry::Idle(ms(300))));
        assert_eq!(d.expired(), Some(Expiry::Idle(ms(300))));
    }

    #[tokio::test]
    async fn max_duration_ends_a_busy_tunnel() {
        let mut d = Deadlines::new(Some(ms(300)), Some(ms(500))).unwrap();
        let start = d.last_activity;
        for t in [100, 200, 300, 400] {
            d.activity_at(start + ms(t)).unwrap();
        }
        // The lifetime bounds the next deadline even when the idle one is later.
        assert_eq!(d.check(start + ms(450)), Ok(start + ms(500)));
        assert_eq!(
            d.activity_at(start + ms(500)),
            Err(Expiry::MaxDuration(ms(500)))
        );
        assert_eq!(d.expired(), Some(Expiry::MaxDuration(ms(500))));
    }

    #[tokio::test]
    async fn a_lifetime_alone_is_kept_too() {
        let mut d = Deadlines::new(None, Some(ms(500))).unwrap();
        let start = d.last_activity;
        assert_eq!(d.timer.deadline(), start + ms(500));
        assert_eq!(
            d.check(start + ms(10_000_000)),
            Err(Expiry::MaxDuration(ms(500)))
        );
        assert!(Deadlines::new(None, None).is_none());
    }

    #[tokio::test]
    async fn the_timer_wakes_the_waiting_reader_and_writer() {
        let mut d = Deadlines::new(Some(ms(30)), None).unwrap();
        let (reader, writer) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
        let (reader_waker, writer_waker) =
            (Waker::from(reader.clone()), Waker::from(writer.clone()));
        assert!(
            d.poll_expired(Side::Read, &mut Context::from_waker(&reader_waker))
                .is_pending()
        );
        assert!(
            d.poll_expired(Side::Write, &mut Context::from_waker(&writer_waker))
                .is_pending()
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            reader.0.notified().await;
            writer.0.notified().await;
        })
        .await
        .expect("the timer woke both tasks");
        let expired = d.poll_expired(Side::Read, &mut Context::from_waker(&reader_waker));
        assert_eq!(expired, Poll::Ready(Expiry::Idle(ms(30))));
    }

    /// A waker that records being woken (a permit for the next `notified()`).
    #[derive(Default)]
    struct Flag(tokio::sync::Notify);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.notify_one();
        }
    }

    #[test]
    fn errors_name_the_setting() {
        let idle = Expiry::Idle(ms(300)).to_io();
        assert_eq!(idle.kind(), io::ErrorKind::TimedOut);
        assert!(idle.to_string().contains("300ms"), "{idle}");
        assert!(idle.to_string().contains("tcp.idleTimeout"), "{idle}");
        let max = Expiry::MaxDuration(ms(1500)).to_io();
        assert!(max.to_string().contains("1.5s"), "{max}");
        assert!(max.to_string().contains("maxConnectionDuration"), "{max}");
    }
}
