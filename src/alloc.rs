//! Settings of the allocator the binaries install (mimalloc).
//!
//! mimalloc hands memory that has stayed free for `purge_delay` milliseconds (1 s by default) back
//! to the kernel. Ingest frees on one thread what another allocated (the decode thread allocates
//! a batch's records, the writer frees them after the commit), so at that delay the memory of the
//! batches in flight went back to the kernel every second and came back as fresh pages, each
//! zeroed by a page fault: a quarter of the decode thread's time in a zip-bundle drain. At 10 s
//! the same memory is reused while traffic flows and still returned when it stops.
//!
//! `MIMALLOC_PURGE_DELAY` in the environment still wins over this setting.

use libmimalloc_sys::{mi_option_set_default, mi_option_t};
use std::ffi::c_long;

/// `mi_option_purge_delay`, which libmimalloc-sys does not name: its place in `mi_option_e`, the
/// same in mimalloc 2 and 3. The tests check it against the option's documented default.
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays with the process before mimalloc returns it, in milliseconds.
pub const PURGE_DELAY_MS: c_long = 10_000;

/// Apply cbtrail's allocator settings, unless the environment set them.
///
/// # Safety
/// mimalloc's options are plain variables: call this first thing in `main`, before any other
/// thread exists.
pub unsafe fn configure() {
    // SAFETY: the caller guarantees no other thread reads the options now.
    unsafe { mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    /// The purge delay in force, in milliseconds (-1: never).
    fn purge_delay_ms() -> c_long {
        // SAFETY: reads an option; the test is the only thread that touches them.
        unsafe { mi_option_get(PURGE_DELAY) }
    }

    // One test: nextest runs it in a process of its own, so nothing else touches the options.
    #[test]
    fn configure_sets_the_purge_delay_unless_the_environment_did() {
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Err(_) => {
                // mimalloc 3's default for purge_delay and no other option's: the index is right.
                assert_eq!(purge_delay_ms(), 1_000);
                unsafe { configure() };
                assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
            }
            Ok(v) => {
                let set: c_long = v.trim().parse().expect("MIMALLOC_PURGE_DELAY is a number");
                unsafe { configure() };
                assert_eq!(purge_delay_ms(), set, "the environment wins");
            }
        }
    }
}
