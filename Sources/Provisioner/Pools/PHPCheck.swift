import Foundation

extension HealthCheck {
    /// The tenant's PHP-FPM pool listens (and answers its ping when it has workers).
    public static let php: HealthCheck = "php"
}

/// The pool's socket listens (php-fpm's master has the pool); when the pool has workers
/// already, one answers FPM's ping. An idle pool is not pinged: under `pm = ondemand` a
/// ping starts a worker (20 MB or more, for 20 s), and 5,000 pings at once exhausted a
/// 24 GB machine. A suspended tenant has no pool: not checked.
struct PHPCheck: TenantCheck {
    struct Prepared: Sendable {
        /// Pool sockets php-fpm listens on (/proc/net/unix, read once), and the pools that
        /// have a worker now.
        var listening: Set<String>
        var pools: Set<String>
    }

    var id: HealthCheck { .php }

    func prepare(_ s: SweepContext) async throws -> Prepared {
        try await s.off { Prepared(listening: Processes.listeningUnixSockets(), pools: Processes.fpmPoolsWithWorkers()) }
    }

    func check(_ t: Tenant, _ p: Prepared, _ s: SweepContext) async -> CheckOutcome? {
        if t.desired == .suspended { return nil }
        guard let socket = try? t.phpSocket(s.config) else {
            return CheckOutcome(.php, .down, "PHP \(t.php) is not configured in php.versions")
        }
        guard p.listening.contains(socket) else {
            let why = FileManager.default.fileExists(atPath: socket) ? "nothing listens on \(socket)" : "socket missing: \(socket)"
            return CheckOutcome(.php, .down, "the pool does not answer: " + why)
        }
        guard p.pools.contains(t.userName(prefix: s.config.userPrefix)) else { return CheckOutcome(.php, .ok) }
        let r = await s.probes.fpmPing(socket: socket, path: PoolsCapability.pingPath)
        switch r.outcome {
        case .answered(200) where r.body.hasPrefix(PoolsCapability.pingResponse):
            return CheckOutcome(.php, .ok, duration: r.elapsed)
        case .answered(let status):
            return CheckOutcome(.php, .down, "the pool answered its ping with status \(status)", duration: r.elapsed)
        case .failed(let reason):
            return CheckOutcome(.php, .down, "the pool does not answer: " + reason, duration: r.elapsed)
        }
    }
}
