import NIOConcurrencyHelpers
import NIOCore

/// Idle HTTP/1.1 connections to the probe addresses, for the next plain-HTTP probe of the
/// same address. Every village is served by the same local nginx, so a sweep of 5,000
/// villages needs as many connections as it has probes in flight, not 5,000: each
/// connection set up and torn down cost the agent and nginx more than the request on it.
///
/// A connection goes back here only after an answer that ended cleanly and did not say
/// `Connection: close`; a probe that timed out, failed or stopped reading at the body
/// limit closes its connection. Whoever owns the probes closes the idle ones when a
/// sweep ends (`closeAll`), so none outlives the sweep it served or waits for the
/// server's keep-alive timeout. Thread-safe.
final class ProbeConnections: Sendable {
    struct Idle: Sendable {
        let channel: any Channel
        let handler: NIOLoopBound<HTTPProbeHandler>
    }

    private let idle = NIOLockedValueBox<[String: [Idle]]>([:])
    private let counters = NIOLockedValueBox<(opened: Int, reused: Int)>((0, 0))

    /// An idle connection to `key` that is still open, if there is one.
    func take(_ key: String) -> Idle? {
        idle.withLockedValue { all in
            while let e = all[key]?.popLast() {
                if e.channel.isActive { return e }
            }
            return nil
        }
    }

    func put(_ key: String, _ e: Idle) {
        idle.withLockedValue { $0[key, default: []].append(e) }
    }

    /// Forgets a connection that closed (the server ended an idle one).
    func remove(_ key: String, _ channel: any Channel) {
        idle.withLockedValue { all in all[key]?.removeAll { $0.channel === channel } }
    }

    /// Closes every idle connection.
    func closeAll() async {
        let all = idle.withLockedValue { all -> [Idle] in
            defer { all = [:] }
            return all.values.flatMap { $0 }
        }
        for e in all { try? await e.channel.close() }
    }

    var idleCount: Int { idle.withLockedValue { $0.values.reduce(0) { $0 + $1.count } } }

    func count(opened: Bool) {
        counters.withLockedValue { if opened { $0.opened += 1 } else { $0.reused += 1 } }
    }

    /// Connections opened and reused since the probes were made.
    var stats: (opened: Int, reused: Int) { counters.withLockedValue { $0 } }
}
