//! The process's resources: memory freed after a burst of work given back to
//! the system, and room for as many files as a thousand modules need.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse: after a
//! thousand modules were installed, forkletd's resident size stays at what
//! the burst needed, long after the work is done. Trimming now and then
//! returns it; a trim of an idle heap costs well under a millisecond.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(60);

/// Call first thing in `main`, before any thread starts. glibc gives each
/// thread that contends for the heap an arena of its own, up to eight per
/// core, and memory freed in one arena serves only that arena: forkletd's
/// threads (the runtime's, the blocking pool's, the store's) do little
/// allocation at once, so two arenas keep the heap dense at no cost in speed.
/// A `MALLOC_ARENA_MAX` the user set wins.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        #[allow(unsafe_code)]
        // SAFETY: mallopt only sets an allocator parameter; called before
        // any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Trims the heap every [`EVERY`] until `shutdown`.
pub async fn release_freed(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Off the runtime: the first trim after a burst walks it all.
            _ = tokio::time::sleep(EVERY) => {
                let _ = tokio::task::spawn_blocking(trim).await;
            }
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

/// Raises the soft limit on open files to the hard one (at most 1 << 20):
/// a thousand modules mean a thousand runners to call, relays and streams,
/// and the soft limit a service manager or shell starts with is often 1024.
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit writes the struct passed, which lives on this stack.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let wanted = limit.rlim_max.min(1 << 20);
    if read != 0 || limit.rlim_cur >= wanted {
        return;
    }
    let current = limit.rlim_cur;
    limit.rlim_cur = wanted;
    #[allow(unsafe_code)]
    // SAFETY: setrlimit reads the struct passed, which lives on this stack.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if set != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(
            %error,
            from = current,
            to = wanted,
            "cannot raise the open files limit; with many modules calls may fail"
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_files_limit() {}
