//! Settings of the allocator the binaries install (mimalloc), and of the memory it gets.
//!
//! - **Purge delay.** mimalloc hands memory that has stayed free for `purge_delay` milliseconds
//!   (1 s by default) back to the kernel. Ingest frees on one thread what another allocated (the
//!   decode thread allocates a batch's records, the writer frees them after the commit), so at that
//!   delay the memory of the batches in flight went back to the kernel every second and came back
//!   as fresh pages, each zeroed by a page fault: a quarter of the decode thread's time in a
//!   zip-bundle drain. At 10 s the same memory is reused while traffic flows and still returned
//!   when it stops.
//! - **No transparent huge pages.** mimalloc asks for huge pages on its arenas
//!   (`MADV_HUGEPAGE`), so on a kernel whose THP mode is `madvise` (Debian's and EL's default)
//!   every first touch of arena memory faulted in 2 MiB at once, zeroed and, with `defrag` at
//!   `madvise`, compacted for. Draining a million bundle events from a cold start, the process
//!   spent 2.0 s of its 5.7 CPU-s in the kernel; with THP off, 1.3-1.7 s, and decode used 1.9-2.2
//!   CPU-s instead of 2.5-2.6 (README, Performance). The first arena is reserved and advised
//!   before `main` runs, so mimalloc's own option comes too late for it: the process turns THP off
//!   for itself with `prctl(PR_SET_THP_DISABLE)`, which overrides the advice.
//!
//! `MIMALLOC_PURGE_DELAY` and `MIMALLOC_ALLOW_THP` in the environment still win over these
//! settings.

use libmimalloc_sys::{mi_option_set_default, mi_option_t};
use std::ffi::c_long;

/// `mi_option_purge_delay` and `mi_option_allow_thp`, which libmimalloc-sys does not name: their
/// places in mimalloc 3's `mi_option_e`. The tests check them against the options' defaults.
const PURGE_DELAY: mi_option_t = 15;
const ALLOW_THP: mi_option_t = 43;

/// How long freed memory stays with the process before mimalloc returns it, in milliseconds.
pub const PURGE_DELAY_MS: c_long = 10_000;

/// The environment variable through which mimalloc reads `allow_thp`.
const ALLOW_THP_ENV: &str = "MIMALLOC_ALLOW_THP";

/// Apply cbtrail's allocator settings, unless the environment set them.
///
/// # Safety
/// mimalloc's options are plain variables: call this first thing in `main`, before any other
/// thread exists.
pub unsafe fn configure() {
    // SAFETY: the caller guarantees no other thread reads the options now.
    unsafe { mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS) }
    if std::env::var_os(ALLOW_THP_ENV).is_none() {
        // SAFETY: as above.
        unsafe { mi_option_set_default(ALLOW_THP, 0) }
        disable_thp();
    }
}

/// Turn transparent huge pages off for this process (and what it executes). Failure (a kernel
/// without the call) leaves the kernel's default, which is only slower.
#[cfg(target_os = "linux")]
fn disable_thp() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn disable_thp() {}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    fn option(o: mi_option_t) -> c_long {
        // SAFETY: reads an option; the test is the only thread that touches them.
        unsafe { mi_option_get(o) }
    }

    /// The kernel's THP-disable flag of this process.
    fn thp_disabled() -> bool {
        // SAFETY: as in `disable_thp`.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
    }

    // One test: nextest runs it in a process of its own, so nothing else touches the options.
    #[test]
    fn configure_applies_the_settings_the_environment_did_not_set() {
        let purge_env = std::env::var("MIMALLOC_PURGE_DELAY").ok();
        let thp_env = std::env::var(ALLOW_THP_ENV).ok();
        let (thp_option, thp_flag) = (option(ALLOW_THP), thp_disabled());
        if purge_env.is_none() {
            // mimalloc 3's default for purge_delay and no other option's: the index is right.
            assert_eq!(option(PURGE_DELAY), 1_000);
        }
        if thp_env.is_none() {
            // allow_thp is the only option at 1 between its neighbours minimal_purge_size (0) and
            // page_cross_thread_max_reclaim (a page count): check the place by those too.
            assert_eq!(option(ALLOW_THP), 1);
            assert_eq!(option(ALLOW_THP + 1), 0, "minimal_purge_size");
        }
        unsafe { configure() };
        match purge_env {
            None => assert_eq!(option(PURGE_DELAY), PURGE_DELAY_MS),
            Some(v) => {
                let set: c_long = v.trim().parse().expect("MIMALLOC_PURGE_DELAY is a number");
                assert_eq!(option(PURGE_DELAY), set, "the environment wins");
            }
        }
        match thp_env {
            None => {
                assert_eq!(option(ALLOW_THP), 0);
                assert!(thp_disabled(), "configure turns THP off for the process");
            }
            Some(_) => {
                assert_eq!(option(ALLOW_THP), thp_option, "the environment wins");
                assert_eq!(
                    thp_disabled(),
                    thp_flag,
                    "configure leaves the process flag alone"
                );
            }
        }
    }
}
