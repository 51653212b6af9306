import Foundation

/// What the server should look like: the state database's tenants and aliases, with
/// what the planner needs to turn them into files.
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
    /// Tenants' databases by village code (kept and deleted).
    public var databases: [String: TenantDatabase] = [:]
    /// Tenants whose database password this run replaces (`db rotate-password`).
    public var rotatePasswords: Set<String> = []
    /// What each tenant serves over HTTPS (by code): valid certificates whose files exist.
    public var tls: [String: [TLSServe]] = [:]

    public init(config: Config, renderer: Renderer, tenants: [Tenant], aliases: [String: [String]],
                webGID: Int, webUID: Int, now: Date, removeUnknown: Bool = false) {
        self.config = config; self.renderer = renderer; self.tenants = tenants; self.aliases = aliases
        self.webGID = webGID; self.webUID = webUID; self.now = now; self.removeUnknown = removeUnknown
    }

    public var known: Set<String> { Set(tenants.map(\.code)) }
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
        VhostsCapability(),
        PoolsCapability(),
        DatabasesCapability(),
        CertificatesCapability(),
    ]

    /// Every service the capabilities declare for this config, and systemd itself
    /// (for unit files).
    public static func services(_ config: Config, _ capabilities: [any Capability] = builtIn) -> [ServiceSpec] {
        var seen = Set<String>()
        return (capabilities.flatMap { $0.services(config) } + [.systemd(config)]).filter { seen.insert($0.name).inserted }
    }
}
