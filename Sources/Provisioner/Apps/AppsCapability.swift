import Foundation
import GRDB

extension HealthCheck {
    /// Where the tenant's last change of release left it.
    public static let app: HealthCheck = "app"
}

public enum AppMessageID {
    /// An upgrade failed its gate (rolled back) or left the village broken.
    public static let upgradeFailed = "6d3b9e2f4a1c4b7e9f8a2d5c0e1b3f48"
    /// The app check's changes: rolled back (degraded), broken or half-way (down), good again.
    public static let rolledBack = "a2f7c4e9b1d84e3c8f6a0b5d2c9e1f73"
    public static let broken = "c8e1a5f2d9b34c6e8a7f1d0b4e2c9a55"
    public static let ok = "5e9c2a7f1b4d4e8c9a3f6d0b2e5c1a84"
}

/// Applications from releases stored once (`app release add`), installed (`app install`)
/// and upgraded in waves (`app upgrade`). It plans nothing: its work is operations; its
/// state is the releases and which one each tenant runs (`app_release`, `tenant_app`); its
/// health check shows a tenant an upgrade left rolled back, broken or half-way.
public struct AppsCapability: StatefulCapability, HealthChecking {
    public struct Observation: Sendable {}
    public init() {}
    public var name: String { "apps" }
    public var settings: [any ConfigSection.Type] { [AppSettings.self] }
    public var migrations: [StateMigration] { [AppRelease.migration] }
    public func load(_ db: Database, _ d: DesiredState) throws {}
    public func observe(_ desired: DesiredState, _ host: Observing) throws -> Observation { Observation() }
    public func plan(_ desired: DesiredState, _ seen: Observation) throws -> CapabilityPlan { CapabilityPlan() }
    public var healthChecks: [any TenantCheck] { [AppHealthCheck()] }
}

/// Ok while the tenant serves the release it was last set to; degraded when its last
/// upgrade was rolled back (it serves the old release, the new one is not there); down
/// when an upgrade left it half-way (killed: `app upgrade --resume`) or broken.
struct AppHealthCheck: TenantCheck {
    var id: HealthCheck { .app }
    var messageIDs: [HealthState: String] { [.degraded: AppMessageID.rolledBack, .down: AppMessageID.broken, .ok: AppMessageID.ok] }

    func prepare(_ s: SweepContext) async throws -> [String: TenantApp] {
        try await s.off { [engine = s.engine] in try engine.store.queue.read { db in try TenantApp.byCode(db) } }
    }

    func check(_ t: Tenant, _ apps: [String: TenantApp], _ s: SweepContext) async -> CheckOutcome? {
        guard let a = apps[t.code] else { return nil }
        return Self.judge(a)
    }

    static func judge(_ a: TenantApp) -> CheckOutcome {
        let since = " since " + Timestamp.format(a.since)
        switch a.state {
        case .ok: return CheckOutcome(.app, .ok)
        case .rolledBack:
            return CheckOutcome(.app, .degraded, "its upgrade to \(a.app) \(a.target ?? "?") was rolled back\(since); it serves \(a.release): \(a.error ?? "")")
        case .upgrading:
            return CheckOutcome(.app, .down, "its upgrade to \(a.app) \(a.target ?? "?") stopped half-way\(since): desactl app upgrade \(a.app) --resume")
        case .failed:
            return CheckOutcome(.app, .down, "its change of release left it broken\(since): \(a.error ?? "")")
        }
    }
}
