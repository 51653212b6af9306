import Foundation
import GRDB

extension HealthCheck {
    /// The tenant's use of its quota, files and database together.
    public static let quota: HealthCheck = "quota"
}

/// The journal's MESSAGE_IDs of quota changes (`systemd/desa.catalog` explains them).
public enum QuotaMessageID {
    public static let nearly = "7d3f0e64a4bb4e0a9c1e0f4c5e2b7a91"
    public static let full = "c2a6d8f1e53d4b7f8a0b9e6d4c3f2a18"
    public static let ok = "5b9e2c7d1a8f4e3b9c6d0a2f7e1b4c85"
}

/// Degraded past `quota.warning_percent`, down at 100% or while its database is closed
/// to writes; its value is the percent used (`desa_quota_used_percent`), and a change is
/// journaled with `DESA_QUOTA_PERCENT`. A crossing is said once: the record keeps the
/// state, and the percent moving within it says nothing.
struct QuotaHealthCheck: TenantCheck {
    var id: HealthCheck { .quota }
    var messageIDs: [HealthState: String] { [.degraded: QuotaMessageID.nearly, .down: QuotaMessageID.full, .ok: QuotaMessageID.ok] }

    func prepare(_ s: SweepContext) async throws -> [String: QuotaUsage] {
        guard s.config.quota.backend != .none else { return [:] }
        return try await s.off { [engine = s.engine] in
            Dictionary(try engine.quotaUsage().map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        }
    }

    func check(_ t: Tenant, _ usage: [String: QuotaUsage], _ s: SweepContext) async -> CheckOutcome? {
        guard let u = usage[t.code] else { return nil }
        if let why = u.unmeasured { return CheckOutcome(.quota, .degraded, "not measured: " + why) }
        let pct = u.percent
        let text = String(format: "%.0f%% of %@ (files %@, database %@)", pct, ByteSize(bytes: u.limitBytes).description,
                          ByteSize.readable(u.usedBytes), ByteSize.readable(u.dbBytes))
        var o: CheckOutcome
        if u.dbBlocked || pct >= 100 {
            o = CheckOutcome(.quota, .down, text + (u.dbBlocked ? "; its database takes no writes" : "; nothing more can be written"), value: pct)
        } else if pct >= s.config.quota.warningPercent {
            o = CheckOutcome(.quota, .degraded, text, value: pct)
        } else {
            o = CheckOutcome(.quota, .ok, value: pct)
        }
        o.fields["DESA_QUOTA_PERCENT"] = String(format: "%.0f", pct)
        return o
    }
}

extension QuotasCapability: HealthChecking, MetricsProviding, JobProviding {
    public var healthChecks: [any TenantCheck] { [QuotaHealthCheck()] }

    public var metrics: [MetricDefinition] {
        [MetricDefinition(name: "quota_used_percent", help: "How much of its quota (files and database together) a tenant uses, in percent.",
                          check: .quota)]
    }

    /// Every `quota.check_interval`: measured, and each database held to its quota.
    public func jobs(_ config: Config) -> [Job] {
        guard config.quota.backend != .none else { return [] }
        return [Job("quota-check", .every(seconds: config.quota.checkInterval)) { ctx in
            let engine = ctx.engine
            let r = try await BlockingThread.run("quota check") { try engine.perform(QuotaCheck(engine: engine)) }
            return r.didNothing ? "" : r.summary
        }]
    }
}
