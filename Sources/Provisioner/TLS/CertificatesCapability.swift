import Foundation
import GRDB

/// HTTPS: owns `[tls]`, its tables and the certificate directory (root's, 0700).
/// Certificates are obtained outside apply (`desactl cert issue`, the agent's renewals:
/// the CA is slow and remote), and installed into the state database; its part of the
/// desired state is what each tenant serves, which the vhosts capability renders, so a
/// plan stays pure and fast.
public struct CertificatesCapability: StatefulCapability, HealthChecking, MetricsProviding, JobProviding, PendingWorkReporting {
    /// What each tenant serves over HTTPS (by code): valid certificates whose files exist.
    public struct State: Sendable {
        public var serving: [String: [TLSServe]] = [:]
        public init(serving: [String: [TLSServe]] = [:]) { self.serving = serving }
    }

    public init() {}
    public var name: String { "certificates" }
    public var settings: [any ConfigSection.Type] { [TLSSettings.self] }
    public var migrations: [StateMigration] { [CertStore.migration] }
    public var healthChecks: [any TenantCheck] { [CertificateDaysCheck()] }
    public var metrics: [MetricDefinition] {
        [MetricDefinition(name: "certificate_days_left", help: "Days until the certificate a tenant serves expires (negative: expired).",
                          check: .certificate)]
    }

    /// The agent's renewals, every `health.renew_interval`: what `desactl cert renew --due`
    /// does (issue what is due, renew what the ARI window or two thirds of the lifetime
    /// says, serve the result). Each order is journaled by the issuance itself.
    public func jobs(_ config: Config) -> [Job] {
        guard config.tls.enabled, config.health.renewInterval > 0 else { return [] }
        return [Job("cert-renewal", .every(seconds: config.health.renewInterval)) { ctx in
            let engine = ctx.engine
            let r = try await BlockingThread.run("certificate renewal") {
                try engine.issueCertificates(renew: true, dns01: try engine.dnsResponder())
            }
            return r.issued.isEmpty && r.failed.isEmpty ? "" : r.summary
        }]
    }

    /// Certificates are ordered by `cert issue` (and the agent), not by apply: `desactl
    /// plan` shows the orders apart.
    public var pendingKey: String { "certificates" }

    public func pending(_ engine: Engine) throws -> PendingWork? {
        guard engine.config.tls.enabled else { return nil }
        let p = try engine.certPlan()
        return PendingWork(heading: "certificates (desactl cert issue --all):", lines: p.lines, json: p.json)
    }

    public func load(_ db: Database, _ d: DesiredState) throws -> State {
        guard d.config.tls.enabled else { return State() }
        return State(serving: CertStore.serving(try CertStore.records(db), tenants: d.tenants, aliases: d.aliases,
                                                config: d.config, now: d.now))
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> [String: FileStat] {
        d.config.tls.enabled ? host.stats([d.config.certDir]) : [:]
    }

    public func plan(_ d: DesiredState, _ seen: [String: FileStat]) throws -> CapabilityPlan {
        guard d.config.tls.enabled else { return CapabilityPlan() }
        return CapabilityPlan(steps: Step.ensure([DirSpec(path: d.config.certDir, uid: 0, gid: 0, mode: 0o700)], nil, seen))
    }
}
