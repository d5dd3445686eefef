//! Sync: everything that keeps the namespace and shares it.
//!
//! - [`merge`]: the pure merge of versions (property-tested);
//! - [`local`]: the versions local changes make;
//! - [`Tree`] ([`tree`]): the namespace as sync keeps it, with the
//!   recorder ([`recorder`]), mount-time reconciliation ([`reconcile`]),
//!   remote pages applied ([`remote`], with [`copies`] for conflict
//!   copies and [`stash`] for the files a pull replaced), modes and the life of a file
//!   ([`life`], [`unreal`]), and what the household sees of this peer
//!   ([`held`], [`sharing`], [`peering`]: [`crate::net::core::Core`]).
//!
//! When rounds run is the network's (`net/schedule.rs`); the dispatcher
//! ([`crate::fs`]) calls [`Tree`] for every change it makes.

mod copies;
pub mod dump;
mod error;
pub(crate) mod fences;
pub mod held;
pub mod kept;
pub mod life;
pub mod local;
pub mod merge;
pub mod paths;
pub mod peering;
pub mod reconcile;
pub mod recorder;
pub mod remote;
pub mod restore;
pub mod sharing;
mod stash;
pub mod tree;
mod undo;
pub mod unreal;

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use error::{Error, Result};
pub use tree::{KernelCache, Parts, Tree};

/// The name of the control directory in every directory of the mount;
/// no entry may take it, and `DATA/real` never holds one.
pub const CTL_NAME: &str = ".ctl";

/// Locks a mutex, recovering the data of a poisoned one (a panic elsewhere
/// must not take the whole mount down).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` with `guard` for at most `timeout`, past a poisoned lock
/// like [`lock`].
pub(crate) fn wait<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, timeout)
        .unwrap_or_else(|e| e.into_inner())
        .0
}
