//! Stop requests shared by the signal handler, the engine and the sources.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use tokio::sync::watch;

/// How urgently everything should stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum StopLevel {
    Running = 0,
    /// Sources stop capturing and deliver what they still have; the engine writes it all.
    Graceful = 1,
    /// Sources are killed now; the engine writes what it holds and finishes.
    Now = 2,
}

#[derive(Debug)]
pub struct Stop {
    level: AtomicU8,
    tx: watch::Sender<StopLevel>,
    /// The signal that asked for the stop (0: none).
    signal: AtomicI32,
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            level: AtomicU8::new(0),
            tx: watch::channel(StopLevel::Running).0,
            signal: AtomicI32::new(0),
        }
    }
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the stop level (never lowers it).
    pub fn request(&self, level: StopLevel) {
        self.level.fetch_max(level as u8, Ordering::SeqCst);
        // raise the watched value under its lock, so two racing requests cannot leave it
        // below the level
        self.tx.send_if_modified(|current| {
            if level > *current {
                *current = level;
                true
            } else {
                false
            }
        });
    }

    /// A signal (SIGINT, SIGTERM) asks for a stop at `level`; the first one is remembered.
    pub fn interrupt(&self, signal: i32, level: StopLevel) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.request(level);
    }

    /// The signal that interrupted the run, if one did.
    pub fn interrupted_by(&self) -> Option<&'static str> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            libc::SIGINT => Some("SIGINT (Ctrl-C)"),
            libc::SIGTERM => Some("SIGTERM"),
            _ => Some("a signal"),
        }
    }

    pub fn level(&self) -> StopLevel {
        match self.level.load(Ordering::SeqCst) {
            0 => StopLevel::Running,
            1 => StopLevel::Graceful,
            _ => StopLevel::Now,
        }
    }

    /// Notified whenever the level rises.
    pub fn subscribe(&self) -> watch::Receiver<StopLevel> {
        self.tx.subscribe()
    }
}

/// The stop level after a change notification from [`Stop::subscribe`]; a vanished sender
/// means stop now.
pub fn level_after(
    changed: Result<(), watch::error::RecvError>,
    stop: &watch::Receiver<StopLevel>,
) -> StopLevel {
    if changed.is_ok() {
        *stop.borrow()
    } else {
        StopLevel::Now
    }
}
