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
}
