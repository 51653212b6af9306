import Foundation

/// The agent's round: compare the server with the state database (the same plan
/// `desactl plan` shows) and report in the journal what drifted since the last round:
/// a vhost removed by hand, a pool edited, a home whose mode changed. It reads only;
/// `desactl apply` repairs. Reports are made on change, so an unchanged drift is said
/// once, not every round, and a repaired one is said to be back in line (`DriftState`).
///
/// Rounds are blocking (a lock, processes, HTTP probes, the database): call `round()` from
/// a thread of its own, not from Swift's cooperative pool. Sendable because rounds are
/// serialized by an internal lock.
public final class DriftWatch: @unchecked Sendable {
    public struct Round: Sendable, Equatable {
        /// Tenants (village code) with pending actions, and what they are.
        public var drifted: [String: [String]]
        /// Actions that belong to no tenant (shared directories).
        public var server: [String]
        public var tenants: Int
        public var failed: Int

        public init(drifted: [String: [String]] = [:], server: [String] = [], tenants: Int, failed: Int = 0) {
            self.drifted = drifted; self.server = server; self.tenants = tenants; self.failed = failed
        }

        /// `280 tenants, 0 failed, converged` or `280 tenants, 1 failed, 2 tenants drifted`.
        public var summary: String {
            func count(_ n: Int) -> String { n == 1 ? "1 tenant" : "\(n) tenants" }
            var what = drifted.isEmpty ? [] : ["\(count(drifted.count)) drifted"]
            if !server.isEmpty { what.append("server drifted") }
            return "\(count(tenants)), \(failed) failed, " + (what.isEmpty ? "converged" : what.joined(separator: ", "))
        }
    }

    public let engine: Engine
    /// How long a round waits for the state lock before it fails (nil: for ever).
    public let lockTimeout: TimeInterval?
    private var state = DriftState()
    private let serial = NSLock()

    public init(engine: Engine, lockTimeout: TimeInterval? = nil) {
        self.engine = engine
        self.lockTimeout = lockTimeout
    }

    /// One round. Holds the state lock while it looks, so it never reports the
    /// half-written state of an apply in progress; the lock is released when it returns
    /// or throws. Throws a `.conflict` DesaError when the lock stays taken past `lockTimeout`.
    @discardableResult
    public func round() throws -> Round {
        serial.lock()
        defer { serial.unlock() }
        let held = try engine.lock(timeout: lockTimeout)
        defer { withExtendedLifetime(held) {} }
        #if DEBUG
        // Tests only: a round that hangs while it holds the lock, as a hung probe would.
        if let s = ProcessInfo.processInfo.environment["DESA_TEST_SLOW_ROUND_SECONDS"], let seconds = Double(s) {
            Thread.sleep(forTimeInterval: seconds)
        }
        #endif
        // A dead master is found here too (and started again in a sandbox): a killed
        // php-fpm leaves every config in place while every PHP page answers 502.
        let findings = engine.checkServices()
        let tenants = try engine.store.tenants()
        let plan = try engine.plan()
        var drifted: [String: [String]] = [:]
        var server: [String] = []
        for a in plan.steps {
            let line = "\(a.op) \(a.subject)"
            if let t = a.tenant { drifted[t, default: []].append(line) } else { server.append(line) }
        }
        server += findings.map(\.message)
        server += plan.unknown.map { "unknown to the state database: \($0)" }
        if RollbackJournal(dir: engine.config.rollbackDir).pending() != nil {
            server.append("an interrupted apply left its rollback journal; the next desactl apply restores it")
        }
        let r = Round(drifted: drifted, server: server, tenants: tenants.filter { $0.status != .deleted }.count,
                      failed: tenants.filter { $0.status == .failed }.count)
        report(r, slugs: Dictionary(tenants.map { ($0.code, $0.slug) }, uniquingKeysWith: { a, _ in a }))
        return r
    }

    /// Says each event once: a log line and a journal entry.
    private func report(_ r: Round, slugs: [String: String]) {
        let warn = "\(JournalPriority.warning.rawValue)", info = "\(JournalPriority.info.rawValue)"
        for event in state.next(r) {
            switch event {
            case let .tenantDrifted(code, lines):
                let slug = slugs[code] ?? code
                let msg = "tenant \(slug) (\(code)) drifted from the state database; desactl apply would: "
                    + lines.prefix(5).joined(separator: "; ") + (lines.count > 5 ? "; and \(lines.count - 5) more" : "")
                engine.logger.warning("\(msg)")
                engine.journal.send(["MESSAGE": msg, "DESA_TENANT": code, "DESA_SLUG": slug, "DESA_OP": "drift",
                                     "DESA_ACTIONS": "\(lines.count)", "PRIORITY": warn])
            case let .tenantInLine(code):
                let slug = slugs[code] ?? code
                let msg = "tenant \(slug) (\(code)) matches the state database again"
                engine.logger.notice("\(msg)")
                engine.journal.send(["MESSAGE": msg, "DESA_TENANT": code, "DESA_SLUG": slug, "DESA_OP": "drift",
                                     "DESA_ACTIONS": "0", "PRIORITY": info])
            case let .serverDrifted(lines):
                let msg = "server drifted from the state database; desactl apply would: " + lines.prefix(5).joined(separator: "; ")
                engine.logger.warning("\(msg)")
                engine.journal.send(["MESSAGE": msg, "DESA_OP": "drift", "DESA_ACTIONS": "\(lines.count)", "PRIORITY": warn])
            case let .summary(r):
                engine.journal.send(["MESSAGE": "check: " + r.summary, "DESA_OP": "check", "DESA_DRIFTED": "\(r.drifted.count)",
                                     "DESA_TENANTS": "\(r.tenants)", "DESA_FAILED": "\(r.failed)", "PRIORITY": info])
            }
        }
    }
}
