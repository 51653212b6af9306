import Foundation

/// What the server should look like: the state database's tenants and aliases, with
/// what the planner needs to turn them into files, and each stateful capability's own
/// part (`state(of:)`), loaded from its own tables.
public struct DesiredState: Sendable {
    public var config: Config
    public var renderer: Renderer
    public var tenants: [Tenant]
    public var aliases: [String: [String]]
    /// The web server's group (it reads the homes) and user (it writes access logs).
    public var webGID: Int
    public var webUID: Int
    public var now: Date
    /// Plan the removal of managed objects the database does not know.
    public var removeUnknown: Bool
    /// Each stateful capability's part, by its type.
    private var parts: [ObjectIdentifier: any Sendable] = [:]

    public init(config: Config, renderer: Renderer, tenants: [Tenant], aliases: [String: [String]],
                webGID: Int, webUID: Int, now: Date, removeUnknown: Bool = false) {
        self.config = config; self.renderer = renderer; self.tenants = tenants; self.aliases = aliases
        self.webGID = webGID; self.webUID = webUID; self.now = now; self.removeUnknown = removeUnknown
    }

    public var known: Set<String> { Set(tenants.map(\.code)) }

    /// The part of the desired state that belongs to capability `C`, as its `load` read it
    /// (nil: not loaded, as in a plan made without the database).
    public func state<C: StatefulCapability>(of _: C.Type) -> C.State? {
        parts[ObjectIdentifier(C.self)] as? C.State
    }

    public mutating func set<C: StatefulCapability>(_: C.Type, _ state: C.State) {
        parts[ObjectIdentifier(C.self)] = state
    }

    /// Changes `C`'s part in place (an intent of one command: a password to rotate).
    public mutating func update<C: StatefulCapability>(_ type: C.Type, _ change: (inout C.State) -> Void) {
        guard var s = state(of: type) else { return }
        change(&s)
        set(type, s)
    }

    mutating func setPart(_ key: ObjectIdentifier, _ value: any Sendable) { parts[key] = value }
}

/// A capability's share of a plan.
public struct CapabilityPlan: Sendable, Equatable {
    public var steps: [Step] = []
    /// Managed objects of this capability that no tenant in the database owns.
    public var unknown: [String] = []
    /// What verification asks of each tenant (by code) for this capability.
    public var probes: [String: [Probe]] = [:]
    public init(steps: [Step] = [], unknown: [String] = [], probes: [String: [Probe]] = [:]) {
        self.steps = steps; self.unknown = unknown; self.probes = probes
    }
}

/// One thing desa provides each tenant (users, homes, vhosts, pools; later
/// certificates, databases, quotas, backups). It looks at the server once (`observe`,
/// the only reads), then decides purely (`plan`) which steps converge it; the effects
/// of those steps are carried out by the applier, or by the capability's own
/// `CustomEffect`s. A tenant with a `fail` step from any capability keeps everything it
/// has: the planner drops its other steps.
public protocol Capability: Sendable {
    associatedtype Observation: Sendable
    /// A short name (`vhosts`), for errors.
    var name: String { get }
    /// The config sections this capability owns (`[nginx]`), decoded strictly.
    var settings: [any ConfigSection.Type] { get }
    /// The services that read this capability's managed files.
    func services(_ config: Config) -> [ServiceSpec]
    /// Reads what the capability needs to know about the server now.
    func observe(_ desired: DesiredState, _ host: Observing) throws -> Observation
    /// The steps that take the server from `seen` to `desired`. Pure.
    func plan(_ desired: DesiredState, _ seen: Observation) throws -> CapabilityPlan
}

extension Capability {
    public var settings: [any ConfigSection.Type] { [] }
    public func services(_ config: Config) -> [ServiceSpec] { [] }

    /// Observes, then plans: the two halves kept together for an existential.
    func observeAndPlan(_ desired: DesiredState, _ host: Observing) throws -> CapabilityPlan {
        try plan(desired, try observe(desired, host))
    }
}

/// The capabilities of this build, in the order their steps run within a phase.
/// Adding a capability is one line here (tests add theirs to a copy).
public enum Capabilities {
    public static let builtIn: [any Capability] = [
        UsersCapability(),
        HomesCapability(),
        QuotasCapability(),
        VhostsCapability(),
        PoolsCapability(),
        DatabasesCapability(),
        CertificatesCapability(),
        BackupsCapability(),
        AppsCapability(),
        PortalCapability(),
    ]

    /// The series the capabilities bring, in their order.
    public static func metrics(_ capabilities: [any Capability]) -> [MetricDefinition] {
        capabilities.flatMap { ($0 as? any MetricsProviding)?.metrics ?? [] }
    }

    /// The tables the capabilities bring, in their order.
    public static func migrations(_ capabilities: [any Capability]) -> [StateMigration] {
        capabilities.flatMap { ($0 as? any StatefulCapability)?.migrations ?? [] }
    }

    /// Every service the capabilities declare for this config, and systemd itself
    /// (for unit files).
    public static func services(_ config: Config, _ capabilities: [any Capability] = builtIn) -> [ServiceSpec] {
        var seen = Set<String>()
        return (capabilities.flatMap { $0.services(config) } + [.systemd(config)]).filter { seen.insert($0.name).inserted }
    }
}
