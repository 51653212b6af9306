import Foundation

extension QuotasCapability: StatusReporting {
    public var statusHeading: String { "Kuota" }

    /// Each tenant's use of its quota, measured now from the kernel's or the images'
    /// counters and MariaDB (as `quota report` does).
    public func statusFacts(_ engine: Engine, tenants: [Tenant], now: Date) throws -> [String: StatusFact] {
        let q = engine.config.quota
        guard q.backend != .none else { return [:] }
        var out: [String: StatusFact] = [:]
        for u in try engine.quotaUsage() {
            if u.unmeasured != nil { out[u.code] = StatusFact("belum terukur", .degraded); continue }
            let state: HealthState = u.dbBlocked || u.percent >= 100 ? .down : u.percent >= q.warningPercent ? .degraded : .ok
            out[u.code] = StatusFact(String(format: "%.0f%% dari %@", u.percent, ByteSize(bytes: u.limitBytes).description), state,
                                     percent: min(100, u.percent))
        }
        return out
    }
}
