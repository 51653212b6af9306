import CSystemd
import Foundation

/// Structured entries for the systemd journal (`sd_journal_sendv`). Field names must be
/// uppercase; values are sent as given, so callers never pass secrets.
public protocol JournalWriting: Sendable {
    func send(_ fields: [String: String])
}

public struct SystemJournal: JournalWriting {
    public init() {}

    public func send(_ fields: [String: String]) {
        var lines = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        if fields["SYSLOG_IDENTIFIER"] == nil { lines.append("SYSLOG_IDENTIFIER=desa") }
        let buffers = lines.map { Array($0.utf8) }
        var pointers: [UnsafeMutablePointer<UInt8>] = []
        var iov: [iovec] = []
        for b in buffers {
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(b.count, 1))
            p.initialize(from: b, count: b.count)
            pointers.append(p)
            iov.append(iovec(iov_base: UnsafeMutableRawPointer(p), iov_len: b.count))
        }
        _ = iov.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        for p in pointers { p.deallocate() }
    }
}

/// Journal priorities (syslog levels).
public enum JournalPriority: Int, Sendable {
    case err = 3, warning = 4, notice = 5, info = 6
}

/// `sd_notify` for the agent: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1.
public enum ServiceNotify {
    @discardableResult
    public static func send(_ state: String) -> Bool {
        state.withCString { sd_notify(0, $0) } > 0
    }

    /// The watchdog period systemd asks of this process (`WATCHDOG_USEC`, and
    /// `WATCHDOG_PID` when set names this process), or nil when there is no watchdog.
    /// Ping with WATCHDOG=1 at least every half of it.
    public static var watchdog: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(clamping: usec))
    }
}
