//! The process's allocator tuning, set once by each binary's `main` before any work:
//! [`keep_freed_memory`] fixes glibc malloc's mmap and trim thresholds.
//!
//! Policy and mechanism apart: the code that moves bulk data (the agent's upload, the
//! controller's artifact writer) allocates and frees MiB-sized buffers for every chunk and
//! relies on this; how the process's allocator behaves is decided here, in one place, by the
//! binaries that own the process. Why, and the measurement:
//! `docs/decisions/0009-allocator-thresholds.md`.
//!
//! A crate of its own, with no dependencies (it declares glibc's `mallopt` itself), because
//! both binaries call it and they never depend on each other, `ferry-proto` holds the wire
//! format only and `ferry-jobspec` the request rules only; a crate this small costs nothing
//! to build.

/// Allocations below this come from a heap, not a `mmap` of their own.
pub const MMAP_THRESHOLD: i32 = 8 << 20;
/// Free memory at the top of a heap beyond this goes back to the kernel.
pub const TRIM_THRESHOLD: i32 = 32 << 20;

/// Keeps the memory of freed chunk buffers in the process: fixed glibc thresholds
/// ([`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`]) instead of the default sliding ones, under which
/// the freed top of a heap goes back to the kernel and is faulted in, zeroed, for the next
/// chunk. Memory kept is bounded by the trim threshold per arena, and only ever what the
/// process used at its peak. Call it from `main`, before the work starts; later calls do
/// nothing. Elsewhere than Linux with glibc it does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            use std::os::raw::c_int;
            const M_TRIM_THRESHOLD: c_int = -1;
            const M_MMAP_THRESHOLD: c_int = -3;
            extern "C" {
                fn mallopt(param: c_int, value: c_int) -> c_int;
            }
            // SAFETY: `mallopt` only sets allocator thresholds; glibc makes it thread-safe.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tuning_twice_is_harmless() {
        super::keep_freed_memory();
        super::keep_freed_memory();
        let v: Vec<u8> = vec![0; super::MMAP_THRESHOLD as usize / 2];
        assert_eq!(v.len(), 4 << 20);
    }
}
