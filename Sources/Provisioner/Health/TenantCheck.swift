import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The health facet: a capability that checks each tenant. The sweep runs its checks
/// without knowing them; their outcomes are recorded, journaled on change (with the
/// generic MESSAGE_IDs unless a check brings its own), shown by `desactl health` and
/// counted in the metrics like the built-in ones.
public protocol HealthChecking: Capability {
    var healthChecks: [any TenantCheck] { get }
}

/// One check of every tenant: its name, what it reads once per sweep, how it judges one
/// tenant. A check never throws for a tenant: what cannot be checked is a finding.
public protocol TenantCheck: Sendable {
    associatedtype Prepared: Sendable
    var id: HealthCheck { get }
    /// MESSAGE_IDs of its own by state, for checks whose changes monitoring filters on
    /// (explained in `systemd/desa.catalog`); a state left out takes the generic one.
    var messageIDs: [HealthState: String] { get }
    /// What it needs for every tenant (rows of its tables, /proc), read once per sweep.
    /// Blocking reads go through `s.off`. If it throws, the check is skipped this sweep
    /// and its last states stand.
    func prepare(_ s: SweepContext) async throws -> Prepared
    /// The tenant's outcome; nil when the check does not apply to it (no database).
    func check(_ t: Tenant, _ p: Prepared, _ s: SweepContext) async -> CheckOutcome?
}

extension TenantCheck {
    public var messageIDs: [HealthState: String] { [:] }

    /// Prepared for this sweep: a closure over one tenant.
    func prepared(_ s: SweepContext) async -> Result<PreparedCheck, Error> {
        do {
            let p = try await prepare(s)
            return .success(PreparedCheck(id: id) { t in await self.check(t, p, s) })
        } catch {
            return .failure(error)
        }
    }
}

struct PreparedCheck: Sendable {
    let id: HealthCheck
    let run: @Sendable (Tenant) async -> CheckOutcome?
}

/// What a sweep gives every check: the engine (config, state database, clock), the
/// tenants and aliases as the sweep read them, the probes (NIO channels with one deadline
/// each), and a thread pool for what blocks (`off`), so nothing blocks Swift's
/// cooperative threads.
public final class SweepContext: Sendable {
    public let engine: Engine
    public let settings: HealthSettings
    /// Every tenant not deleted (or being deleted).
    public let tenants: [Tenant]
    public let aliases: [String: [String]]
    public let now: Date
    public let probes: HealthProbes
    let blocking: NIOThreadPool
    private let memo = NIOLockedValueBox<[String: any Sendable]>([:])

    init(engine: Engine, settings: HealthSettings, tenants: [Tenant], aliases: [String: [String]], now: Date,
         probes: HealthProbes, blocking: NIOThreadPool) {
        self.engine = engine; self.settings = settings; self.tenants = tenants; self.aliases = aliases; self.now = now
        self.probes = probes; self.blocking = blocking
    }

    public var config: Config { engine.config }

    /// Runs blocking work (a database sign-in, a read of /proc) on the sweep's own threads.
    public func off<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await blocking.runIfActive(work)
    }

    /// A value several checks of one sweep share (the certificate records for http, https
    /// and certificate), made by the first that asks.
    public func shared<T: Sendable>(_ key: String, _ make: () async throws -> T) async rethrows -> T {
        if let hit = memo.withLockedValue({ $0[key] }) as? T { return hit }
        let v = try await make()
        memo.withLockedValue { $0[key] = v }
        return v
    }
}

extension Engine {
    /// The tenant checks of the capabilities in use, in their order.
    public var tenantChecks: [any TenantCheck] {
        capabilities.flatMap { ($0 as? any HealthChecking)?.healthChecks ?? [] }
    }

    /// Every check this build knows, in the order people see them: the tenants', then the server's.
    public var checkOrder: [HealthCheck] { tenantChecks.map(\.id) + HealthCheck.server }

    /// The MESSAGE_ID a change is journaled with: its check's own, else the generic one.
    func messageID(_ t: HealthTransition) -> String {
        if !t.isServer, let check = tenantChecks.first(where: { $0.id == t.check }), let id = check.messageIDs[t.state] { return id }
        return HealthMessageID.of(t)
    }
}
