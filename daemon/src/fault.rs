//! Named points where a test build of forkletd can be made to crash, to
//! prove that every step survives a crash anywhere. `FORKLET_CRASH_AT=POINT`
//! aborts the process when it reaches POINT. Only with the `testing`
//! feature; in a normal build these calls compile to nothing.

/// The points, as `forklet`'s tests name them: `OP:before-call` and
/// `OP:after-call` for OP in install, uninstall, sleep, resume, and
/// `uninstall:after-remove` (runner removed, module not yet forgotten).
#[cfg(feature = "testing")]
pub fn crash_point(operation: &dyn std::fmt::Display, stage: &str) {
    use std::sync::OnceLock;
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let point = format!("{operation}:{stage}");
    if AT
        .get_or_init(|| std::env::var("FORKLET_CRASH_AT").ok())
        .as_deref()
        == Some(point.as_str())
    {
        eprintln!("forkletd: crashing at {point} (FORKLET_CRASH_AT)");
        std::process::abort();
    }
}

#[cfg(not(feature = "testing"))]
#[inline(always)]
pub fn crash_point(_operation: &dyn std::fmt::Display, _stage: &str) {}
