import Foundation
import GRDB

/// What `desactl health` shows: the latest state of every tenant's checks and the server's,
/// as the last sweep recorded them.
public struct HealthReport: Sendable {
    public struct TenantEntry: Sendable {
        public var code: String
        public var slug: String
        public var checks: [CheckStatus]
        public var state: HealthState { checks.map(\.state).max() ?? .ok }
        /// When the worst of its failing checks began.
        public var since: Date? { checks.filter { $0.state == state && state != .ok }.map(\.since).min() }
    }

    public var tenants: [TenantEntry]
    public var server: [CheckStatus]
    public var sweep: HealthStore.Sweep?
    public var now: Date
    /// The agent's interval, for telling a stale report.
    public var interval: Int

    public var counts: [HealthState: Int] {
        var c: [HealthState: Int] = [.ok: 0, .degraded: 0, .down: 0]
        for t in tenants { c[t.state, default: 0] += 1 }
        return c
    }

    public var serverState: HealthState { server.map(\.state).max() ?? .ok }
    public var anythingDown: Bool { counts[.down, default: 0] > 0 || serverState == .down }

    /// No sweep for three intervals: is the agent running?
    public var stale: Bool {
        guard let s = sweep else { return true }
        return now.timeIntervalSince(s.at) > Double(3 * interval) + s.seconds
    }

    public var summary: String {
        HealthSummary.line(tenants: tenants.count, counts: counts,
                           server: server.filter { $0.state != .ok }.map { "\($0.check.rawValue) \($0.state.rawValue)" })
    }

    /// Worst first; within a state, the longest failing first, then by slug.
    public var ordered: [TenantEntry] {
        tenants.sorted { a, b in
            if a.state != b.state { return a.state > b.state }
            let sa = a.since ?? .distantFuture, sb = b.since ?? .distantFuture
            return sa != sb ? sa < sb : a.slug < b.slug
        }
    }
}

extension Engine {
    /// Records a sweep (latest states, the changes, the sweep) and says each change in the
    /// journal, once. Returns the changes.
    @discardableResult
    public func recordHealth(_ result: SweepResult) throws -> [HealthTransition] {
        let changes = try HealthStore.record(result, by: actor, in: store, historyLimit: config.health.history)
        let slugs = Dictionary(result.tenants.map { ($0.code, $0.slug) }, uniquingKeysWith: { a, _ in a })
        let missing = changes.contains { !$0.isServer && slugs[$0.subject] == nil }
        let known = missing ? ((try? slugsByCode()) ?? [:]).merging(slugs) { _, b in b } : slugs
        for c in changes { journalHealth(c, slug: known[c.subject]) }
        for c in capabilities { (c as? any HealthReacting)?.healthRecorded(self, changes) }
        return changes
    }

    /// One change as a journal entry: MESSAGE_ID by kind, the DESA_* fields, and a
    /// priority by what it is (down: err, degraded: warning, back to ok: notice).
    func journalHealth(_ c: HealthTransition, slug: String?) {
        let who = c.isServer ? "server" : "\(slug ?? c.subject) (\(c.subject))"
        let was = c.previous.map { " (was \($0.rawValue))" } ?? ""
        let message: String
        let priority: JournalPriority
        switch c.state {
        case .down:
            message = "\(who): \(c.check.rawValue) is down\(was): \(c.reason)"
            priority = .err
        case .degraded:
            message = "\(who): \(c.check.rawValue) is degraded\(was): \(c.reason)"
            priority = .warning
        case .ok:
            message = "\(who): \(c.check.rawValue) is ok again\(was)"
            priority = .notice
        }
        var fields = c.fields
        fields.merge(["MESSAGE": message, "MESSAGE_ID": messageID(c), "DESA_OP": "health", "DESA_CHECK": c.check.rawValue,
                      "DESA_STATE": c.state.rawValue, "DESA_PREVIOUS_STATE": c.previous?.rawValue ?? "unknown",
                      "DESA_REASON": c.reason, "PRIORITY": "\(priority.rawValue)"]) { _, ours in ours }
        if !c.isServer {
            fields["DESA_TENANT"] = c.subject
            fields["DESA_SLUG"] = slug ?? c.subject
        }
        switch priority {
        case .err: logger.error("\(message)")
        case .warning: logger.warning("\(message)")
        default: logger.notice("\(message)")
        }
        journal.send(fields)
    }

    /// The latest recorded health. Reads only.
    public func healthReport() throws -> HealthReport {
        try store.queue.read { db in
            let latest = try HealthStore.latest(db)
            let tenants = try Tenant.filter(Column("status") != Tenant.Status.deleted.rawValue).order(Column("code")).fetchAll(db)
            let entries = tenants.compactMap { t -> HealthReport.TenantEntry? in
                guard let checks = latest[t.code] else { return nil }
                return HealthReport.TenantEntry(code: t.code, slug: t.slug, checks: ordered(checks))
            }
            return HealthReport(tenants: entries, server: ordered(latest[""] ?? [:]), sweep: try HealthStore.lastSweep(db),
                                now: now(), interval: config.health.interval)
        }
    }

    /// A tenant's recorded changes, newest first.
    public func healthHistory(code: String, limit: Int = 20) throws -> [HealthTransition] {
        try store.queue.read { db in try HealthStore.history(db, subject: code, limit: limit) }
    }

    /// In the order of `checkOrder`; checks this build does not know (a capability it
    /// lacks recorded them) after, by name.
    private func ordered(_ checks: [HealthCheck: CheckStatus]) -> [CheckStatus] {
        let order = Dictionary(checkOrder.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        return checks.values.sorted { (order[$0.check] ?? Int.max, $0.check.rawValue) < (order[$1.check] ?? Int.max, $1.check.rawValue) }
    }
}
