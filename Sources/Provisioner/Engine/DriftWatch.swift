import Foundation

/// The agent's round: compare the server with the state database (the same plan
/// `desactl plan` shows) and report in the journal what drifted since the last round:
/// a vhost removed by hand, a pool edited, a home whose mode changed. It reads only;
/// `desactl apply` repairs. Reports are made on change, so an unchanged drift is said
/// once, not every round, and a repaired one is said to be back in line.
public final class DriftWatch {
    public struct Round: Sendable, Equatable {
        /// Tenants (village code) with pending actions, and what they are.
        public var drifted: [String: [String]]
        /// Actions that belong to no tenant (shared directories).
        public var server: [String]
        public var tenants: Int
        public var failed: Int

        /// `280 tenants, 0 failed, converged` or `280 tenants, 1 failed, 2 tenants drifted`.
        public var summary: String {
            func count(_ n: Int) -> String { n == 1 ? "1 tenant" : "\(n) tenants" }
            var what = drifted.isEmpty ? [] : ["\(count(drifted.count)) drifted"]
            if !server.isEmpty { what.append("server drifted") }
            return "\(count(tenants)), \(failed) failed, " + (what.isEmpty ? "converged" : what.joined(separator: ", "))
        }
    }

    public let engine: Engine
    private var previous: [String: [String]] = [:]
    private var previousServer: [String] = []
    private var first = true

    public init(engine: Engine) { self.engine = engine }

    /// One round. Holds the state lock while it looks, so it never reports the
    /// half-written state of an apply in progress.
    @discardableResult
    public func round() throws -> Round {
        let held = try engine.lock()
        defer { withExtendedLifetime(held) {} }
        // A dead master is found here too (and started again in a sandbox): a killed
        // php-fpm leaves every config in place while every PHP page answers 502.
        let findings = engine.checkServices()
        let tenants = try engine.store.tenants()
        let plan = try engine.planner.plan(try engine.desired(tenants, aliases: try engine.store.aliases()))
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

    private func report(_ r: Round, slugs: [String: String]) {
        let warn = "\(JournalPriority.warning.rawValue)", info = "\(JournalPriority.info.rawValue)"
        for (code, lines) in r.drifted.sorted(by: { $0.key < $1.key }) where previous[code] != lines {
            let slug = slugs[code] ?? code
            let msg = "tenant \(slug) (\(code)) drifted from the state database; desactl apply would: "
                + lines.prefix(5).joined(separator: "; ") + (lines.count > 5 ? "; and \(lines.count - 5) more" : "")
            engine.logger.warning("\(msg)")
            engine.journal.send(["MESSAGE": msg, "DESA_TENANT": code, "DESA_SLUG": slug, "DESA_OP": "drift",
                                 "DESA_ACTIONS": "\(lines.count)", "PRIORITY": warn])
        }
        for code in previous.keys.sorted() where r.drifted[code] == nil {
            let slug = slugs[code] ?? code
            let msg = "tenant \(slug) (\(code)) matches the state database again"
            engine.logger.notice("\(msg)")
            engine.journal.send(["MESSAGE": msg, "DESA_TENANT": code, "DESA_SLUG": slug, "DESA_OP": "drift",
                                 "DESA_ACTIONS": "0", "PRIORITY": info])
        }
        if r.server != previousServer, !r.server.isEmpty {
            let msg = "server drifted from the state database; desactl apply would: " + r.server.prefix(5).joined(separator: "; ")
            engine.logger.warning("\(msg)")
            engine.journal.send(["MESSAGE": msg, "DESA_OP": "drift", "DESA_ACTIONS": "\(r.server.count)", "PRIORITY": warn])
        }
        if first || r.drifted.count != previous.count || r.server.isEmpty != previousServer.isEmpty {
            engine.journal.send(["MESSAGE": "check: " + r.summary, "DESA_OP": "check", "DESA_DRIFTED": "\(r.drifted.count)",
                                 "DESA_TENANTS": "\(r.tenants)", "DESA_FAILED": "\(r.failed)", "PRIORITY": info])
        }
        previous = r.drifted
        previousServer = r.server
        first = false
    }
}
