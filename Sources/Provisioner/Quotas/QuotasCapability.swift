import Foundation
import GRDB

/// Each village's share of the server: one quota for its files and its database together
/// (`[quota]`, per tenant by `--quota` and `desactl quota set`), and a limit on its
/// processes. Files are held by a backend (`quota.backend`): a filesystem image per tenant
/// (`ImageBackend`) or the kernel's user quotas. The database counts against the same
/// quota: measured from MariaDB, it loses its write privileges while files and database
/// together are over (`QuotaCheck`, the agent's `quota-check` job).
public struct QuotasCapability: StatefulCapability, TenantLifecycle {
    public struct State: Sendable {
        public var rows: [String: TenantQuota] = [:]
    }

    public struct Observation: Sendable {
        var image: (dir: [String: FileStat], tenants: [String: ImageBackend.Seen])?
    }

    public init() {}
    public var name: String { "quotas" }
    public var settings: [any ConfigSection.Type] { [QuotaSettings.self] }
    public var migrations: [StateMigration] { [TenantQuota.migration] }

    public func load(_ db: Database, _ d: DesiredState) throws -> State {
        State(rows: try TenantQuota.byCode(db))
    }

    /// A tenant's quota: its row, else the config's defaults.
    static func quota(_ t: Tenant, rows: [String: TenantQuota], _ s: QuotaSettings) -> TenantQuota {
        rows[t.code] ?? TenantQuota(code: t.code, size: s.default, s)
    }

    public func check(_ options: TenantOptions, _ config: Config) throws {
        if let q = options.quota {
            guard q >= QuotaSettings.minimum else {
                throw DesaError.invalid("--quota \(q) is less than the smallest quota, \(QuotaSettings.minimum)")
            }
        }
    }

    /// `--quota SIZE`: the new tenant's row; without it, a tenant brought back keeps the
    /// quota it had, and a new one has the defaults (no row).
    public func created(_ t: Tenant, _ options: TenantOptions, _ db: Database, _ context: TenantChange) throws {
        guard let q = options.quota else { return }
        try TenantQuota(code: t.code, size: q, context.config.quota).save(db)
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        switch d.config.quota.backend {
        case .none, .kernel: return Observation()
        case .image: return Observation(image: ImageBackend.observe(d, host))
        }
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        let s = d.config.quota
        let rows = d.state(of: Self.self)?.rows ?? [:]
        if let image = seen.image {
            ImageBackend.plan(d, image, quotas: { Self.quota($0, rows: rows, s) }, into: &out)
        }
        return out
    }
}
