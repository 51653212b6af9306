import Foundation
import Logging

import ServiceLifecycle

/// Tells systemd the agent lives: WATCHDOG=1 every half of the watchdog period, from a
/// loop of its own so the pings keep coming while a long round runs (the other services'
/// work runs on threads of its own, never on this loop's); STOPPING=1 when shutdown
/// begins. Put it last in the group: graceful shutdown goes in reverse order, so this is
/// the first service told, and STOPPING=1 goes out before any round is abandoned.
struct Alive<C: Clock>: Service, CustomStringConvertible where C.Duration == Duration {
    /// systemd's watchdog period (`ServiceNotify.watchdog`); nil: no pings, only STOPPING=1.
    let watchdog: Duration?
    let clock: C
    let logger: Logger

    var description: String { "alive" }

    func run() async throws {
        if let watchdog {
            try await Periodic("watchdog", every: watchdog / 2, clock: clock) { _ in
                if Self.wedged() { return }
                ServiceNotify.send("WATCHDOG=1")
            }.run()
        } else {
            try? await gracefulShutdown()
        }
        ServiceNotify.send("STOPPING=1")
        logger.notice("stopping")
    }

    #if DEBUG
    /// A test hook, in debug builds only: while the file `DESA_TEST_WEDGE_FILE` names
    /// exists, the pings stop, as if the agent hung, so that a test can watch systemd's
    /// watchdog kill and restart it.
    static func wedged() -> Bool {
        guard let path = ProcessInfo.processInfo.environment["DESA_TEST_WEDGE_FILE"], !path.isEmpty else { return false }
        return FileManager.default.fileExists(atPath: path)
    }
    #else
    static func wedged() -> Bool { false }
    #endif
}
