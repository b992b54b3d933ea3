//! Stop requests shared by the signal handler, the engine and the sources.

use std::sync::atomic::{AtomicU8, Ordering};
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
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            level: AtomicU8::new(0),
            tx: watch::channel(StopLevel::Running).0,
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
