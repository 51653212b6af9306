import CSystemd

/// The agent's hold on memory between sweeps. A sweep allocates tens of megabytes for a
/// few seconds on several threads (the probes, the drift look, the record), and glibc
/// keeps what each thread freed in that thread's arena: a long-running agent's resident
/// memory grew sweep after sweep to twice that of one sweep, though its heap did not.
public enum ProcessMemory {
    /// For a process that runs sweeps for ever: at most two malloc arenas (glibc makes up
    /// to eight per core), and every block of 128 KiB or more mapped on its own and
    /// unmapped when freed (glibc's threshold otherwise rises to 32 MiB after the first
    /// large free, and the arrays of a sweep's 5,000 tenants then stay in the heap). Measured
    /// at 5,000 tenants: the agent's peak went from 88 MB after a few sweeps to 62 MB.
    public static func tuneForSweeps() {
        _ = desa_malloc_arena_max(2)
        _ = desa_malloc_mmap_threshold(128 << 10)
    }

    /// Hands the memory freed since the last trim back to the kernel.
    public static func trim() {
        _ = desa_malloc_trim()
    }
}
