import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the control plane reads the time and waits: the system's, or a test's. Every
/// timestamp, deadline and interval goes through one (applier phases, verification,
/// the agent's rounds; certificate renewal windows and backup retention next).
public struct TimeSource: Sendable {
    public var now: @Sendable () -> Date
    public var sleep: @Sendable (TimeInterval) -> Void

    public init(now: @escaping @Sendable () -> Date, sleep: @escaping @Sendable (TimeInterval) -> Void) {
        self.now = now; self.sleep = sleep
    }

    public static let system = TimeSource(now: { Date() }, sleep: { s in if s > 0 { usleep(useconds_t(min(s, 3600) * 1_000_000)) } })

    /// A deadline `seconds` from now.
    public func deadline(_ seconds: TimeInterval) -> Date { now().addingTimeInterval(seconds) }

    #if DEBUG
    /// Test hook, debug builds only: `DESA_TEST_NOW=2030-03-27T00:00:00Z` puts desactl's
    /// clock at that instant (renewals due, backoff over). The clock stands still but for
    /// sleeps, which really sleep and move it on as much: what is due is decided at exactly
    /// that instant, and every wait still ends. nil when the variable is not set.
    public static func testOverride() throws -> TimeSource? {
        guard let text = ProcessInfo.processInfo.environment["DESA_TEST_NOW"], !text.isEmpty else { return nil }
        guard let start = Timestamp.parse(text) else {
            throw DesaError(.config, "DESA_TEST_NOW \(Quote.show(text)) is not a time like 2030-03-27T00:00:00Z")
        }
        final class Clock: @unchecked Sendable {
            let lock = NSLock()
            var now: Date
            init(_ d: Date) { now = d }
        }
        let clock = Clock(start)
        return TimeSource(now: { clock.lock.withLock { clock.now } }, sleep: { s in
            TimeSource.system.sleep(s)
            clock.lock.withLock { clock.now += max(0, s) }
        })
    }
    #endif
}
