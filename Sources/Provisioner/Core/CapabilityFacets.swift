import Foundation
import GRDB

/// A table of the state database a capability brings: created by its own migration,
/// registered with the store by the capability (`StatefulCapability.migrations`), never
/// listed centrally. The identifier is fixed for ever (`v2-databases`); a new one for
/// each change of schema.
public struct StateMigration: Sendable {
    public var identifier: String
    public var migrate: @Sendable (Database) throws -> Void
    public init(_ identifier: String, _ migrate: @escaping @Sendable (Database) throws -> Void) {
        self.identifier = identifier; self.migrate = migrate
    }
}

/// The state facet: a capability that keeps state of its own in the state database (its
/// tables, through its migrations) and reads it into its own typed part of the desired
/// state, in the same read as the tenants (`DesiredState.state(of:)`).
public protocol StatefulCapability: Capability {
    associatedtype State: Sendable
    /// Its tables, in order.
    var migrations: [StateMigration] { get }
    /// Its part of the desired state, from its tables; `d` has the tenants and aliases.
    func load(_ db: Database, _ d: DesiredState) throws -> State
}

extension StatefulCapability {
    public var migrations: [StateMigration] { [] }

    func loadPart(_ db: Database, into d: inout DesiredState) throws {
        d.setPart(ObjectIdentifier(Self.self), try load(db, d))
    }
}

/// What a tenant's creation or deletion means to a capability's own tables (a database
/// row for `--with-db`; the row marked deleted with its tenant). Called in the command's
/// transaction, before the plan: nothing is written if anything refuses.
public protocol TenantLifecycle: Capability {
    /// Refuses options this server cannot honour (`--with-db` without MariaDB).
    func check(_ options: TenantOptions, _ config: Config) throws
    func created(_ t: Tenant, _ options: TenantOptions, _ db: Database, _ context: TenantChange) throws
    func deleted(_ t: Tenant, _ db: Database, _ context: TenantChange) throws
}

extension TenantLifecycle {
    public func check(_ options: TenantOptions, _ config: Config) throws {}
    public func created(_ t: Tenant, _ options: TenantOptions, _ db: Database, _ context: TenantChange) throws {}
    public func deleted(_ t: Tenant, _ db: Database, _ context: TenantChange) throws {}
}

/// What a lifecycle hook may know: the config and the command's time.
public struct TenantChange: Sendable {
    public var config: Config
    public var now: Date
}

/// Work outside apply that a capability has waiting (the orders the next `cert issue`
/// would place), shown by `desactl plan` beside apply's own plan, under its key.
public protocol PendingWorkReporting: Capability {
    /// Its key in `plan --json` (`certificates`); null there when it has nothing.
    var pendingKey: String { get }
    /// nil: nothing pending, or the capability is off.
    func pending(_ engine: Engine) throws -> PendingWork?
}

public struct PendingWork: Sendable {
    /// For people, above its lines: `certificates (desactl cert issue --all):`.
    public var heading: String
    public var lines: [String]
    public var json: JSON
    public init(heading: String, lines: [String], json: JSON) { self.heading = heading; self.lines = lines; self.json = json }
}

/// A capability that reacts when a sweep's health is recorded (the portal rewrites its
/// page). Called after every sweep is recorded and its changes journaled (`changes` may be
/// empty: a first look at a tenant is no change, yet it is news); must not throw: what
/// fails is logged by the capability.
public protocol HealthReacting: Capability {
    func healthRecorded(_ engine: Engine, _ changes: [HealthTransition])
}

/// A name a capability keeps for itself: no village may take the slug, nor the domain as
/// an alias.
public struct ReservedName: Sendable, Equatable {
    public var slug: String?
    public var domain: String
    /// For the refusal: `the regency's portal (portal.host)`.
    public var why: String
    public init(slug: String?, domain: String, why: String) { self.slug = slug; self.domain = domain; self.why = why }
}

public protocol NameReserving: Capability {
    func reservedNames(_ config: Config) -> [ReservedName]
}

extension Engine {
    /// Every name the capabilities in use reserve.
    public var reservedNames: [ReservedName] {
        capabilities.flatMap { ($0 as? any NameReserving)?.reservedNames(config) ?? [] }
    }
}

/// What a capability knows of each tenant that its operators want at a glance: a column
/// of the status page (`desactl status --html`, `[status] listen`).
public protocol StatusReporting: Capability {
    /// The column's heading (Indonesian, as the page is).
    var statusHeading: String { get }
    /// Its fact for each tenant it knows, by village code; measured or read now.
    func statusFacts(_ engine: Engine, tenants: [Tenant], now: Date) throws -> [String: StatusFact]
}

/// One cell of the status page: its text, its state (for its colour) and, for a share of
/// something, a percent drawn as a bar.
public struct StatusFact: Sendable, Equatable {
    public var text: String
    public var state: HealthState
    public var percent: Double?
    public init(_ text: String, _ state: HealthState, percent: Double? = nil) {
        self.text = text; self.state = state; self.percent = percent
    }
}
