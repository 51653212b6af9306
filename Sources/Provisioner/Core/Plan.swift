import Foundation

/// Everything apply will do, and nothing else: every write appears as a step (the
/// sysusers file and each config included), with the services that check and reload
/// the files and the probes verification makes. Empty on a converged server.
public struct Plan: Sendable, Equatable {
    public var steps: [Step]
    /// Managed objects on the server that the state database does not know (users of
    /// desa's prefix, configs with desa's header). Never removed unless asked: an empty
    /// or foreign database must not tear the server down.
    public var unknown: [String]
    /// The services the plan's managed files belong to, as the config defines them.
    public var services: [ServiceSpec]
    /// How many tenants the server holds: reloads and php-fpm's sockets take longer the
    /// more there are, and apply waits accordingly.
    public var scale: Int

    public init(steps: [Step] = [], unknown: [String] = [], services: [ServiceSpec] = [], scale: Int = 0) {
        self.steps = steps; self.unknown = unknown; self.services = services; self.scale = scale
    }

    public var isEmpty: Bool { steps.isEmpty && unknown.isEmpty }

    /// The services whose configuration changes, each reloaded once.
    public var reloads: [String] { Array(Set(steps.compactMap(\.service))).sorted() }

    public func steps(for tenant: String) -> [Step] { steps.filter { $0.tenant == tenant } }

    /// One line per step, for people.
    public func lines(slugs: [String: String]) -> [String] {
        var out: [String] = []
        for s in steps {
            let who = s.tenant.map { code in slugs[code].map { "\($0) (\(code))" } ?? code } ?? "server"
            out.append("\(s.op.padding(toLength: 19, withPad: " ", startingAt: 0)) \(who): \(s.subject)")
        }
        for r in reloads { out.append("reload              \(r)") }
        for u in unknown { out.append("unknown             \(u)") }
        return out
    }

    /// `plan --json`'s form of the plan (the `actions` key keeps its name for scripts).
    public func json(slugs: [String: String]) -> [(String, JSON)] {
        [
            ("actions", .array(steps.map { s in
                .object([("op", .string(s.op)), ("tenant", .str(s.tenant)), ("slug", .str(s.tenant.flatMap { slugs[$0] })),
                         ("subject", .string(s.subject)), ("phase", .string(s.phase.description)), ("effect", s.effect.json)])
            })),
            ("reloads", .array(reloads.map { .string($0) })),
            ("unknown", .array(unknown.map { .string($0) })),
        ]
    }
}
