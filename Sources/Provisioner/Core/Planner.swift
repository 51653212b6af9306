import Foundation

/// Asks every capability for its steps and puts them into one plan: the server's steps
/// first, then each tenant's, ending with the verification of every tenant that
/// changes (or whose recorded status is not yet what it asked for). A tenant that any
/// capability fails keeps what it has: its other steps are dropped.
///
/// The planner never trusts the database blindly: objects that carry desa's marks but
/// belong to no tenant the database knows are reported in `Plan.unknown`, not removed
/// (unless `DesiredState.removeUnknown`).
public struct Planner {
    public var capabilities: [any Capability]
    public var observer: Observing

    public init(capabilities: [any Capability] = Capabilities.builtIn, observer: Observing) {
        self.capabilities = capabilities; self.observer = observer
    }

    public func plan(_ desired: DesiredState) throws -> Plan {
        var server: [Step] = []
        var byTenant: [String: [Step]] = [:]
        var unknown: [String] = []
        var probes: [String: [Probe]] = [:]
        for c in capabilities {
            let p = try c.observeAndPlan(desired, observer)
            for s in p.steps {
                if let t = s.tenant { byTenant[t, default: []].append(s) } else { server.append(s) }
            }
            unknown += p.unknown
            for (code, list) in p.probes { probes[code, default: []] += list }
        }
        var steps = server
        for t in desired.tenants {
            var mine = byTenant.removeValue(forKey: t.code) ?? []
            if mine.contains(where: { if case .fail = $0.effect { return true }; return false }) {
                steps += mine.filter { if case .fail = $0.effect { return true }; return false }
                continue
            }
            if !mine.isEmpty || t.status != t.convergedStatus {
                let expect = t.convergedStatus
                mine.append(Step(t.code, "verify", .verify,
                                 .verify(Verification(expect: expect, probes: expect == .deleted ? [] : probes[t.code] ?? []))))
            }
            steps += mine
        }
        // Steps of codes the database does not know (removal of unknown objects, asked for).
        for code in byTenant.keys.sorted() { steps += byTenant[code]! }
        return Plan(steps: steps, unknown: unknown, services: Capabilities.services(desired.config, capabilities),
                    scale: desired.tenants.filter { $0.desired != .deleted }.count)
    }
}
