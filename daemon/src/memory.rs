//! Gives memory freed after a burst of work back to the system.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse: after a
//! thousand modules were installed, forkletd's resident size stays at what
//! the burst needed, long after the work is done. Trimming now and then
//! returns it; a trim of an idle heap costs well under a millisecond.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(60);

/// Trims the heap every [`EVERY`] until `shutdown`.
pub async fn release_freed(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => trim(),
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists, under
    // the allocator's locks; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's) return memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
